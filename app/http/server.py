"""The HTTP server the API runs under: uvicorn with httptools, and limits uvicorn does not set
itself.

uvicorn's httptools protocol (the fast one) accepts request heads of any size and count and waits
for them forever: one client sending a 128 MB header stalled every other request.
`GuardedHttpToolsProtocol` adds, per connection:

- the request line and headers together at most `HTTP_MAX_HEADER_BYTES`, at most `HTTP_MAX_HEADERS`
  headers: beyond either, 431 and the connection is closed (counted as bytes arrive, so nothing
  large is ever buffered or parsed);
- the head must arrive within `HTTP_HEADER_TIMEOUT_SECONDS` of the connection (or of its first byte
  for a later request on a kept-alive connection), the body within `HTTP_BODY_TIMEOUT_SECONDS` of
  the head: otherwise 408 and the connection is closed (slow clients hold no connection for long).

uvicorn's own settings do the rest: `timeout_keep_alive` (idle connections), `limit_concurrency`
(connections and requests at once; beyond it 503), and `h11_max_incomplete_event_size` should the
h11 protocol ever be chosen instead.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from app.settings import Settings

_STATUS = {408: b"Request Timeout", 431: b"Request Header Fields Too Large"}


class _HeadTooLarge(Exception):
    pass


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    max_header_bytes = 16384
    max_headers = 100
    header_timeout = 10.0
    body_timeout = 30.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_bytes = 0
        self._header_count = 0
        self._parsed_head = 0
        self._reading_head = True
        self._deadline: asyncio.TimerHandle | None = None

    @classmethod
    def configured(cls, settings: Settings) -> type[GuardedHttpToolsProtocol]:
        return type(
            "GuardedHttpToolsProtocol",
            (cls,),
            {
                "max_header_bytes": settings.http_max_header_bytes,
                "max_headers": settings.http_max_headers,
                "header_timeout": settings.http_header_timeout_seconds,
                "body_timeout": settings.http_body_timeout_seconds,
            },
        )

    # --- connection -------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm(self.header_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        self._unset_keepalive_if_required()
        if self._reading_head:
            self._head_bytes += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            if isinstance(exc.__context__, _HeadTooLarge):
                self._refuse(431)
                return
            self._invalid()
            return
        except httptools.HttpParserError:
            self._invalid()
            return
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return
        # Still in the head after this chunk: everything received for it so far is head.
        if self._reading_head and self._head_bytes > self.max_header_bytes:
            self._refuse(431)

    # --- parser callbacks -------------------------------------------------------------------------

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._reading_head = True
        self._header_count = 0
        self._parsed_head = 0
        if self._deadline is None:
            self._arm(self.header_timeout)

    def on_url(self, url: bytes) -> None:
        self._parsed_head += len(url)
        if self._parsed_head > self.max_header_bytes:
            raise _HeadTooLarge()
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        # A head that arrived in one piece is measured here, as the parser hands it over.
        self._header_count += 1
        self._parsed_head += len(name) + len(value) + 4
        if self._header_count > self.max_headers or self._parsed_head > self.max_header_bytes:
            raise _HeadTooLarge()
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._reading_head = False
        self._head_bytes = 0
        self._arm(self.body_timeout)
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()

    # --- refusals ---------------------------------------------------------------------------------

    def _arm(self, seconds: float) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(seconds, self._too_slow)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _too_slow(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        if self.cycle is not None and not self._reading_head and self.cycle.response_started:
            self.transport.close()  # the answer is on its way: just stop waiting for the rest
            return
        self._refuse(408)

    def _invalid(self) -> None:
        self.logger.warning("Invalid HTTP request received.")
        self.send_400_response("Invalid HTTP request received.")

    def _refuse(self, status: int) -> None:
        """Answer `status` in place of whatever the request would have got, and close the
        connection."""
        self._disarm()
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            cycle.disconnected = True  # the app (if it runs) reads a disconnect and sends nothing
            cycle.message_event.set()
        body = _STATUS[status]
        self.transport.write(
            b"HTTP/1.1 %d %s\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: %d\r\n"
            b"connection: close\r\n\r\n%s" % (status, body, len(body), body)
        )
        self.transport.close()


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """The limits of `invoicing-gateway api` as uvicorn.run / uvicorn.Config keyword arguments."""
    return {
        "http": GuardedHttpToolsProtocol.configured(settings),
        "h11_max_incomplete_event_size": settings.http_max_header_bytes,
        "timeout_keep_alive": settings.http_keep_alive_seconds,
        "limit_concurrency": settings.http_max_connections,
        "server_header": False,
    }

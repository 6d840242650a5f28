"""A tiny forward proxy for egress tests: `CONNECT host:port` tunnels (HTTPS) and absolute-form HTTP
requests (`GET http://host:port/path`), optionally behind Basic credentials (407 otherwise). It runs
its own event loop in a thread and records what it was asked for."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from tests.support.servers import free_port


@dataclass
class ProxyLog:
    requests: list[tuple[str, str]] = field(default_factory=list)  # (method, target) accepted
    refused: int = 0  # requests answered 407


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.close()


class ForwardProxy:
    def __init__(self, credentials: tuple[str, str] | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = ProxyLog()
        self._expected = None
        if credentials is not None:
            token = base64.b64encode(f"{credentials[0]}:{credentials[1]}".encode()).decode()
            self._expected = f"Basic {token}"
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        self._ready = threading.Event()

    def url_with(self, user: str, password: str) -> str:
        return f"http://{user}:{password}@127.0.0.1:{self.port}"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            writer.close()
            return
        lines = head.decode("latin-1").split("\r\n")
        method, target, _version = lines[0].split(" ", 2)
        headers = {}
        for line in lines[1:]:
            if ":" in line:
                name, value = line.split(":", 1)
                headers[name.strip().lower()] = value.strip()
        if self._expected is not None and headers.get("proxy-authorization") != self._expected:
            self.log.refused += 1
            writer.write(
                b"HTTP/1.1 407 Proxy Authentication Required\r\n"
                b'Proxy-Authenticate: Basic realm="test"\r\nContent-Length: 0\r\n\r\n'
            )
            await writer.drain()
            writer.close()
            return
        self.log.requests.append((method, target))
        if method == "CONNECT":
            host, port = target.rsplit(":", 1)
            upstream_reader, upstream_writer = await asyncio.open_connection(host, int(port))
            writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            await writer.drain()
            await asyncio.gather(_pipe(reader, upstream_writer), _pipe(upstream_reader, writer))
            return
        # Absolute-form: forward one request as origin-form, then relay the connection both ways.
        parts = urlsplit(target)
        upstream_reader, upstream_writer = await asyncio.open_connection(
            parts.hostname, parts.port or 80
        )
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        kept = [
            line
            for line in lines[1:]
            if line
            and not line.lower().startswith(
                ("proxy-authorization:", "proxy-connection:", "connection:", "keep-alive:")
            )
        ]
        # One request per connection: the next one comes through the proxy again, in absolute form.
        kept.append("Connection: close")
        request = f"{method} {path} HTTP/1.1\r\n" + "\r\n".join(kept) + "\r\n\r\n"
        upstream_writer.write(request.encode("latin-1"))
        await upstream_writer.drain()
        await asyncio.gather(_pipe(reader, upstream_writer), _pipe(upstream_reader, writer))

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)

        async def start() -> None:
            self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)

        self._loop.run_until_complete(start())
        self._ready.set()
        self._loop.run_forever()

    @contextlib.contextmanager
    def running(self) -> Iterator[ForwardProxy]:
        thread = threading.Thread(target=self._run, daemon=True)
        thread.start()
        self._ready.wait(10)
        try:
            yield self
        finally:

            async def stop() -> None:
                if self._server is not None:
                    self._server.close()
                for task in asyncio.all_tasks():
                    if task is not asyncio.current_task():
                        task.cancel()

            asyncio.run_coroutine_threadsafe(stop(), self._loop).result(10)
            self._loop.call_soon_threadsafe(self._loop.stop)
            thread.join(10)
            self._loop.close()

"""The pooled aiohttp session the Cybersource clients share, and their timeouts.

One `aiohttp.ClientSession` per process: every merchant profile's client sends through the same
connection pool (a `TCPConnector` limited to `cybersource_max_connections`). The session is created
lazily on first use, inside the running event loop, unless one is passed in; whoever created it
closes it.
"""

from __future__ import annotations

import asyncio
import base64
import urllib.request
from dataclasses import dataclass
from typing import TYPE_CHECKING

import aiohttp
from yarl import URL

if TYPE_CHECKING:
    from app.cybersource.profiles import ClientSettings

USER_AGENT = "invoicing-gateway (aiohttp)"


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Seconds. `connect` bounds getting a connection (pool wait plus TCP/TLS connect): a request
    that hits it was never sent. `read` bounds each wait for response bytes once sent; `total` the
    whole call."""

    connect: float = 5.0
    read: float = 30.0
    total: float = 45.0

    @classmethod
    def from_settings(cls, settings: ClientSettings) -> Timeouts:
        return cls(
            connect=settings.cybersource_connect_timeout,
            read=settings.cybersource_read_timeout,
            total=settings.cybersource_total_timeout,
        )

    def client_timeout(self) -> aiohttp.ClientTimeout:
        return aiohttp.ClientTimeout(
            total=self.total, connect=self.connect, sock_connect=self.connect, sock_read=self.read
        )


def egress_proxy(base_url: str, explicit: str | None, *, from_env: bool) -> str | None:
    """The proxy Cybersource calls to `base_url` go through (README "Egress").

    `explicit` (CYBERSOURCE_PROXY_URL) takes every call, whatever NO_PROXY says. Otherwise, with
    `from_env` (CYBERSOURCE_PROXY_FROM_ENV), the standard variables decide as curl does: HTTPS_PROXY
    (or HTTP_PROXY for an http:// base URL; upper or lower case) unless NO_PROXY names the host.
    Decided once per client, not per call.
    """
    if explicit:
        return explicit
    if not from_env:
        return None
    target = URL(base_url)
    proxies = urllib.request.getproxies_environment()
    proxy = proxies.get(target.scheme)
    if not proxy or not target.host:
        return None
    host = target.host if target.port is None else f"{target.host}:{target.port}"
    if urllib.request.proxy_bypass_environment(host, proxies):  # type: ignore[attr-defined]
        return None
    return proxy


def split_proxy(proxy: str | None) -> tuple[URL | None, dict[str, str] | None]:
    """The proxy's URL without credentials, and the credentials as a Proxy-Authorization header."""
    if not proxy:
        return None, None
    url = URL(proxy)
    if url.scheme not in ("http", "https") or not url.host:
        raise ValueError("the proxy URL must be http(s)://[user:password@]host:port")
    if not url.user:
        return url, None
    token = base64.b64encode(f"{url.user}:{url.password or ''}".encode()).decode("ascii")
    return url.with_user(None), {"Proxy-Authorization": f"Basic {token}"}


def _no_silent_retries(session: aiohttp.ClientSession) -> aiohttp.ClientSession:
    """Turn off aiohttp's own resend of GET/PUT/DELETE when a reused keep-alive connection turns out
    closed (aiohttp >= 3.10, RFC 9112 9.3.1). The client promises never to retry: a PUT or DELETE
    resent behind the outbox relay's back is exactly what it must not do. `_retry_connection` is a
    declared ClientSession attribute (listed in ClientSession.ATTRS), so setting it raises no
    warning; older versions ignore it."""
    session._retry_connection = False
    return session


class SessionProvider:
    """Hands out the shared `aiohttp.ClientSession`, creating it lazily inside the running loop.

    A session passed in belongs to the caller and is never closed here (but its silent aiohttp
    resend of idempotent requests on a stale keep-alive connection is turned off, as for our own
    session).
    """

    def __init__(
        self,
        *,
        max_connections: int = 100,
        session: aiohttp.ClientSession | None = None,
        keepalive_timeout: float = 15.0,
    ) -> None:
        if max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        self._max_connections = max_connections
        self._keepalive_timeout = keepalive_timeout
        self._session = session
        self._owned = session is None
        self._closed = False
        if session is not None:
            _no_silent_retries(session)

    @property
    def owned(self) -> bool:
        return self._owned

    @property
    def max_connections(self) -> int:
        return self._max_connections

    def get(self) -> aiohttp.ClientSession:
        session = self._session
        if session is not None and not session.closed:
            return session
        if self._closed or not self._owned:
            raise RuntimeError("the Cybersource client session is closed")
        # a ClientSession belongs to a loop: refuse to make one outside it
        asyncio.get_running_loop()
        connector = aiohttp.TCPConnector(
            limit=self._max_connections,
            limit_per_host=0,
            ttl_dns_cache=300,
            keepalive_timeout=self._keepalive_timeout,
        )
        # DummyCookieJar: cookies from upstream must never travel from one merchant's call to
        # another's.
        session = aiohttp.ClientSession(
            connector=connector,
            cookie_jar=aiohttp.DummyCookieJar(),
            headers={"User-Agent": USER_AGENT},
            raise_for_status=False,
        )
        self._session = _no_silent_retries(session)
        return session

    async def aclose(self) -> None:
        self._closed = True
        session, self._session = self._session, None
        if session is not None and self._owned and not session.closed:
            await session.close()

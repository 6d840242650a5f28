"""Where push deliveries may go: the URL policy at creation, and the address check at delivery time.

`strict` (the default in production): a URL must be `https` unless its host is on the allow-list
(`SUBSCRIPTION_ALLOWED_HOSTS`: cluster services speak plain `http` inside the mesh), and the
addresses it resolves to must be public, unless the host is on the allow-list; even then never
link-local (the cloud metadata endpoint lives there), unspecified or multicast. The check runs again
for every delivery, inside the HTTP client's resolver, so the connection goes to exactly the
addresses that were checked (a name that resolved to a public address at creation and to
169.254.169.254 later is refused).
`open` (local and test use): anything `http(s)` goes.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from app.settings import Settings

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# Names that mean "this machine" or "the metadata service" whatever DNS says.
LOCAL_NAMES = ("localhost", "localhost.localdomain", "metadata", "metadata.google.internal")
# Metadata endpoints outside the link-local ranges (AWS's IPv6 one is a unique-local address).
METADATA_ADDRESSES = frozenset({ipaddress.ip_address("fd00:ec2::254")})
MAX_URL_LENGTH = 2048


class ForbiddenTarget(OSError):
    """The URL or an address it resolves to is not allowed (an OSError: aiohttp wraps resolver
    errors)."""


@dataclass(frozen=True, slots=True)
class TargetPolicy:
    mode: Literal["strict", "open"]
    allowed_hosts: tuple[str, ...]

    def allows_host(self, host: str) -> bool:
        """Exact names and IP literals, or `*.suffix` for every name under a domain."""
        host = _plain_host(host)
        for entry in self.allowed_hosts:
            pattern = _plain_host(entry)
            if pattern.startswith("*."):
                if host.endswith(pattern[1:]) and host != pattern[2:]:
                    return True
            elif host == pattern:
                return True
        return False

    def check_url(self, url: str) -> None:
        """What can be said without DNS: scheme, credentials, literal addresses, local names."""
        if len(url) > MAX_URL_LENGTH:
            raise ForbiddenTarget(f"the URL is longer than {MAX_URL_LENGTH} characters")
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ForbiddenTarget("the URL must be http(s)://host[:port]/path")
        if parts.username is not None or parts.password is not None:
            raise ForbiddenTarget("the URL must not carry credentials")
        if parts.fragment:
            raise ForbiddenTarget("the URL must not have a fragment")
        try:
            parts.port  # noqa: B018 (raises on a port outside 0..65535)
        except ValueError as exc:
            raise ForbiddenTarget("the URL's port is not valid") from exc
        if self.mode == "open":
            return
        host = _plain_host(parts.hostname)
        allowed = self.allows_host(host)
        if parts.scheme != "https" and not allowed:
            raise ForbiddenTarget(
                "the URL must be https (plain http only for hosts on SUBSCRIPTION_ALLOWED_HOSTS)"
            )
        if not allowed and (host in LOCAL_NAMES or host.endswith(".localhost")):
            raise ForbiddenTarget(f"{host} names this machine or a metadata service")
        literal = _ip_literal(host)
        if literal is not None:
            self.check_addresses(host, [literal])

    def check_addresses(self, host: str, addresses: Iterable[IpAddress]) -> None:
        """Every address a host resolved to must be allowed, or none is used."""
        if self.mode == "open":
            return
        allowed = self.allows_host(host)
        for address in addresses:
            reason = _forbidden(address, allowed_host=allowed)
            if reason is not None:
                raise ForbiddenTarget(f"{host} resolves to {address}, {reason}")


def target_policy(settings: Settings) -> TargetPolicy:
    return TargetPolicy(
        settings.subscription_url_policy_in_force, settings.subscription_allowed_hosts
    )


def _plain_host(host: str) -> str:
    return host.strip().lower().rstrip(".").strip("[]")


def _ip_literal(host: str) -> IpAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def _forbidden(address: IpAddress, *, allowed_host: bool) -> str | None:
    """Why a connection to this address is refused, or None."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address.is_link_local or address in METADATA_ADDRESSES:
        return "a link-local or metadata address (the cloud metadata endpoint lives there)"
    if address.is_unspecified or address.is_multicast:
        return "not a unicast address"
    if allowed_host:
        return None
    if address.is_loopback:
        return "a loopback address"
    if address.is_private or address.is_reserved or not address.is_global:
        return "not a public address (put the host on SUBSCRIPTION_ALLOWED_HOSTS)"
    return None


class GuardedResolver(AbstractResolver):
    """aiohttp's resolver, refusing a host whose addresses the policy forbids (checked per
    connection)."""

    def __init__(self, policy: TargetPolicy, inner: AbstractResolver | None = None) -> None:
        self.policy = policy
        self.inner = inner or DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self.inner.resolve(host, port, family)
        addresses = [ipaddress.ip_address(result["host"].split("%", 1)[0]) for result in results]
        self.policy.check_addresses(host, addresses)
        return results

    async def close(self) -> None:
        await self.inner.close()


async def check_resolved(policy: TargetPolicy, url: str, *, within_seconds: float = 2.0) -> None:
    """At creation: refuse a name that resolves to a forbidden address now (a name that does not
    resolve yet is accepted; every delivery checks again)."""
    if policy.mode == "open":
        return
    host = urlsplit(url).hostname
    if host is None or _ip_literal(_plain_host(host)) is not None:
        return
    loop = asyncio.get_running_loop()
    try:
        infos = await asyncio.wait_for(
            loop.getaddrinfo(host, None, type=socket.SOCK_STREAM), within_seconds
        )
    except (OSError, TimeoutError):
        return
    addresses = [ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos]
    policy.check_addresses(host, addresses)

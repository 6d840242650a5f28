"""Where push deliveries may go: the URL policy, and the resolver that checks every address it hands
out."""

from __future__ import annotations

import ipaddress
import re
import socket

import pytest
from aiohttp.abc import AbstractResolver, ResolveResult

from app.subscriptions.targets import ForbiddenTarget, GuardedResolver, TargetPolicy

STRICT = TargetPolicy("strict", ("*.svc.cluster.local", "billing.internal", "127.0.0.1"))
OPEN = TargetPolicy("open", ())


@pytest.mark.parametrize(
    "url",
    [
        "https://hooks.example.com/in",
        "http://billing.internal:8080/hooks",  # allowed host: plain http inside the mesh
        "http://payments.default.svc.cluster.local/hooks",
        "http://127.0.0.1:9000/hook",  # an operator's explicit allow-list entry
        "https://93.184.216.34/hook",
    ],
)
def test_strict_accepts(url):
    STRICT.check_url(url)


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://hooks.example.com/in", "must be https"),
        ("https://169.254.169.254/latest/meta-data/", "link-local"),
        ("https://[fd00:ec2::254]/latest", "metadata"),
        ("https://127.0.0.2/hook", "loopback"),
        ("https://[::ffff:127.0.0.1]/hook", "loopback"),
        ("https://10.1.2.3/hook", "not a public address"),
        ("https://192.168.1.1/hook", "not a public address"),
        ("https://localhost/hook", "this machine"),
        ("https://api.localhost/hook", "this machine"),
        ("https://metadata.google.internal/x", "metadata service"),
        ("https://u:p@hooks.example.com/", "credentials"),
        ("ftp://hooks.example.com/", "http(s)"),
        ("https://hooks.example.com/#frag", "fragment"),
        ("http://svc.cluster.local/x", "must be https"),  # `*.` covers names under it only
    ],
)
def test_strict_refuses(url, why):
    with pytest.raises(ForbiddenTarget, match=re.escape(why)):
        STRICT.check_url(url)


def test_an_allowed_host_may_be_private_or_loopback_but_never_link_local():
    STRICT.check_addresses("billing.internal", [ipaddress.ip_address("10.0.0.5")])
    STRICT.check_addresses("billing.internal", [ipaddress.ip_address("127.0.0.1")])
    with pytest.raises(ForbiddenTarget, match="link-local"):
        STRICT.check_addresses("billing.internal", [ipaddress.ip_address("169.254.169.254")])
    allowed_metadata = TargetPolicy("strict", ("169.254.169.254",))
    with pytest.raises(ForbiddenTarget, match="link-local"):
        allowed_metadata.check_url("http://169.254.169.254/latest/meta-data/")


def test_open_accepts_any_http_url():
    OPEN.check_url("http://127.0.0.1:1/hook")
    OPEN.check_url("http://169.254.169.254/")
    with pytest.raises(ForbiddenTarget):
        OPEN.check_url("file:///etc/passwd")


class Rebinding(AbstractResolver):
    """A name that resolved to a public address at creation and to the metadata endpoint later."""

    def __init__(self, address: str) -> None:
        self.address = address

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        return [
            {
                "hostname": host,
                "host": self.address,
                "port": port,
                "family": family,
                "proto": 0,
                "flags": 0,
            }
        ]

    async def close(self) -> None:
        pass


async def test_the_resolver_refuses_a_name_that_now_points_at_a_forbidden_address():
    resolver = GuardedResolver(STRICT, Rebinding("93.184.216.34"))
    assert (await resolver.resolve("hooks.example.com", 443))[0]["host"] == "93.184.216.34"
    resolver.inner = Rebinding("169.254.169.254")
    with pytest.raises(
        ForbiddenTarget, match=re.escape("hooks.example.com resolves to 169.254.169.254")
    ):
        await resolver.resolve("hooks.example.com", 443)
    resolver.inner = Rebinding("127.0.0.1")
    with pytest.raises(ForbiddenTarget, match="loopback"):
        await resolver.resolve("hooks.example.com", 443)
    open_resolver = GuardedResolver(OPEN, Rebinding("127.0.0.1"))
    assert await open_resolver.resolve("anything", 80)

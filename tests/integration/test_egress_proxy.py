"""Issue 13, part 6 over real HTTP: Cybersource calls through an egress proxy
(tests/support/proxy.py).

- CYBERSOURCE_PROXY_URL with credentials: HTTPS goes through a CONNECT tunnel with
  Proxy-Authorization (a simulator served over TLS with a certificate of our own, trusted through
  SSL_CERT_FILE), and the facade's commands reach a plain-HTTP simulator through the same proxy.
- HTTPS_PROXY is honoured, NO_PROXY too, and CYBERSOURCE_PROXY_FROM_ENV=false turns both off.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from app.main import create_app
from app.settings import LOCAL_KEY_ID, LOCAL_MERCHANT_ID, LOCAL_SHARED_SECRET
from app.simulator.app import create_simulator_app
from app.simulator.config import MerchantConfig, SimulatorConfig
from tests.integration.conftest import client_for, facade_settings, invoice_body, key
from tests.support.postgres import fresh_database
from tests.support.proxy import ForwardProxy
from tests.support.servers import free_port, serve

USER, PASSWORD = "egress", "proxy-pass-1"


def _certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (its own CA), and its key."""
    private = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "egress-test")])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(private.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(private, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def _simulator() -> Any:
    merchant = MerchantConfig(
        merchant_id=LOCAL_MERCHANT_ID, key_id=LOCAL_KEY_ID, shared_secret=LOCAL_SHARED_SECRET
    )
    return create_simulator_app(
        SimulatorConfig(merchants=(merchant,), log_requests=False, host_name=None)
    )


@pytest.fixture(scope="module")
def tls_simulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    cert, private_key = _certificate(tmp_path_factory.mktemp("tls"))
    port = free_port()
    config = uvicorn.Config(
        _simulator(),
        host="127.0.0.1",
        port=port,
        log_config=None,
        log_level="warning",
        ssl_certfile=str(cert),
        ssl_keyfile=str(private_key),
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "TLS simulator did not start"
        time.sleep(0.05)
    try:
        yield f"https://127.0.0.1:{port}", cert
    finally:
        server.should_exit = True
        thread.join(15)


def check(base_url: str, cert: Path, **env: str) -> dict[str, Any]:
    values = {
        key: value
        for key, value in os.environ.items()
        if key.lower() not in ("https_proxy", "http_proxy", "no_proxy", "all_proxy")
    }
    values.update(
        APP_ENV="test",
        CYBERSOURCE_BASE_URL=base_url,
        SSL_CERT_FILE=str(cert),
        LOG_LEVEL="ERROR",
        **env,
    )
    done = subprocess.run(
        [sys.executable, "-m", "app", "cybersource", "check"],
        env=values,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return dict(json.loads(done.stdout.splitlines()[0]))


def test_an_explicit_proxy_tunnels_https_with_its_credentials(
    tls_simulator: tuple[str, Path],
) -> None:
    base_url, cert = tls_simulator
    target = base_url.removeprefix("https://")
    with ForwardProxy(credentials=(USER, PASSWORD)).running() as proxy:
        # The TLS simulator itself works, and the check goes nowhere near the proxy without it.
        assert check(base_url, cert)["ok"] is True
        assert proxy.log.requests == []

        result = check(base_url, cert, CYBERSOURCE_PROXY_URL=proxy.url_with(USER, PASSWORD))
        assert result["ok"] is True, result
        assert proxy.log.requests == [("CONNECT", target)]

        refused = check(base_url, cert, CYBERSOURCE_PROXY_URL=proxy.url_with(USER, "wrong"))
        assert (refused["ok"], refused["cause"]) == (False, "unreachable"), refused
        assert proxy.log.refused >= 1


def test_https_proxy_and_no_proxy_are_honoured_unless_turned_off(
    tls_simulator: tuple[str, Path],
) -> None:
    base_url, cert = tls_simulator
    with ForwardProxy().running() as proxy:
        assert check(base_url, cert, HTTPS_PROXY=proxy.url)["ok"] is True
        assert len(proxy.log.requests) == 1 and proxy.log.requests[0][0] == "CONNECT"
        assert check(base_url, cert, HTTPS_PROXY=proxy.url, NO_PROXY="127.0.0.1")["ok"] is True
        assert check(base_url, cert, https_proxy=proxy.url, no_proxy="localhost,127.0.0.1")["ok"]
        off = check(base_url, cert, HTTPS_PROXY=proxy.url, CYBERSOURCE_PROXY_FROM_ENV="false")
        assert off["ok"] is True
        assert len(proxy.log.requests) == 1  # none of the last three went through the proxy


async def test_commands_reach_cybersource_through_the_proxy() -> None:
    """The relay's calls (a create, a send) use the proxy too: absolute-form HTTP to the
    simulator."""
    with (
        ForwardProxy(credentials=(USER, PASSWORD)).running() as proxy,
        serve(_simulator(), ready_path="/__sim/health") as sim_url,
        fresh_database() as database_url,
    ):
        settings = facade_settings(
            database_url, sim_url, cybersource_proxy_url=proxy.url_with(USER, PASSWORD)
        )
        with serve(create_app(settings)) as facade_url:
            async with client_for(facade_url) as api:
                created = await api.post("/v1/invoices", json=invoice_body(), headers=key())
                assert created.status_code == 201, created.text
                number = created.json()["invoiceNumber"]
                sent = await api.post(f"/v1/invoices/{number}/send", headers=key())
                assert sent.status_code == 200, sent.text
        async with httpx.AsyncClient(base_url=sim_url) as sim:
            assert (await sim.get(f"/__sim/invoices/{number}")).json()["status"] == "SENT"
    assert ("POST", f"{sim_url}/invoicing/v2/invoices") in proxy.log.requests
    assert ("POST", f"{sim_url}/invoicing/v2/invoices/{number}/delivery") in proxy.log.requests
    assert proxy.log.refused == 0

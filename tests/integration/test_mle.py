"""Issue 13, part 7 over real HTTP: JWT with message-level encryption of requests and answers. The
simulator holds its own "Cybersource MLE" certificate and key and the merchant's response key; with
`mle_required` it refuses any plaintext body of an operation that allows MLE, so a passing lifecycle
proves the facade encrypted every one, and answers come back encrypted to the merchant's key."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from pydantic import ValidationError

from app.main import create_app
from app.settings import LOCAL_KEY_ID, LOCAL_MERCHANT_ID, LOCAL_SHARED_SECRET, Settings
from app.simulator.app import create_simulator_app
from app.simulator.config import MerchantConfig, SimulatorConfig
from tests.integration.conftest import client_for, facade_settings, invoice_body, key
from tests.support.postgres import fresh_database
from tests.support.servers import serve

RESPONSE_KID = "merchant-mle-2026"


def _key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _pem(private: rsa.RSAPrivateKey) -> str:
    return private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def _certificate(private: rsa.RSAPrivateKey, name: str) -> str:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(private.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(private, hashes.SHA256())
    )
    return certificate.public_bytes(serialization.Encoding.PEM).decode()


CYBERSOURCE_MLE_KEY = _key()
CYBERSOURCE_MLE_CERT = _certificate(CYBERSOURCE_MLE_KEY, "CyberSource_SJC_US")
MERCHANT_RESPONSE_KEY = _key()


@pytest.fixture(scope="module")
def mle_simulator() -> Iterator[str]:
    public = MERCHANT_RESPONSE_KEY.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    merchant = MerchantConfig(
        merchant_id=LOCAL_MERCHANT_ID,
        key_id=LOCAL_KEY_ID,
        shared_secret=LOCAL_SHARED_SECRET,
        mle_response_public_key_pem=public.decode(),
        mle_response_key_id=RESPONSE_KID,
    )
    config = SimulatorConfig(
        merchants=(merchant,),
        log_requests=False,
        mle_certificate_pem=CYBERSOURCE_MLE_CERT,
        mle_private_key_pem=_pem(CYBERSOURCE_MLE_KEY),
        mle_required=True,
    )
    with serve(create_simulator_app(config), ready_path="/__sim/health") as url:
        yield url


def _mle_settings(**overrides: Any) -> dict[str, Any]:
    values: dict[str, Any] = dict(
        cybersource_auth="jwt",
        cybersource_mle="both",
        cybersource_mle_certificate=CYBERSOURCE_MLE_CERT,
        cybersource_mle_response_private_key=_pem(MERCHANT_RESPONSE_KEY),
        cybersource_mle_response_key_id=RESPONSE_KID,
    )
    values.update(overrides)
    return values


async def test_every_call_is_encrypted_both_ways(mle_simulator: str) -> None:
    with fresh_database() as database_url:
        settings = facade_settings(database_url, mle_simulator, **_mle_settings())
        with serve(create_app(settings)) as facade_url:
            async with (
                client_for(facade_url) as api,
                client_for(facade_url, "ops") as ops,
                httpx.AsyncClient(base_url=mle_simulator) as sim,
            ):
                created = await api.post("/v1/invoices", json=invoice_body(), headers=key())
                assert created.status_code == 201, created.text
                number = created.json()["invoiceNumber"]
                assert created.json()["status"] == "DRAFT"
                updated = await api.put(
                    f"/v1/invoices/{number}", json=invoice_body("120.00"), headers=key()
                )
                assert updated.status_code == 200, updated.text
                sent = await api.post(f"/v1/invoices/{number}/send", headers=key())
                assert sent.status_code == 200 and sent.json()["status"] == "SENT", sent.text
                refreshed = await api.get(f"/v1/invoices/{number}", params={"refresh": "true"})
                assert refreshed.json()["balanceAmount"] == "120.00", refreshed.text
                settings_page = await ops.get("/v1/invoice-settings")
                assert settings_page.status_code == 200, settings_page.text

                received = (await sim.get("/__sim/requests")).json()
                calls = [r for r in received if number in r["path"] or r["method"] == "POST"]
                bodies = [r for r in calls if r["method"] in ("POST", "PUT")]
                assert bodies and all(r["encrypted"] for r in bodies), bodies
                assert all("tanya.lee@example.com" not in r["body"] for r in bodies)
                assert all(json.loads(r["body"]).keys() == {"encryptedRequest"} for r in bodies)
                reads = [r for r in received if r["method"] == "GET"]
                assert reads and all(r["responseEncrypted"] for r in reads)


async def test_plaintext_is_refused_where_the_simulator_requires_mle(mle_simulator: str) -> None:
    with fresh_database() as database_url:
        settings = facade_settings(database_url, mle_simulator, cybersource_auth="jwt")
        with serve(create_app(settings)) as facade_url:
            async with client_for(facade_url) as api:
                refused = await api.post("/v1/invoices", json=invoice_body(), headers=key())
                assert refused.status_code == 422, refused.text
                assert "encryption is required" in refused.json()["detail"]


async def test_a_request_for_another_key_is_refused(mle_simulator: str) -> None:
    other = _certificate(_key(), "not-cybersource")
    with fresh_database() as database_url:
        overrides = _mle_settings(cybersource_mle="requests", cybersource_mle_certificate=other)
        settings = facade_settings(database_url, mle_simulator, **overrides)
        with serve(create_app(settings)) as facade_url:
            async with client_for(facade_url) as api:
                body = invoice_body()
                body["invoiceInformation"]["invoiceNumber"] = f"MLE{uuid.uuid4().hex[:8]}"
                refused = await api.post("/v1/invoices", json=body, headers=key())
                assert refused.status_code == 422, refused.text


def test_mle_needs_jwt_and_its_keys() -> None:
    with pytest.raises(ValidationError, match="only with JWT"):
        Settings(app_env="test", **_mle_settings(cybersource_auth="http-signature"))
    with pytest.raises(ValidationError, match="needs Cybersource's MLE certificate"):
        Settings(app_env="test", **_mle_settings(cybersource_mle_certificate=None))
    with pytest.raises(ValidationError, match="needs the response key"):
        Settings(app_env="test", **_mle_settings(cybersource_mle_response_key_id=None))

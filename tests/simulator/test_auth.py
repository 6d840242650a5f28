"""Authentication as Cybersource checks it: HTTP Signature and JWT; every failure is 401 + a logged
reason."""

from __future__ import annotations

import base64
import datetime as dt
import json
from collections.abc import AsyncIterator

import httpx
import pytest
import structlog
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from app.cybersource.signing import (
    P12Key,
    SigningCredentials,
    decode_secret,
    sign_http_signature,
    sign_jwt,
)
from app.simulator import MerchantConfig, SimulatorConfig, create_simulator_app
from tests.simulator.helpers import MERCHANT_A, MERCHANT_B, RawClient, creds, now_date

AUTH_FAILED = {"response": {"rmsg": "Authentication Failed"}}
TARGET = "/invoicing/v2/invoices"
BODY = json.dumps(
    {
        "invoiceInformation": {"dueDate": "2026-12-31"},
        "orderInformation": {"amountDetails": {"totalAmount": "1.00", "currency": "USD"}},
    }
).encode()


async def _send(
    raw: RawClient,
    headers: dict[str, str],
    body: bytes = BODY,
    target: str = TARGET,
    method: str = "POST",
) -> int:
    reply = await raw.send(method, target, body if method != "GET" else None, headers)
    if reply.status == 401:
        assert reply.json() == AUTH_FAILED
    return reply.status


async def test_a_correct_signature_passes_with_any_header_case(raw: RawClient) -> None:
    headers = raw.sign("POST", TARGET, BODY)
    title_case = {"-".join(p.capitalize() for p in k.split("-")): v for k, v in headers.items()}
    assert "V-C-Merchant-Id" in title_case
    assert await _send(raw, title_case) == 201
    assert (
        await _send(raw, {k.upper(): v for k, v in raw.sign("POST", TARGET, BODY).items()}) == 201
    )


async def test_wrong_secret(raw: RawClient) -> None:
    forged = MerchantConfig(
        merchant_id=MERCHANT_A.merchant_id,
        key_id=MERCHANT_A.key_id,
        shared_secret=base64.b64encode(b"z" * 32).decode(),
    )
    assert await _send(raw, raw.sign("POST", TARGET, BODY, merchant=forged)) == 401


async def test_tampered_body(raw: RawClient) -> None:
    headers = raw.sign("POST", TARGET, BODY)
    assert await _send(raw, headers, BODY.replace(b"1.00", b"9.00")) == 401


async def test_tampered_body_with_a_fresh_digest(raw: RawClient) -> None:
    tampered = BODY.replace(b"1.00", b"9.00")
    headers = raw.sign("POST", TARGET, BODY)
    headers["Digest"] = raw.sign("POST", TARGET, tampered)["Digest"]
    assert await _send(raw, headers, tampered) == 401


async def test_key_of_another_merchant(raw: RawClient) -> None:
    headers = raw.sign("POST", TARGET, BODY)
    headers["v-c-merchant-id"] = MERCHANT_B.merchant_id  # A's key claiming to act for B
    assert await _send(raw, headers) == 401
    swapped = sign_http_signature(
        SigningCredentials(
            merchant_id=MERCHANT_B.merchant_id,
            key_id=MERCHANT_A.key_id,
            secret=decode_secret(MERCHANT_A.shared_secret),
        ),
        method="POST",
        host="127.0.0.1",
        target=TARGET,
        body=BODY,
    )
    assert await _send(raw, swapped) == 401


@pytest.mark.parametrize("offset", [-301, 301, -3600])
async def test_date_outside_the_tolerance(raw: RawClient, offset: int) -> None:
    assert await _send(raw, raw.sign("POST", TARGET, BODY, date=now_date(offset))) == 401


async def test_date_inside_the_tolerance(raw: RawClient) -> None:
    assert await _send(raw, raw.sign("POST", TARGET, BODY, date=now_date(-200))) == 201


async def test_the_old_request_target_label(raw: RawClient) -> None:
    import hashlib
    import hmac

    date = now_date()
    message = "\n".join(
        [
            f"host: {raw.host}",
            f"date: {date}",
            f"(request-target): get {TARGET}?offset=0&limit=5",
            f"v-c-merchant-id: {MERCHANT_A.merchant_id}",
        ]
    )
    signature = base64.b64encode(
        hmac.new(decode_secret(MERCHANT_A.shared_secret), message.encode(), hashlib.sha256).digest()
    ).decode()
    headers = {
        "v-c-merchant-id": MERCHANT_A.merchant_id,
        "Date": date,
        "Host": raw.host,
        "Signature": f'keyid="{MERCHANT_A.key_id}", algorithm="HmacSHA256", '
        f'headers="host date (request-target) v-c-merchant-id", signature="{signature}"',
    }
    assert await _send(raw, headers, target=f"{TARGET}?offset=0&limit=5", method="GET") == 401


async def test_query_string_is_signed(raw: RawClient) -> None:
    headers = raw.sign("GET", f"{TARGET}?offset=0&limit=5", None)
    assert await _send(raw, headers, target=f"{TARGET}?offset=0&limit=6", method="GET") == 401


async def test_missing_pieces(raw: RawClient) -> None:
    assert await _send(raw, {}) == 401
    headers = raw.sign("POST", TARGET, BODY)
    for name in ("Digest", "Date", "v-c-merchant-id"):
        partial = {k: v for k, v in headers.items() if k != name}
        assert await _send(raw, partial) == 401, name
    unknown = dict(
        headers, Signature=headers["Signature"].replace(MERCHANT_A.key_id, "unknown-key")
    )
    assert await _send(raw, unknown) == 401
    no_digest_listed = dict(headers, Signature=headers["Signature"].replace(" digest", ""))
    assert await _send(raw, no_digest_listed) == 401


async def test_jwt_hs256(raw: RawClient) -> None:
    headers = sign_jwt(creds(MERCHANT_A), method="POST", host="127.0.0.1", target=TARGET, body=BODY)
    assert await _send(raw, headers) == 201
    assert await _send(raw, headers, BODY.replace(b"1.00", b"2.00")) == 401
    elsewhere = sign_jwt(
        creds(MERCHANT_A), method="POST", host="127.0.0.1", target=f"{TARGET}/1/delivery", body=BODY
    )
    assert await _send(raw, elsewhere) == 401
    stale = sign_jwt(
        creds(MERCHANT_A),
        method="POST",
        host="127.0.0.1",
        target=TARGET,
        body=BODY,
        iat=int(dt.datetime.now(dt.UTC).timestamp()) - 900,
    )
    assert await _send(raw, stale) == 401


# --- in-process instances with other configurations (ASGI transport, no network needed) -----------


def _certificate() -> tuple[P12Key, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sim_rsa_merchant")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    return P12Key(private_key=key, certificate=cert), cert.public_bytes(
        serialization.Encoding.PEM
    ).decode()


P12, CERT_PEM = _certificate()
RSA_MERCHANT = MerchantConfig(
    merchant_id="sim_rsa_merchant",
    key_id="44444444-4444-4444-8444-444444444444",
    shared_secret=base64.b64encode(b"r" * 32).decode(),
    certificate_pem=CERT_PEM,
)
PORTFOLIO = "sim_portfolio"
META_1 = MerchantConfig(
    merchant_id="sim_child_1",
    key_id="55555555-5555-4555-8555-555555555555",
    shared_secret=base64.b64encode(b"m" * 32).decode(),
    portfolio_id=PORTFOLIO,
)
META_2 = MerchantConfig(
    merchant_id="sim_child_2",
    key_id=META_1.key_id,
    shared_secret=META_1.shared_secret,
    portfolio_id=PORTFOLIO,
)
HOST = "apitest.cybersource.com"


@pytest.fixture(scope="module")
async def strict() -> AsyncIterator[httpx.AsyncClient]:
    config = SimulatorConfig(
        merchants=(RSA_MERCHANT, META_1, META_2), host_name=HOST, log_requests=False
    )
    transport = httpx.ASGITransport(app=create_simulator_app(config))
    async with httpx.AsyncClient(transport=transport, base_url=f"http://{HOST}") as client:
        yield client


async def test_jwt_rs256_with_the_merchant_certificate(strict: httpx.AsyncClient) -> None:
    headers = sign_jwt(
        creds(RSA_MERCHANT), method="POST", host=HOST, target=TARGET, body=BODY, p12=P12
    )
    assert (await strict.post(TARGET, content=BODY, headers=headers)).status_code == 201
    other_key, _ = _certificate()
    forged = sign_jwt(
        creds(RSA_MERCHANT),
        method="POST",
        host=HOST,
        target=TARGET,
        body=BODY,
        p12=P12Key(private_key=other_key.private_key, certificate=P12.certificate),
    )
    assert (await strict.post(TARGET, content=BODY, headers=forged)).status_code == 401


async def test_meta_key_signs_for_every_merchant_of_its_portfolio(
    strict: httpx.AsyncClient,
) -> None:
    for child in (META_1, META_2):
        headers = sign_http_signature(
            creds(child), method="GET", host=HOST, target="/invoicing/v2/invoiceSettings", body=None
        )
        reply = await strict.get("/invoicing/v2/invoiceSettings", headers=headers)
        assert reply.status_code == 200
        assert reply.json()["merchantInformation"]["name"] == child.merchant_id
    # Without the portfolio id in the signed string the meta key does not verify.
    plain = SigningCredentials(
        merchant_id=META_1.merchant_id,
        key_id=META_1.key_id,
        secret=decode_secret(META_1.shared_secret),
    )
    headers = sign_http_signature(
        plain, method="GET", host=HOST, target="/invoicing/v2/invoiceSettings", body=None
    )
    assert (await strict.get("/invoicing/v2/invoiceSettings", headers=headers)).status_code == 401


async def test_expected_host_and_the_401_log_line(strict: httpx.AsyncClient) -> None:
    good = sign_http_signature(
        creds(META_1), method="GET", host=HOST, target="/invoicing/v2/invoiceSettings", body=None
    )
    assert (await strict.get("/invoicing/v2/invoiceSettings", headers=good)).status_code == 200
    wrong_host = sign_http_signature(
        creds(META_1),
        method="GET",
        host="api.cybersource.com",
        target="/invoicing/v2/invoiceSettings",
        body=None,
    )
    with structlog.testing.capture_logs() as logs:
        reply = await strict.get("/invoicing/v2/invoiceSettings", headers=wrong_host)
    assert reply.status_code == 401 and reply.json() == AUTH_FAILED
    [line] = [entry for entry in logs if entry["event"] == "authentication failed"]
    assert "Host" in line["reason"] and line["log_level"] == "warning"
    assert META_1.shared_secret not in json.dumps(line) and "signature=" not in json.dumps(line)

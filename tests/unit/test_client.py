"""CybersourceClient against a real local aiohttp server that verifies every signature.

Every operation: method, path, query, signed headers, exact body bytes, typed result with `.raw` and
`.correlation_id`. Then the authentication variants (HTTP Signature, meta key, JWT HS256, JWT RS256
from a P12 made here), environments, the registry and the log line.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID
from pydantic import SecretStr

import app.cybersource.client as client_module
from app.cybersource.client import (
    CONTENT_TYPE,
    CybersourceClient,
    CybersourceClients,
    UnknownMerchantProfileError,
    encode_body,
)
from app.cybersource.models import (
    EmptyResponse,
    InvoiceCreateRequest,
    InvoiceListResponse,
    InvoiceResponse,
    InvoiceSettingsRequest,
    InvoiceSettingsResponse,
    InvoiceUpdateRequest,
    MerchantDefinedFieldList,
    MerchantDefinedFieldRequest,
)
from app.cybersource.signing import VerificationKey, body_digest
from app.cybersource.transport import SessionProvider, Timeouts
from app.settings import Settings
from tests.unit.test_client_upstream import (
    KEY_ID,
    MERCHANT,
    META_KEY_ID,
    META_SECRET,
    PORTFOLIO,
    SECRET,
    FakeUpstream,
    profile,
    sample_body,
)

ACTION_DIGEST = "SHA-256=RBNvo1WzZ4oRRq0W9+hknpT7T8If536DEMBg9hyq/4o="
SIGNED_WITH_BODY = 'headers="host date request-target digest v-c-merchant-id"'
SIGNED_WITHOUT_BODY = 'headers="host date request-target v-c-merchant-id"'


@pytest.fixture
async def upstream():
    server = await FakeUpstream().start()
    yield server
    await server.close()


@pytest.fixture
async def client(upstream: FakeUpstream):
    cs = CybersourceClient(profile(upstream.base_url))
    yield cs
    await cs.aclose()


def create_request() -> InvoiceCreateRequest:
    return InvoiceCreateRequest.model_validate(
        sample_body("sdk-sample.create-draft-invoice.request.json")
    )


def assert_signed(recorded: Any, *, with_body: bool) -> None:
    assert recorded.auth_error is None, recorded.auth_error
    assert recorded.merchant_id == MERCHANT
    assert recorded.headers["host"] == "127.0.0.1"
    assert recorded.headers["v-c-merchant-id"] == MERCHANT
    signature = recorded.headers["signature"]
    assert f'keyid="{KEY_ID}"' in signature and 'algorithm="HmacSHA256"' in signature
    if with_body:
        assert SIGNED_WITH_BODY in signature
        assert recorded.headers["digest"] == f"SHA-256={body_digest(recorded.body)}"
        assert recorded.headers["content-type"] == CONTENT_TYPE
    else:
        assert SIGNED_WITHOUT_BODY in signature
        assert "digest" not in recorded.headers
        assert recorded.body == b""


# --- every operation -----------------------------------------------------------------------------


async def test_create_invoice_with_model(client: CybersourceClient, upstream: FakeUpstream) -> None:
    request = create_request()
    result = await client.create_invoice(request)

    sent = upstream.last
    assert (sent.method, sent.target) == ("POST", "/invoicing/v2/invoices")
    assert_signed(sent, with_body=True)
    assert sent.body == request.to_wire()  # the signed bytes are the sent bytes
    assert sent.json["orderInformation"]["lineItems"][0]["productSku"] == "P653727383"
    assert (
        "discountAmount" not in sent.json["orderInformation"]["lineItems"][0]
    )  # SDK nulls dropped
    assert sent.json["orderInformation"]["amountDetails"]["totalAmount"] == "2623.64"

    assert isinstance(result, InvoiceResponse)
    assert result.http_status == 201
    assert result.raw == sample_body("spec.create-invoice.201.response.json")
    assert result.correlation_id == sent.correlation_id
    assert result.id == "98753" and result.status == "SENT"
    assert result.invoice_information is not None
    assert result.invoice_information.delivery_mode == "email"
    assert result.invoice_information.payment_link.startswith(  # type: ignore[union-attr]
        "https://"
    )
    amounts = result.order_information.amount_details  # type: ignore[union-attr]
    assert amounts.total_amount == Decimal("2623.64") and amounts.balance_amount == Decimal(
        "2623.64"
    )
    assert result.links is not None and result.links["self"].href == "/v2/invoices/98753"
    assert result.invoice_number == "98753"
    assert not result.accepted_without_email


async def test_create_invoice_with_mapping_sends_decimals_as_text(
    client: CybersourceClient, upstream: FakeUpstream
) -> None:
    body = {
        "invoiceInformation": {
            "description": "Consulting",
            "dueDate": dt.date(2025, 12, 31),
            "deliveryMode": "none",
        },
        "orderInformation": {
            "amountDetails": {"totalAmount": Decimal("100.00"), "currency": "USD"}
        },
    }
    await client.create_invoice(body)
    sent = upstream.last
    assert_signed(sent, with_body=True)
    assert sent.body == (
        b'{"invoiceInformation":{"description":"Consulting","dueDate":"2025-12-31",'
        b'"deliveryMode":"none"},"orderInformation":{"amountDetails":'
        b'{"totalAmount":"100.00","currency":"USD"}}}'
    )
    assert sent.body == encode_body(body)


async def test_create_invoice_202_accepted(
    client: CybersourceClient, upstream: FakeUpstream
) -> None:
    upstream.reply(202, sample_body("spec.create-invoice.202.response.json"))
    result = await client.create_invoice(create_request())
    assert result.accepted_without_email
    assert result.status == "ACCEPTED" and result.id is None
    assert result.message is not None and "98753" in result.message


@pytest.mark.parametrize(
    ("kwargs", "target"),
    [
        ({"offset": 0, "limit": 10}, "/invoicing/v2/invoices?offset=0&limit=10"),
        (
            {"offset": 20, "limit": 5, "status": "DRAFT"},
            "/invoicing/v2/invoices?offset=20&limit=5&status=DRAFT",
        ),
        (
            {"status": "PAID", "limit": 1000, "offset": 3},
            "/invoicing/v2/invoices?offset=3&limit=1000&status=PAID",
        ),
    ],
)
async def test_list_invoices_query_in_parameter_order(
    client: CybersourceClient, upstream: FakeUpstream, kwargs: dict[str, Any], target: str
) -> None:
    result = await client.list_invoices(**kwargs)
    assert (upstream.last.method, upstream.last.target) == ("GET", target)
    assert_signed(upstream.last, with_body=False)
    assert isinstance(result, InvoiceListResponse)
    assert result.total_invoices == 123 and len(result.invoices) == 2
    assert result.invoices[0].id == "98772" and result.invoices[0].status == "DRAFT"
    assert (
        result.invoices[1].order_information.amount_details.total_amount  # type: ignore[union-attr]
        == Decimal("14249.56")
    )
    assert result.links is not None and result.links["next"].href is not None
    assert result.raw["totalInvoices"] == 123 and result.correlation_id


@pytest.mark.parametrize(
    "kwargs", [{"offset": -1, "limit": 10}, {"offset": 0, "limit": 0}, {"offset": 0, "limit": 1001}]
)
async def test_list_invoices_refuses_bad_paging(
    client: CybersourceClient, upstream: FakeUpstream, kwargs: dict[str, int]
) -> None:
    with pytest.raises(ValueError):
        await client.list_invoices(**kwargs)
    assert upstream.requests == []


async def test_get_invoice(client: CybersourceClient, upstream: FakeUpstream) -> None:
    result = await client.get_invoice("A123")
    assert (upstream.last.method, upstream.last.target) == ("GET", "/invoicing/v2/invoices/A123")
    assert_signed(upstream.last, with_body=False)
    assert "content-type" not in upstream.last.headers
    assert result.status == "PAID"
    assert (
        result.order_information.amount_details.balance_amount  # type: ignore[union-attr]
        == Decimal("0")
    )
    history = result.invoice_history
    assert history is not None
    assert [entry.event for entry in history] == ["PAYMENT", "RESEND", "SEND", "CREATE"]
    assert history[0].transaction_details.amount == Decimal("11843.71")  # type: ignore[union-attr]
    line = result.order_information.line_items[0]  # type: ignore[union-attr,index]
    assert line.quantity == 20 and line.unit_price == Decimal("12.05")


async def test_invoice_id_is_escaped_and_signed_as_sent(
    client: CybersourceClient, upstream: FakeUpstream
) -> None:
    await client.get_invoice("INV 1/2?x")
    assert upstream.last.target == "/invoicing/v2/invoices/INV%201%2F2%3Fx"
    assert_signed(upstream.last, with_body=False)
    with pytest.raises(ValueError):
        await client.get_invoice("..")
    with pytest.raises(ValueError):
        await client.cancel_invoice("")


async def test_update_invoice(client: CybersourceClient, upstream: FakeUpstream) -> None:
    request = InvoiceUpdateRequest.model_validate(
        sample_body("sdk-sample.update-invoice.request.json")
    )
    result = await client.update_invoice("INV-1001", request)
    assert (upstream.last.method, upstream.last.target) == (
        "PUT",
        "/invoicing/v2/invoices/INV-1001",
    )
    assert_signed(upstream.last, with_body=True)
    assert upstream.last.body == request.to_wire()
    assert "invoiceNumber" not in upstream.last.json["invoiceInformation"]
    assert result.id == "98753" and result.status == "SENT"


@pytest.mark.parametrize(
    ("method_name", "action", "status"),
    [
        ("send_invoice", "delivery", "SENT"),
        ("cancel_invoice", "cancelation", "CANCELED"),
        ("publish_invoice", "publication", "CREATED"),
    ],
)
async def test_action_posts_send_empty_object(
    client: CybersourceClient, upstream: FakeUpstream, method_name: str, action: str, status: str
) -> None:
    result = await getattr(client, method_name)("INV-1001")
    sent = upstream.last
    assert (sent.method, sent.target) == ("POST", f"/invoicing/v2/invoices/INV-1001/{action}")
    assert sent.body == b"{}"
    assert sent.headers["digest"] == ACTION_DIGEST
    assert_signed(sent, with_body=True)
    assert isinstance(result, InvoiceResponse) and result.status == status


async def test_get_invoice_settings(client: CybersourceClient, upstream: FakeUpstream) -> None:
    result = await client.get_invoice_settings()
    assert (upstream.last.method, upstream.last.target) == ("GET", "/invoicing/v2/invoiceSettings")
    assert_signed(upstream.last, with_body=False)
    assert isinstance(result, InvoiceSettingsResponse)
    info = result.invoice_settings_information
    assert info is not None and info.payer_authentication_3ds_version is True
    assert info.header_style.font_color == "#000001"  # type: ignore[union-attr]
    assert (
        result.merchant_information.address_details.city  # type: ignore[union-attr]
        == "Bellevue"
    )

    await client.get_invoice_settings(product_type="PAYBYLINK")
    assert upstream.last.target == "/invoicing/v2/invoiceSettings?productType=PAYBYLINK"
    assert_signed(upstream.last, with_body=False)


async def test_update_invoice_settings(client: CybersourceClient, upstream: FakeUpstream) -> None:
    request = InvoiceSettingsRequest.model_validate(
        sample_body("sdk-sample.update-invoice-settings.request.json")
    )
    result = await client.update_invoice_settings(request, product_type="INVOICING")
    sent = upstream.last
    assert (sent.method, sent.target) == (
        "PUT",
        "/invoicing/v2/invoiceSettings?productType=INVOICING",
    )
    assert_signed(sent, with_body=True)
    assert sent.body == request.to_wire()
    assert sent.json["invoiceSettingsInformation"]["payerAuthenticationInInvoicing"] == "enable"
    assert isinstance(result, InvoiceSettingsResponse) and result.correlation_id

    await client.update_invoice_settings({"invoiceSettingsInformation": {"enableReminders": False}})
    assert upstream.last.target == "/invoicing/v2/invoiceSettings"
    assert upstream.last.body == b'{"invoiceSettingsInformation":{"enableReminders":false}}'
    assert_signed(upstream.last, with_body=True)


async def test_list_merchant_defined_fields(
    client: CybersourceClient, upstream: FakeUpstream
) -> None:
    result = await client.list_merchant_defined_fields("Invoice")
    assert upstream.last.method == "GET"
    assert upstream.last.target == "/invoicing/v2/Invoice/merchantDefinedFields"
    assert_signed(upstream.last, with_body=False)
    assert isinstance(result, MerchantDefinedFieldList)
    assert isinstance(result.raw, list)
    definition = result.definitions[0]
    assert (
        definition.label == "Cup"
        and definition.customer_visible is True
        and definition.read_only is False
    )


async def test_create_merchant_defined_field(
    client: CybersourceClient, upstream: FakeUpstream
) -> None:
    request = MerchantDefinedFieldRequest.model_validate(
        sample_body("spec.create-merchant-defined-field.request.json")
    )
    result = await client.create_merchant_defined_field("Invoice", request)
    sent = upstream.last
    assert (sent.method, sent.target) == ("POST", "/invoicing/v2/Invoice/merchantDefinedFields")
    assert_signed(sent, with_body=True)
    assert sent.json == {
        "fieldType": "Text",
        "label": "Cup",
        "merchantDefinedDataIndex": 15,
        "customerVisible": True,
        "readOnly": False,
        "textMinLength": 1,
        "textMaxLength": 100,
        "textDefaultValue": "default text",
    }
    assert result.http_status == 201 and result.definitions[0].merchant_defined_data_index == 15


async def test_update_merchant_defined_field(
    client: CybersourceClient, upstream: FakeUpstream
) -> None:
    body = {"fieldType": "Text", "label": "Mug", "merchantDefinedDataIndex": 15}
    result = await client.update_merchant_defined_field("Purchase", 1515, body)
    sent = upstream.last
    assert (sent.method, sent.target) == (
        "PUT",
        "/invoicing/v2/Purchase/merchantDefinedFields/1515",
    )
    assert_signed(sent, with_body=True)
    assert sent.json == body
    assert isinstance(result, MerchantDefinedFieldList)


async def test_delete_merchant_defined_field(
    client: CybersourceClient, upstream: FakeUpstream
) -> None:
    result = await client.delete_merchant_defined_field("Donation", 7)
    sent = upstream.last
    assert (sent.method, sent.target) == (
        "DELETE",
        "/invoicing/v2/Donation/merchantDefinedFields/7",
    )
    assert_signed(sent, with_body=False)
    assert isinstance(result, EmptyResponse)
    assert result.raw is None and result.http_status == 204 and result.correlation_id


async def test_one_request_per_call(client: CybersourceClient, upstream: FakeUpstream) -> None:
    await client.create_invoice(create_request())
    await client.get_invoice("A123")
    assert [r.method for r in upstream.requests] == ["POST", "GET"]


# --- authentication variants ---------------------------------------------------------------------


async def test_meta_key_signs_portfolio_but_sends_merchant(upstream: FakeUpstream) -> None:
    meta = profile(
        upstream.base_url,
        key_id=META_KEY_ID,
        shared_secret=SecretStr(META_SECRET),
        portfolio_id=PORTFOLIO,
    )
    async with CybersourceClient(meta) as cs:
        await cs.get_invoice("INV-1001")
        await cs.create_invoice(create_request())
    for sent in upstream.requests:
        assert sent.auth_error is None and sent.merchant_id == MERCHANT
        assert sent.headers["v-c-merchant-id"] == MERCHANT


async def test_wrong_secret_is_refused_by_the_verifier(upstream: FakeUpstream) -> None:
    wrong_secret = SecretStr("d3Jvbmctc2VjcmV0LXdyb25nLXNlY3JldC0wMTIzNA==")
    wrong = profile(upstream.base_url, shared_secret=wrong_secret)
    async with CybersourceClient(wrong) as cs:
        from app.cybersource.errors import AuthenticationError

        with pytest.raises(AuthenticationError) as caught:
            await cs.get_invoice("INV-1001")
    assert caught.value.status == 401 and caught.value.body == "Authentication Failed"
    assert upstream.last.auth_error == "signature does not match"


async def test_jwt_shared_secret_hs256(upstream: FakeUpstream) -> None:
    jwt_profile = profile(upstream.base_url, auth="jwt")
    async with CybersourceClient(jwt_profile) as cs:
        await cs.create_invoice(create_request())
        await cs.list_invoices(offset=0, limit=10, status="SENT")
        await cs.send_invoice("INV-1001")
        await cs.delete_merchant_defined_field("Invoice", 7)
    for sent in upstream.requests:
        assert sent.scheme == "jwt" and sent.auth_error is None and sent.merchant_id == MERCHANT
        assert sent.headers["authorization"].startswith("Bearer ")
        assert sent.headers["host"] == "127.0.0.1"
        assert "signature" not in sent.headers and "digest" not in sent.headers
    import jwt as pyjwt

    assert (
        pyjwt.get_unverified_header(upstream.requests[0].headers["authorization"][7:])["alg"]
        == "HS256"
    )
    assert upstream.requests[1].target == "/invoicing/v2/invoices?offset=0&limit=10&status=SENT"


def make_p12(path: Path, password: bytes) -> x509.Certificate:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, MERCHANT)])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    path.write_bytes(
        pkcs12.serialize_key_and_certificates(
            MERCHANT.encode(),
            key,
            certificate,
            None,
            serialization.BestAvailableEncryption(password),
        )
    )
    return certificate


async def test_jwt_p12_rs256(upstream: FakeUpstream, tmp_path: Path) -> None:
    certificate = make_p12(tmp_path / "merchant.p12", b"p12-password")
    upstream.add_key(
        VerificationKey(
            key_id=str(certificate.serial_number),
            merchant_ids=frozenset({MERCHANT}),
            public_key=certificate.public_key(),
        )
    )  # type: ignore[arg-type]
    p12_profile = profile(
        upstream.base_url,
        auth="jwt",
        jwt_key_type="p12",
        shared_secret=None,
        p12_path=tmp_path / "merchant.p12",
        p12_password=SecretStr("p12-password"),
    )
    async with CybersourceClient(p12_profile) as cs:
        result = await cs.create_invoice(create_request())
        await cs.get_invoice("A123")
    assert result.id == "98753"
    import jwt as pyjwt

    for sent in upstream.requests:
        assert sent.scheme == "jwt" and sent.auth_error is None and sent.merchant_id == MERCHANT
        header = pyjwt.get_unverified_header(sent.headers["authorization"][7:])
        assert header["alg"] == "RS256" and header["kid"] == str(certificate.serial_number)


async def test_p12_is_loaded_once(
    upstream: FakeUpstream, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_p12(tmp_path / "m.p12", b"pw")
    loads: list[int] = []
    original = client_module.P12Key.load

    def counting_load(data: bytes, password: bytes | None) -> Any:
        loads.append(1)
        return original(data, password)

    monkeypatch.setattr(client_module.P12Key, "load", staticmethod(counting_load))
    p12_profile = profile(
        upstream.base_url,
        auth="jwt",
        jwt_key_type="p12",
        p12_path=tmp_path / "m.p12",
        p12_password=SecretStr("pw"),
    )
    upstream.verify = False
    async with CybersourceClient(p12_profile) as cs:
        for _ in range(3):
            await cs.get_invoice("A123")
    assert loads == [1]


# --- environments and base URLs ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("environment", "host"),
    [
        ("test", "apitest.cybersource.com"),
        ("production", "api.cybersource.com"),
        ("india-production", "api.in.cybersource.com"),
    ],
)
def test_environment_hosts(environment: str, host: str) -> None:
    cs = CybersourceClient(profile(None, environment=environment))  # type: ignore[arg-type]
    assert cs.host == host
    assert cs.base_url == f"https://{host}"


def test_custom_base_url_wins() -> None:
    cs = CybersourceClient(profile("http://simulator.internal:8081/", environment="production"))
    assert cs.host == "simulator.internal"  # bare: no scheme, no port
    assert cs.base_url == "http://simulator.internal:8081"


def test_base_url_must_be_http() -> None:
    with pytest.raises(ValueError):
        CybersourceClient(profile("ftp://example.com"))


async def test_base_url_path_prefix_is_signed(upstream: FakeUpstream) -> None:
    upstream.reply(200, sample_body("spec.get-invoice.200.response.json"))
    async with CybersourceClient(profile(upstream.base_url + "/cybs/")) as cs:
        await cs.get_invoice("A1")
    assert upstream.last.target == "/cybs/invoicing/v2/invoices/A1"
    assert upstream.last.auth_error is None


# --- registry, session ---------------------------------------------------------------------------


def make_settings(base_url: str) -> Settings:
    extra = {
        "name": "second",
        "merchant_id": MERCHANT,
        "key_id": META_KEY_ID,
        "shared_secret": META_SECRET,
        "portfolio_id": PORTFOLIO,
        "base_url": base_url,
    }
    return Settings(
        app_env="test",
        cybersource_base_url=base_url,
        cybersource_merchant_id=MERCHANT,
        cybersource_key_id=KEY_ID,
        cybersource_shared_secret=SecretStr(SECRET),
        cybersource_profiles=[extra],
        cybersource_connect_timeout=1.5,
        cybersource_read_timeout=2.5,
        cybersource_total_timeout=3.5,
        cybersource_max_connections=7,
    )


async def test_registry_from_settings_shares_one_session(upstream: FakeUpstream) -> None:
    clients = CybersourceClients.from_settings(make_settings(upstream.base_url))
    assert clients.names == ["default", "second"]
    assert clients.default is clients.get("default") is clients["default"]
    assert "second" in clients and len(clients) == 2
    assert clients.default.timeouts == Timeouts(connect=1.5, read=2.5, total=3.5)
    await clients.default.get_invoice("A1")
    await clients.get("second").get_invoice("A1")
    assert all(r.auth_error is None for r in upstream.requests)
    session = clients.sessions.get()
    assert clients.get("second")._sessions.get() is session
    assert isinstance(session.connector, aiohttp.TCPConnector) and session.connector.limit == 7
    await clients.default.aclose()  # a registry's client leaves the shared session alone
    assert not session.closed
    await clients.aclose()
    assert session.closed
    with pytest.raises(RuntimeError):
        await clients.default.get_invoice("A1")


def test_registry_unknown_profile_is_a_clear_key_error() -> None:
    clients = CybersourceClients.from_settings(make_settings("http://127.0.0.1:9"))
    with pytest.raises(KeyError) as caught:
        clients.get("nope")
    assert isinstance(caught.value, UnknownMerchantProfileError)
    assert (
        str(caught.value)
        == "unknown Cybersource merchant profile 'nope'; configured: default, second"
    )
    with pytest.raises(UnknownMerchantProfileError):
        CybersourceClient.from_settings(make_settings("http://127.0.0.1:9"), "nope")


async def test_session_passed_in_is_used_and_not_closed(upstream: FakeUpstream) -> None:
    async with aiohttp.ClientSession() as session:
        cs = CybersourceClient(profile(upstream.base_url), session=session)
        await cs.get_invoice("A1")
        await cs.aclose()
        assert not session.closed
        clients = CybersourceClients.from_settings(
            make_settings(upstream.base_url), session=session
        )
        assert clients.sessions.get() is session
        await clients.aclose()
        assert not session.closed


def test_session_is_not_made_outside_a_loop() -> None:
    with pytest.raises(RuntimeError):
        SessionProvider().get()


# --- logging -------------------------------------------------------------------------------------


class RecordingLogger:
    def __init__(self) -> None:
        self.events: list[tuple[str, str, dict[str, Any]]] = []

    def info(self, event: str, **fields: Any) -> None:
        self.events.append(("info", event, fields))

    def warning(self, event: str, **fields: Any) -> None:
        self.events.append(("warning", event, fields))


async def test_each_call_is_logged_without_secrets(
    upstream: FakeUpstream, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    recorder = RecordingLogger()
    monkeypatch.setattr(client_module, "_log", recorder)
    caplog.set_level(logging.INFO, logger="app.cybersource.client")
    async with CybersourceClient(profile(upstream.base_url)) as cs:
        await cs.create_invoice(create_request())
        upstream.reply(404, sample_body("spec.error.404.response.json"))
        with pytest.raises(Exception):
            await cs.get_invoice("NOPE")
    async with CybersourceClient(profile(upstream.base_url, auth="jwt")) as cs:
        await cs.get_invoice("A1")

    assert [level for level, _, _ in recorder.events] == ["info", "warning", "info"]
    first = recorder.events[0][2]
    assert (
        first["method"] == "POST"
        and first["path"] == "/invoicing/v2/invoices"
        and first["status"] == 201
    )
    assert first["correlation_id"] == upstream.requests[0].correlation_id
    assert isinstance(first["elapsed_ms"], float)
    failed = recorder.events[1][2]
    assert (
        failed["status"] == 404
        and failed["error"] == "RejectedError"
        and failed["reason"] == "NOT_FOUND"
    )
    text = json.dumps([fields for _, _, fields in recorder.events])
    for sent in upstream.requests:
        for name in ("signature", "authorization"):
            if name in sent.headers:
                assert sent.headers[name].split("signature=")[-1] not in text
    assert SECRET not in text and "Bearer" not in text and "Signature" not in text


async def test_nothing_is_logged_below_the_configured_level(
    upstream: FakeUpstream, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    recorder = RecordingLogger()
    monkeypatch.setattr(client_module, "_log", recorder)
    caplog.set_level(logging.ERROR, logger="app.cybersource.client")
    async with CybersourceClient(profile(upstream.base_url)) as cs:
        await cs.get_invoice("A1")
    assert recorder.events == []

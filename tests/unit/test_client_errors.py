"""How the client classifies every failure into app.cybersource.errors, against a real local
server."""

from __future__ import annotations

import socket
import time
from email.utils import formatdate
from typing import Any

import aiohttp
import pytest

from app.cybersource.client import (
    CybersourceClient,
    GeneralSystemFailureError,
    canonical_reason,
    error_for_exception,
    error_for_response,
    parse_retry_after,
)
from app.cybersource.errors import (
    AmbiguousError,
    AuthenticationError,
    CybersourceError,
    RejectedError,
    TransientError,
)
from app.cybersource.models import InvoiceCreateRequest
from app.cybersource.transport import Timeouts
from tests.unit.test_client_upstream import FakeUpstream, profile, sample_body


@pytest.fixture
async def upstream():
    server = await FakeUpstream().start()
    yield server
    await server.close()


@pytest.fixture
async def client(upstream: FakeUpstream):
    cs = CybersourceClient(
        profile(upstream.base_url), timeouts=Timeouts(connect=1.0, read=0.3, total=5.0)
    )
    yield cs
    await cs.aclose()


def create_body() -> InvoiceCreateRequest:
    return InvoiceCreateRequest.model_validate(
        sample_body("devguide.create-invoice.minimal.request.json")
    )


async def call(client: CybersourceClient, operation: str) -> Any:
    match operation:
        case "create":
            return await client.create_invoice(create_body())
        case "update":
            body = sample_body("spec.update-invoice.simple.request.json")
            return await client.update_invoice("INV-1", body)
        case "send":
            return await client.send_invoice("INV-1")
        case "cancel":
            return await client.cancel_invoice("INV-1")
        case "publish":
            return await client.publish_invoice("INV-1")
        case "delete_field":
            return await client.delete_merchant_defined_field("Invoice", 7)
        case "get":
            return await client.get_invoice("INV-1")
        case "list":
            return await client.list_invoices(offset=0, limit=10)
        case "settings":
            return await client.get_invoice_settings()
    raise AssertionError(operation)


UNSAFE = ["create", "update", "send", "cancel", "publish", "delete_field"]
SAFE = ["get", "list", "settings"]


# --- HTTP answers --------------------------------------------------------------------------------


async def test_429_retry_after_seconds(client: CybersourceClient, upstream: FakeUpstream) -> None:
    upstream.reply(429, {"message": "Too many requests"}, headers={"Retry-After": "7"})
    with pytest.raises(TransientError) as caught:
        await client.create_invoice(create_body())
    error = caught.value
    assert type(error) is TransientError
    assert error.retry_after == 7.0 and error.status == 429
    assert error.body == {"message": "Too many requests"}
    assert error.correlation_id == upstream.last.correlation_id
    assert len(upstream.requests) == 1  # never retried inside the client


async def test_429_retry_after_http_date(client: CybersourceClient, upstream: FakeUpstream) -> None:
    upstream.reply(429, None, headers={"Retry-After": formatdate(time.time() + 30, usegmt=True)})
    with pytest.raises(TransientError) as caught:
        await client.get_invoice("INV-1")
    assert caught.value.retry_after is not None and 25 <= caught.value.retry_after <= 31
    assert caught.value.body is None


async def test_502_general_system_failure_is_flagged(
    client: CybersourceClient, upstream: FakeUpstream
) -> None:
    body = sample_body("spec.error.502.response.json")
    upstream.reply(502, body)
    with pytest.raises(TransientError) as caught:
        await client.create_invoice(create_body())
    error = caught.value
    assert isinstance(error, GeneralSystemFailureError)
    assert error.possibly_account_problem is True
    assert error.status == 502 and error.body == body
    assert len(upstream.requests) == 1


@pytest.mark.parametrize(
    "body",
    [
        {
            "status": "SERVER_ERROR",
            "reason": "SYSTEM_ERROR",
            "message": "Error - General system failure.",
        },
        {"status": "SERVER_ERROR", "reason": "SYSTEM_ERROR", "id": "6172811112996053203526"},
        {"errorInformation": {"reason": "whatever", "message": "General System Failure"}},
    ],
)
async def test_502_general_failure_variants(
    client: CybersourceClient, upstream: FakeUpstream, body: dict[str, Any]
) -> None:
    upstream.reply(502, body)
    with pytest.raises(GeneralSystemFailureError):
        await client.get_invoice_settings()


@pytest.mark.parametrize(
    ("status", "body", "raw"),
    [
        (502, {"status": "SERVER_ERROR", "reason": "SERVER_TIMEOUT", "message": "Timed out"}, None),
        (502, None, b"<html>Bad Gateway</html>"),
        (500, {"errorInformation": {"reason": "SYSTEM_ERROR", "message": "Internal"}}, None),
        (503, None, b"Service Unavailable"),
        (504, {"status": "SERVER_ERROR", "reason": "SERVICE_TIMEOUT"}, None),
        (599, None, None),
        (408, None, None),
    ],
)
async def test_5xx_are_transient(
    client: CybersourceClient, upstream: FakeUpstream, status: int, body: Any, raw: bytes | None
) -> None:
    upstream.reply(status, body, raw=raw)
    with pytest.raises(TransientError) as caught:
        await client.create_invoice(create_body())
    error = caught.value
    assert type(error) is TransientError
    assert getattr(error, "possibly_account_problem", False) is False
    assert error.status == status
    expected_body = body if body is not None else (raw.decode() if raw else None)
    assert error.body == expected_body  # raw body kept, JSON or not
    assert len(upstream.requests) == 1


async def test_503_retry_after_is_kept(client: CybersourceClient, upstream: FakeUpstream) -> None:
    upstream.reply(503, None, headers={"Retry-After": "12"})
    with pytest.raises(TransientError) as caught:
        await client.get_invoice("INV-1")
    assert caught.value.retry_after == 12.0


async def test_400_duplicate_record(client: CybersourceClient, upstream: FakeUpstream) -> None:
    body = {
        "submitTimeUtc": "2025-01-01T00:00:00Z",
        "status": "BADREQUEST",
        "reason": "DUPLICATE_RECORD",
        "message": "Invoice number already exists",
        "details": [{"field": "invoiceNumber", "reason": "duplicate"}],
    }
    upstream.reply(400, body)
    with pytest.raises(RejectedError) as caught:
        await client.create_invoice(create_body())
    error = caught.value
    assert error.is_duplicate_record and not error.is_not_found and not error.is_action_not_allowed
    assert error.reason == "DUPLICATE_RECORD" and error.status == 400
    assert error.details == [{"field": "invoiceNumber", "reason": "duplicate"}]
    assert error.body == body


@pytest.mark.parametrize(
    "reason",
    [
        "DUPLICATE_RECORD",
        "duplicate_record",
        "Duplicate Record",
        "DUPLICATE_RECORDS",
        "duplicate-record",
    ],
)
async def test_duplicate_record_spellings(
    client: CybersourceClient, upstream: FakeUpstream, reason: str
) -> None:
    upstream.reply(400, {"status": "BADREQUEST", "reason": reason})
    with pytest.raises(RejectedError) as caught:
        await client.create_invoice(create_body())
    assert caught.value.is_duplicate_record


@pytest.mark.parametrize(
    "body",
    [
        {
            "status": "BADREQUEST",
            "reason": "ACTION_NOT_ALLOWED",
            "message": "Requested action is not allowed.",
        },
        {"status": "BADREQUEST", "message": "Requested action is not allowed."},
        {"status": "BADREQUEST", "reason": "action not allowed"},
    ],
)
async def test_400_action_not_allowed(
    client: CybersourceClient, upstream: FakeUpstream, body: dict[str, Any]
) -> None:
    upstream.reply(400, body)
    with pytest.raises(RejectedError) as caught:
        await client.send_invoice("INV-1")
    assert caught.value.is_action_not_allowed and caught.value.reason == "ACTION_NOT_ALLOWED"


async def test_400_validation_error_keeps_details(
    client: CybersourceClient, upstream: FakeUpstream
) -> None:
    body = sample_body("spec.error.400.response.json")
    upstream.reply(400, body)
    with pytest.raises(RejectedError) as caught:
        await client.create_invoice(create_body())
    assert caught.value.reason == "VALIDATION_ERROR"
    assert caught.value.details == [
        {"field": "customerInformation.email", "reason": "Invalid email"}
    ]
    assert "Field validation errors." in str(caught.value)


async def test_404_not_found(client: CybersourceClient, upstream: FakeUpstream) -> None:
    body = sample_body("spec.error.404.response.json")
    upstream.reply(404, body)
    with pytest.raises(RejectedError) as caught:
        await client.get_invoice("NOPE")
    assert (
        caught.value.is_not_found
        and caught.value.reason == "NOT_FOUND"
        and caught.value.body == body
    )


@pytest.mark.parametrize("status", [400, 404, 409, 412])
async def test_merchant_defined_field_errors_read_response_data(
    client: CybersourceClient, upstream: FakeUpstream, status: int
) -> None:
    body = sample_body("spec.merchant-defined-fields.error.response.json")
    upstream.reply(status, body)
    with pytest.raises(RejectedError) as caught:
        await client.create_merchant_defined_field(
            "Invoice", {"fieldType": "Text", "label": "x", "merchantDefinedDataIndex": 1}
        )
    error = caught.value
    assert error.status == status
    assert error.reason == "MERCHANT_DEFINED_FIELD_ALREADY_UPDATED"
    assert len(error.details) == 9 and error.details[0]["field"] == "customerVisible readOnly"


async def test_422_and_other_4xx_are_rejected(
    client: CybersourceClient, upstream: FakeUpstream
) -> None:
    upstream.reply(422, {"reason": "INVALID_DATA"})
    upstream.reply(415, None, raw=b"unsupported")
    with pytest.raises(RejectedError) as first:
        await client.update_invoice("INV-1", sample_body("spec.update-invoice.simple.request.json"))
    with pytest.raises(RejectedError) as second:
        await client.get_invoice("INV-1")
    assert first.value.reason == "INVALID_DATA" and second.value.body == "unsupported"


@pytest.mark.parametrize(
    ("status", "body", "raw"),
    [
        (401, None, b"Authentication Failed"),
        (401, {"response": {"rmsg": "Authentication Failed"}}, None),
        (401, None, b"{not json"),
        (403, {"status": "FORBIDDEN"}, None),
    ],
)
async def test_401_403_are_authentication_errors(
    client: CybersourceClient, upstream: FakeUpstream, status: int, body: Any, raw: bytes | None
) -> None:
    upstream.reply(status, body, raw=raw)
    with pytest.raises(AuthenticationError) as caught:
        await client.create_invoice(create_body())
    assert caught.value.status == status
    assert caught.value.body == (
        body if body is not None else raw.decode()  # type: ignore[union-attr]
    )


async def test_redirects_are_not_followed(
    client: CybersourceClient, upstream: FakeUpstream
) -> None:
    upstream.reply(
        302, None, headers={"Location": "https://elsewhere.example/invoicing/v2/invoices"}
    )
    with pytest.raises(RejectedError) as caught:
        await client.create_invoice(create_body())
    assert caught.value.status == 302 and "not followed" in str(caught.value)
    assert len(upstream.requests) == 1


# --- no HTTP answer ------------------------------------------------------------------------------


@pytest.mark.parametrize("operation", UNSAFE)
async def test_read_timeout_after_sending_is_ambiguous(
    client: CybersourceClient, upstream: FakeUpstream, operation: str
) -> None:
    upstream.reply(201, {"id": "late"}, delay=2.0)
    started = time.perf_counter()
    with pytest.raises(AmbiguousError) as caught:
        await call(client, operation)
    assert time.perf_counter() - started < 1.5
    assert "may or may not have been applied" in str(caught.value)
    assert len(upstream.requests) == 1  # the server did receive it


@pytest.mark.parametrize("operation", SAFE)
async def test_read_timeout_on_a_read_is_transient(
    client: CybersourceClient, upstream: FakeUpstream, operation: str
) -> None:
    upstream.reply(200, {}, delay=2.0)
    with pytest.raises(TransientError):
        await call(client, operation)


async def test_total_timeout_on_create_is_ambiguous(upstream: FakeUpstream) -> None:
    upstream.reply(201, {"id": "late"}, delay=2.0)
    async with CybersourceClient(
        profile(upstream.base_url), timeouts=Timeouts(connect=1.0, read=5.0, total=0.3)
    ) as cs:
        with pytest.raises(AmbiguousError):
            await cs.create_invoice(create_body())


@pytest.mark.parametrize(
    ("operation", "expected"),
    [
        ("create", AmbiguousError),
        ("cancel", AmbiguousError),
        ("update", AmbiguousError),
        ("delete_field", AmbiguousError),
        ("get", TransientError),
        ("list", TransientError),
    ],
)
async def test_server_disconnect_after_receiving(
    client: CybersourceClient,
    upstream: FakeUpstream,
    operation: str,
    expected: type[CybersourceError],
) -> None:
    await client.get_invoice_settings()  # leave a keep-alive connection in the pool
    upstream.reply(drop=True)
    with pytest.raises(expected) as caught:
        await call(client, operation)
    assert type(caught.value) is expected
    # aiohttp would silently resend GET/PUT/DELETE on a reused connection; the client turns that off
    assert len(upstream.requests) == 2


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize("operation", ["create", "cancel", "get"])
async def test_connection_refused_is_transient(operation: str) -> None:
    async with CybersourceClient(profile(f"http://127.0.0.1:{free_port()}")) as cs:
        with pytest.raises(TransientError) as caught:
            await call(cs, operation)
    assert type(caught.value) is TransientError
    assert "not sent" in str(caught.value)
    assert isinstance(caught.value.__cause__, aiohttp.ClientConnectorError)


@pytest.mark.parametrize(
    ("operation", "expected"), [("create", AmbiguousError), ("get", TransientError)]
)
async def test_unreadable_2xx_body(
    client: CybersourceClient,
    upstream: FakeUpstream,
    operation: str,
    expected: type[CybersourceError],
) -> None:
    upstream.reply(201, None, raw=b"<html>ok</html>")
    with pytest.raises(expected) as caught:
        await call(client, operation)
    assert caught.value.body == "<html>ok</html>" and caught.value.status == 201


# --- the pure functions --------------------------------------------------------------------------


def test_error_for_exception_table() -> None:
    connect_failures: list[BaseException] = [
        aiohttp.ConnectionTimeoutError("connect"),
        aiohttp.ClientConnectorError(
            aiohttp.client_reqrep.ConnectionKey(  # type: ignore[attr-defined]
                "h", 443, True, True, None, None, None
            ),
            OSError(111, "refused"),
        ),
    ]
    for exc in connect_failures:
        for method in ("GET", "POST", "PUT", "DELETE"):
            assert type(error_for_exception(exc, method=method)) is TransientError
    after_sending: list[BaseException] = [
        aiohttp.SocketTimeoutError("read"),
        aiohttp.ServerDisconnectedError(),
        aiohttp.ClientPayloadError("broken"),
        aiohttp.ClientOSError(104, "reset"),
        TimeoutError(),
        ConnectionResetError(),
        aiohttp.ClientConnectionResetError("reset"),
    ]
    for exc in after_sending:
        assert type(error_for_exception(exc, method="GET")) is TransientError
        for method in ("POST", "PUT", "DELETE"):
            assert type(error_for_exception(exc, method=method)) is AmbiguousError


def test_parse_retry_after() -> None:
    now = 1_764_064_800.0
    assert parse_retry_after("120", now=now) == 120.0
    assert parse_retry_after("1.5", now=now) == 1.5
    assert parse_retry_after("-3", now=now) == 0.0
    assert parse_retry_after("Tue, 25 Nov 2025 10:01:00 GMT", now=now) == 60.0
    assert parse_retry_after("Tue, 25 Nov 2025 09:00:00 GMT", now=now) == 0.0
    assert parse_retry_after("soon", now=now) is None
    assert parse_retry_after("", now=now) is None
    assert parse_retry_after(None, now=now) is None
    assert parse_retry_after("nan", now=now) is None


def test_canonical_reason() -> None:
    assert canonical_reason("NOTFOUND", None) == "NOT_FOUND"
    assert canonical_reason("not found", None) == "NOT_FOUND"
    assert canonical_reason("VALIDATION_ERRORS", None) == "VALIDATION_ERRORS"
    assert canonical_reason(None, "This invoice number is a duplicate") == "DUPLICATE_RECORD"
    assert canonical_reason(None, None) is None


def test_error_for_response_on_bodies_outside_the_spec() -> None:
    for body in (
        None,
        "text",
        [1, 2],
        {"status": 400, "details": "not a list"},
        {"details": [1, "x"]},
    ):
        error = error_for_response(method="POST", status=400, body=body)
        assert isinstance(error, RejectedError) and error.body == body and error.details == []


# --- a 401 that comes from the clocks (issue 15) --------------------------------------------------


@pytest.mark.parametrize("status", [401, 403])
def test_a_refusal_whose_date_is_minutes_away_is_named_clock_skew(status: int) -> None:
    now = 1_800_000_000.0
    error = error_for_response(
        method="POST",
        status=status,
        body={"response": {"rmsg": "Authentication Failed"}},
        headers={"Date": formatdate(now + 420, usegmt=True)},
        now=now,
    )
    assert isinstance(error, AuthenticationError)
    assert error.clock_skew_seconds == 420
    assert "clock skew" in error.message and "Date header is 420 s ahead of" in error.message
    behind = error_for_response(
        method="GET",
        status=status,
        body="",
        headers={"Date": formatdate(now - 900, usegmt=True)},
        now=now,
    )
    assert isinstance(behind, AuthenticationError) and behind.clock_skew_seconds == -900
    assert "900 s behind" in behind.message


@pytest.mark.parametrize("date", [None, "not a date", formatdate(1_800_000_030.0, usegmt=True)])
def test_a_refusal_with_a_close_or_missing_date_is_no_clock_skew(date: str | None) -> None:
    headers = {} if date is None else {"Date": date}
    error = error_for_response(
        method="GET", status=401, body="", headers=headers, now=1_800_000_000.0
    )
    assert isinstance(error, AuthenticationError)
    assert error.clock_skew_seconds is None and "clock" not in error.message

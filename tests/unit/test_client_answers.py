"""How the Cybersource client reads answers (issue 9): numbers with a fraction become `Decimal`,
never `float`, in the typed result and in `.raw`; `NaN` and `Infinity` (not JSON) are refused as an
unreadable answer, and an error answer carrying them is kept as text."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from app.cybersource import client as client_module
from app.cybersource.client import CybersourceClient
from app.cybersource.errors import AmbiguousError, RejectedError, TransientError
from tests.unit.test_client_upstream import FakeUpstream, profile

# Beyond a float's precision: through a float this would arrive as 2623.64.
INVOICE = (
    b'{"id": "INV1", "status": "SENT", "invoiceInformation": {"invoiceNumber": "INV1"},'
    b' "orderInformation": {"amountDetails": {"totalAmount": 2623.640000000000000001,'
    b' "balanceAmount": 100.10, "currency": "USD", "discountPercent": 5.0},'
    b' "lineItems": [{"quantity": 21, "unitPrice": 120.08}]}}'
)


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


def floats_in(value: Any) -> list[float]:
    if isinstance(value, float):
        return [value]
    if isinstance(value, dict):
        return [f for item in value.values() for f in floats_in(item)]
    if isinstance(value, list):
        return [f for item in value for f in floats_in(item)]
    return []


async def test_amounts_in_an_answer_are_decimals_never_floats(
    upstream: FakeUpstream, client: CybersourceClient
):
    upstream.reply(200, raw=INVOICE)
    result = await client.get_invoice("INV1")
    assert floats_in(result.raw) == []
    amounts = result.raw["orderInformation"]["amountDetails"]
    assert amounts["totalAmount"] == Decimal("2623.640000000000000001")
    assert str(amounts["balanceAmount"]) == "100.10"  # the scale as written
    assert amounts["discountPercent"] == Decimal("5.0")
    assert result.raw["orderInformation"]["lineItems"][0]["quantity"] == 21  # integers stay int
    typed = result.order_information
    assert typed is not None and typed.amount_details is not None
    assert typed.amount_details.total_amount == Decimal("2623.640000000000000001")
    assert typed.amount_details.balance_amount == Decimal("100.10")


@pytest.mark.parametrize("constant", [b"NaN", b"Infinity", b"-Infinity"])
@pytest.mark.parametrize("field", ["balanceAmount", "rate"])  # an amount; a field kept as it came
async def test_a_non_finite_number_in_an_answer_is_an_unreadable_answer(
    upstream: FakeUpstream, client: CybersourceClient, constant: bytes, field: str
):
    body = INVOICE.replace(b'"balanceAmount": 100.10', f'"{field}": '.encode() + constant)
    # A read may be retried: transient. A create may have been applied: ambiguous. Never a value.
    upstream.reply(200, raw=body)
    with pytest.raises(TransientError, match="unreadable body"):
        await client.get_invoice("INV1")
    upstream.reply(201, raw=body)
    with pytest.raises(AmbiguousError, match="unreadable body"):
        await client.create_invoice({"invoiceInformation": {"description": "x"}})


async def test_an_error_answer_with_a_non_finite_number_is_kept_as_text(
    upstream: FakeUpstream, client: CybersourceClient
):
    upstream.reply(400, raw=b'{"reason": "INVALID_DATA", "message": "bad", "amount": NaN}')
    with pytest.raises(RejectedError) as caught:
        await client.get_invoice("INV1")
    assert isinstance(caught.value.body, str) and "NaN" in caught.value.body


def test_read_answer_refuses_constants_and_keeps_decimals():
    read_answer = client_module.read_answer
    assert read_answer(b'{"a": 1.10, "b": 7, "c": [0.5]}') == {
        "a": Decimal("1.10"),
        "b": 7,
        "c": [Decimal("0.5")],
    }
    for constant in (b"NaN", b"Infinity", b"-Infinity"):
        with pytest.raises(ValueError, match="not a JSON number"):
            read_answer(b'{"a": ' + constant + b"}")
    with pytest.raises(ValueError, match="nested too deeply"):
        read_answer(b"[" * 100_000 + b"]" * 100_000)

"""UpstreamState.matches_request: after a DUPLICATE_RECORD, is the upstream invoice the one we asked
for?"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from app.invoices.upstream_state import UpstreamState

SAMPLES = Path(__file__).parents[1] / "fixtures" / "cybersource" / "samples"

REQUEST: dict[str, Any] = {
    "customerInformation": {"name": "Tanya Lee", "email": "tanya.lee@example.com"},
    "invoiceInformation": {
        "invoiceNumber": "INV-00000042",
        "description": "Consulting, November",
        "dueDate": "2026-12-31",
        "deliveryMode": "email",
    },
    "orderInformation": {
        "amountDetails": {"totalAmount": "150.00", "currency": "USD"},
        "lineItems": [
            {"productName": "Hours", "quantity": 3, "unitPrice": "50.00", "totalAmount": "150.00"}
        ],
    },
}


def _upstream(**changes: Any) -> dict[str, Any]:
    """What Cybersource answers for REQUEST (numbers as JSON numbers, `deliveryMode`
    capitalised)."""
    body = copy.deepcopy(REQUEST)
    body.update(status="DRAFT", id="INV-00000042")
    body["invoiceInformation"]["deliveryMode"] = "Email"
    body["orderInformation"]["amountDetails"] = {
        "totalAmount": 150.0,
        "currency": "usd",
        "balanceAmount": 150.0,
    }
    for dotted, value in changes.items():
        section, field = dotted.split(".")
        body[section][field] = value
    return body


def test_the_invoice_we_asked_for_matches():
    assert UpstreamState.from_body(_upstream()).matches_request(REQUEST)


def test_case_and_surrounding_spaces_do_not_matter():
    upstream = _upstream(
        **{
            "customerInformation.email": " Tanya.Lee@Example.com",
            "customerInformation.name": "TANYA LEE",
        }
    )
    assert UpstreamState.from_body(upstream).matches_request(REQUEST)


@pytest.mark.parametrize(
    "change",
    [
        {"customerInformation.email": "someone.else@example.com"},
        {"customerInformation.name": "Pat Payer"},
        {"invoiceInformation.dueDate": "2027-01-31"},
        {"invoiceInformation.description": "Another invoice"},
        {"orderInformation.lineItems": []},
        {"orderInformation.amountDetails": {"totalAmount": 150.0, "currency": "EUR"}},
        {"orderInformation.amountDetails": {"totalAmount": "150.01", "currency": "USD"}},
    ],
)
def test_another_invoice_with_our_number_does_not_match(change: dict[str, Any]):
    assert not UpstreamState.from_body(_upstream(**change)).matches_request(REQUEST)


def test_a_field_we_set_that_upstream_lacks_does_not_match():
    upstream = _upstream()
    del upstream["invoiceInformation"]["description"]
    assert not UpstreamState.from_body(upstream).matches_request(REQUEST)


def test_fields_the_request_left_out_are_not_compared():
    request = json.loads((SAMPLES / "devguide.create-invoice.minimal.request.json").read_text())[
        "body"
    ]
    response = json.loads(
        (SAMPLES / "devguide.create-invoice.minimal.201.response.json").read_text()
    )["body"]
    assert UpstreamState.from_body(response).matches_request(request)

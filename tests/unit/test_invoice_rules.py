"""Local validation of invoice bodies: types and limits (schemas) and the money rules (invoice_rules)."""

from __future__ import annotations

import copy

import pytest
from pydantic import ValidationError

from app.invoices.rules import check_invoice, upstream_body
from app.invoices.schemas import InvoiceCreate

BASE = {
    "customerInformation": {"name": "Tanya Lee", "email": "tanya@example.com"},
    "invoiceInformation": {
        "description": "Consulting",
        "dueDate": "2026-12-31",
        "allowPartialPayments": True,
    },
    "orderInformation": {
        "amountDetails": {
            "totalAmount": "227.00",
            "currency": "USD",
            "subAmount": "210.00",
            "discountAmount": "10.00",
            "taxDetails": {"amount": "17.00"},
            "freight": {"amount": "10.00"},
        },
        "lineItems": [
            {"productName": "Hours", "quantity": 2, "unitPrice": "50.00", "totalAmount": "100.00"},
            {
                "productName": "Licence",
                "quantity": 1,
                "unitPrice": "120.00",
                "discountPercent": "10",
                "taxRate": "1.852",
                "totalAmount": "110.00",
            },
        ],
    },
}


def body(**patch):
    data = copy.deepcopy(BASE)
    for path, value in patch.items():
        target = data
        *parents, leaf = path.split("__")
        for parent in parents:
            target = target[int(parent)] if parent.isdigit() else target[parent]
        if value is None:
            del target[leaf]
        else:
            target[leaf] = value
    return InvoiceCreate.model_validate(data)


def fields(errors):
    return [e["field"] for e in errors]


def test_consistent_invoice_passes():
    assert check_invoice(body(), check_totals=True) == []


def test_line_total_must_match_quantity_price_discount_and_tax():
    errors = check_invoice(
        body(orderInformation__lineItems__0__totalAmount="99.00"), check_totals=True
    )
    assert fields(errors) == ["orderInformation.lineItems[0].totalAmount"]
    assert "100.00" in errors[0]["message"]


def test_sub_amount_and_total_must_add_up():
    errors = check_invoice(
        body(orderInformation__amountDetails__subAmount="200.00"), check_totals=True
    )
    assert "orderInformation.amountDetails.subAmount" in fields(errors)
    errors = check_invoice(
        body(orderInformation__amountDetails__totalAmount="230.00"), check_totals=True
    )
    assert fields(errors) == ["orderInformation.amountDetails.totalAmount"]


def test_pass_through_mode_skips_arithmetic_but_not_rules():
    assert (
        check_invoice(
            body(orderInformation__amountDetails__totalAmount="230.00"), check_totals=False
        )
        == []
    )
    errors = check_invoice(
        body(
            invoiceInformation__allowPartialPayments=False,
            orderInformation__amountDetails__minimumPartialAmount="5.00",
        ),
        check_totals=False,
    )
    assert fields(errors) == ["orderInformation.amountDetails.minimumPartialAmount"]


def test_minimum_partial_amount_not_above_total():
    errors = check_invoice(
        body(orderInformation__amountDetails__minimumPartialAmount="500.00"), check_totals=True
    )
    assert fields(errors) == ["orderInformation.amountDetails.minimumPartialAmount"]


def test_currency_decimals():
    errors = check_invoice(body(orderInformation__amountDetails__currency="JPY"), check_totals=True)
    assert "orderInformation.amountDetails.totalAmount" in fields(errors)
    assert "0 decimals" in errors[0]["message"]


def test_send_by_email_needs_an_address():
    errors = check_invoice(
        body(invoiceInformation__sendImmediately=True, customerInformation__email=None),
        check_totals=True,
    )
    assert fields(errors) == ["customerInformation.email"]


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"invoiceInformation__dueDate": "31/12/2026"}, "dueDate"),
        ({"customerInformation__email": "not-an-email"}, "email"),
        ({"orderInformation__amountDetails__totalAmount": 227.0}, "totalAmount"),
        ({"orderInformation__amountDetails__currency": "usd"}, "currency"),
        ({"orderInformation__lineItems__0__quantity": 0}, "quantity"),
        ({"orderInformation__lineItems__0__quantity": "2"}, "quantity"),
        ({"invoiceInformation__description": "x" * 2001}, "description"),
        ({"invoiceInformation__unknownField": "x"}, "unknownField"),
    ],
)
def test_schema_refuses_bad_fields(patch, field):
    with pytest.raises(ValidationError) as info:
        body(**patch)
    assert any(field in ".".join(map(str, e["loc"])) for e in info.value.errors())


def test_at_most_30_line_items():
    items = [{"productName": "x", "quantity": 1, "unitPrice": "1.00"}] * 31
    with pytest.raises(ValidationError):
        body(orderInformation__lineItems=items)


def test_upstream_body_keeps_cybersource_names_and_adds_solution_id():
    data = upstream_body(body(invoiceInformation__deliveryMode="Email"), solution_id="SOL123")
    assert data["invoiceInformation"]["deliveryMode"] == "email"
    assert data["invoiceInformation"]["dueDate"] == "2026-12-31"
    assert data["clientReferenceInformation"]["partner"]["solutionId"] == "SOL123"
    assert data["orderInformation"]["lineItems"][0]["unitPrice"] == "50.00"
    caller_set = upstream_body(
        InvoiceCreate.model_validate(
            {**BASE, "clientReferenceInformation": {"partner": {"solutionId": "MINE"}}}
        ),
        solution_id="SOL123",
    )
    assert caller_set["clientReferenceInformation"]["partner"]["solutionId"] == "MINE"

"""Local validation of invoice bodies: types and limits (schemas), refusals and Cybersource's totals
rule (rules). Issue 9 changed the rules: totals follow Cybersource's arithmetic (total = subAmount -
discount, truncated), JSON numbers, quantity strings, productSKU and explicit nulls are accepted."""

from __future__ import annotations

import copy
from decimal import Decimal

import pytest
from pydantic import ValidationError

from app.invoices.rules import check_invoice, totals_warnings, upstream_body
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
            # Cybersource's rule: lines 210.00 + tax 17.00 + freight 10.00 = subAmount 237.00,
            # total = 237.00 - 10.00 discount.
            "totalAmount": "227.00",
            "currency": "USD",
            "subAmount": "237.00",
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
            target.pop(leaf, None)
        else:
            target[leaf] = value
    return InvoiceCreate.model_validate(data)


def fields(errors):
    return [e["field"] for e in errors]


def test_consistent_invoice_passes():
    assert check_invoice(body()) == []
    assert totals_warnings(body()) == []


def test_a_total_that_breaks_cybersources_rule_is_a_warning():
    warnings = totals_warnings(body(orderInformation__amountDetails__totalAmount="230.00"))
    assert fields(warnings) == ["orderInformation.amountDetails.totalAmount"]
    assert warnings[0]["code"] == "totals_inconsistent"
    assert "227.00" in warnings[0]["message"]
    # Not a refusal: check_invoice has nothing against it.
    assert check_invoice(body(orderInformation__amountDetails__totalAmount="230.00")) == []


def test_tax_and_freight_are_inside_sub_amount_not_added_again():
    # The old rule (subtotal - discount + tax + freight) would want 254.00 here.
    assert totals_warnings(body()) == []
    assert totals_warnings(body(orderInformation__amountDetails__totalAmount="254.00"))


def test_line_totals_are_not_recomputed():
    # The spec's own line: 20 x 12.05 less 13.04 "is" 247.86; Cybersource accepts it.
    patched = body(orderInformation__lineItems__0__totalAmount="247.86")
    assert totals_warnings(patched) == []


def test_a_percent_discount_is_truncated_not_rounded():
    def with_total(total):
        return body(
            orderInformation__amountDetails__subAmount="9.99",
            orderInformation__amountDetails__discountAmount=None,
            orderInformation__amountDetails__discountPercent="15",
            orderInformation__amountDetails__minimumPartialAmount=None,
            orderInformation__amountDetails__totalAmount=total,
        )

    # 15% of 9.99 = 1.4985: truncated 1.49 (rounded it would be 1.50).
    assert totals_warnings(with_total("8.50")) == []
    assert totals_warnings(with_total("8.49"))


def test_without_sub_amount_the_line_totals_plus_tax_and_freight_count():
    patched = body(orderInformation__amountDetails__subAmount=None)
    assert totals_warnings(patched) == []
    off = body(
        orderInformation__amountDetails__subAmount=None,
        orderInformation__amountDetails__totalAmount="228.00",
    )
    assert fields(totals_warnings(off)) == ["orderInformation.amountDetails.totalAmount"]


def test_nothing_to_check_without_sub_amount_or_line_totals():
    patched = body(
        orderInformation__amountDetails__subAmount=None,
        orderInformation__lineItems__0__totalAmount=None,
        orderInformation__amountDetails__totalAmount="1.00",
        orderInformation__amountDetails__minimumPartialAmount=None,
    )
    assert totals_warnings(patched) == []


def test_minimum_partial_amount_rules():
    errors = check_invoice(
        body(
            invoiceInformation__allowPartialPayments=False,
            orderInformation__amountDetails__minimumPartialAmount="5.00",
        )
    )
    assert fields(errors) == ["orderInformation.amountDetails.minimumPartialAmount"]
    errors = check_invoice(body(orderInformation__amountDetails__minimumPartialAmount="500.00"))
    assert fields(errors) == ["orderInformation.amountDetails.minimumPartialAmount"]


def test_currency_decimals_come_from_iso_4217():
    errors = check_invoice(body(orderInformation__amountDetails__currency="JPY"))
    assert "orderInformation.amountDetails.totalAmount" in fields(errors)
    assert "0 decimals" in errors[0]["message"] and "truncate it to 227" in errors[0]["message"]
    # ISO gives HUF two decimals (a locale may print none); KWD has three.
    assert check_invoice(body(orderInformation__amountDetails__currency="HUF")) == []
    kwd = body(orderInformation__amountDetails__currency="KWD", orderInformation__lineItems=None)
    assert check_invoice(kwd) == []


@pytest.mark.parametrize("code", ["XXX", "ABC", "XTS", "XAU"])
def test_codes_that_are_no_currency_are_refused(code):
    with pytest.raises(ValidationError) as info:
        body(orderInformation__amountDetails__currency=code)
    assert "ISO 4217" in str(info.value)


def test_send_by_email_needs_an_address():
    errors = check_invoice(
        body(invoiceInformation__sendImmediately=True, customerInformation__email=None)
    )
    assert fields(errors) == ["customerInformation.email"]


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"invoiceInformation__dueDate": "31/12/2026"}, "dueDate"),
        ({"invoiceInformation__dueDate": "\uff12\uff10\uff12\uff16-12-31"}, "dueDate"),
        ({"customerInformation__email": "not-an-email"}, "email"),
        ({"orderInformation__amountDetails__totalAmount": 227.0}, "totalAmount"),  # a float
        ({"orderInformation__amountDetails__totalAmount": True}, "totalAmount"),
        ({"orderInformation__amountDetails__totalAmount": "\u0662\u0662\u0667.00"}, "totalAmount"),
        ({"orderInformation__amountDetails__totalAmount": "\uff12\uff12\uff17.00"}, "totalAmount"),
        ({"orderInformation__amountDetails__totalAmount": Decimal("-1")}, "totalAmount"),
        ({"orderInformation__amountDetails__currency": "usd"}, "currency"),
        ({"orderInformation__lineItems__0__quantity": 0}, "quantity"),
        ({"orderInformation__lineItems__0__quantity": "\u0662"}, "quantity"),
        ({"orderInformation__lineItems__0__quantity": "2.5"}, "quantity"),
        ({"invoiceInformation__description": "x" * 2001}, "description"),
        ({"invoiceInformation__unknownField": "x"}, "unknownField"),
        ({"invoiceInformation__deliveryMode": "fax"}, "deliveryMode"),
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


def test_cybersources_spellings_are_accepted_and_sent_canonically():
    data = copy.deepcopy(BASE)
    data["customerInformation"].update(firstName="Tanya", lastName="Lee")
    data["invoiceInformation"].update(deliveryMode="Email", sendImmediately=None)
    data["orderInformation"]["amountDetails"]["totalAmount"] = Decimal("227.00")
    data["orderInformation"]["amountDetails"]["subAmount"] = 237
    data["orderInformation"]["lineItems"][0] = {
        "productSKU": "P653727383",
        "productName": "Hours",
        "quantity": "2",
        "unitPrice": Decimal("50.00"),
        "discountAmount": None,
        "taxAmount": None,
        "totalAmount": "100.00",
    }
    wire = upstream_body(InvoiceCreate.model_validate(data), solution_id="SOL123")
    amounts = wire["orderInformation"]["amountDetails"]
    assert amounts["totalAmount"] == "227.00" and amounts["subAmount"] == "237"
    assert wire["orderInformation"]["lineItems"][0] == {
        "productSku": "P653727383",
        "productName": "Hours",
        "quantity": 2,
        "unitPrice": "50.00",
        "totalAmount": "100.00",
    }
    assert wire["customerInformation"]["firstName"] == "Tanya"
    assert wire["invoiceInformation"]["deliveryMode"] == "email"
    assert wire["invoiceInformation"]["sendImmediately"] is False  # null: the spec's default
    assert wire["clientReferenceInformation"]["partner"]["solutionId"] == "SOL123"


def test_only_what_the_caller_set_is_sent():
    wire = upstream_body(body())
    assert "deliveryMode" not in wire["invoiceInformation"]
    assert "processingInformation" not in wire

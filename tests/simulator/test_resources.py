"""List paging and filters, validation limits and quirks, invoice settings, merchant-defined
fields."""

from __future__ import annotations

import base64
import copy
import json
from typing import Any

import pytest

from tests.simulator.helpers import RawClient, load_sample, schema_errors

INVOICES = "/invoicing/v2/invoices"


def body(**info: Any) -> dict[str, Any]:
    return {
        "customerInformation": {"name": "Pat", "email": "pat@example.com"},
        "invoiceInformation": {"description": "x", "dueDate": "2026-12-31", **info},
        "orderInformation": {"amountDetails": {"totalAmount": "10.00", "currency": "USD"}},
    }


def problems(reply: Any) -> set[tuple[str, str]]:
    data = reply.json()
    assert (
        reply.status == 400
        and data["status"] == "BADREQUEST"
        and data["reason"] == "VALIDATION_ERROR"
    )
    assert data["message"] == "Field validation errors."
    return {(d["field"], d["reason"]) for d in data["details"]}


# --- list -----------------------------------------------------------------------------------------


async def test_list_pages_newest_first_with_links_and_filter(raw: RawClient) -> None:
    ids = [
        (
            await raw.call("POST", INVOICES, body(sendImmediately=i % 2 == 0, deliveryMode="none"))
        ).json()["id"]
        for i in range(5)
    ]
    page = await raw.call("GET", f"{INVOICES}?offset=1&limit=2")
    data = page.json()
    assert page.status == 200 and schema_errors("getAllInvoices", 200, data) == []
    assert data["totalInvoices"] == 5 and [i["id"] for i in data["invoices"]] == [ids[3], ids[2]]
    assert data["_links"]["next"]["href"] == "/v2/invoices/?offset=3&limit=2"
    assert data["_links"]["previous"]["href"] == "/v2/invoices/?offset=0&limit=2"
    created = (await raw.call("GET", f"{INVOICES}?offset=0&limit=10&status=created")).json()
    assert created["totalInvoices"] == 3 and {i["status"] for i in created["invoices"]} == {
        "CREATED"
    }
    assert created["_links"]["self"]["href"] == "/v2/invoices/?offset=0&limit=10&status=created"


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("", {("offset", "MISSING_FIELD"), ("limit", "MISSING_FIELD")}),
        ("?offset=0", {("limit", "MISSING_FIELD")}),
        ("?offset=0&limit=1001", {("limit", "INVALID_DATA")}),
        ("?offset=0&limit=0", {("limit", "INVALID_DATA")}),
        ("?offset=-1&limit=5", {("offset", "INVALID_DATA")}),
        ("?offset=0&limit=5&status=PENDING", {("status", "INVALID_DATA")}),
        ("?offset=0&limit=5&status=OPEN", {("status", "INVALID_DATA")}),
    ],
)
async def test_list_parameters_are_checked(
    raw: RawClient, query: str, expected: set[tuple[str, str]]
) -> None:
    reply = await raw.call("GET", INVOICES + query)
    assert problems(reply) == expected
    assert schema_errors("getAllInvoices", 400, reply.json()) == []


async def test_list_answers_404_when_nothing_matches(raw: RawClient) -> None:
    reply = await raw.call("GET", f"{INVOICES}?offset=0&limit=1000")
    assert reply.status == 404 and reply.json()["status"] == "NOTFOUND"
    assert schema_errors("getAllInvoices", 404, reply.json()) == []
    await raw.call("POST", INVOICES, body())
    assert (await raw.call("GET", f"{INVOICES}?offset=0&limit=5&status=PAID")).status == 404
    assert (await raw.call("GET", f"{INVOICES}?offset=1&limit=5")).status == 404


# --- validation -----------------------------------------------------------------------------------


def _with(path: str, value: Any) -> dict[str, Any]:
    data = body()
    data["orderInformation"]["lineItems"] = [{"productName": "a", "unitPrice": "1.00"}]
    node: Any = data
    keys = path.split(".")
    for key in keys[:-1]:
        node = node[int(key)] if key.isdigit() else node.setdefault(key, {})
    if value is _DELETE:
        del node[keys[-1]]
    else:
        node[keys[-1]] = value
    return data


_DELETE = object()


@pytest.mark.parametrize(
    ("path", "value", "field", "reason"),
    [
        ("invoiceInformation", _DELETE, "invoiceInformation", "MISSING_FIELD"),
        (
            "orderInformation.amountDetails",
            _DELETE,
            "orderInformation.amountDetails",
            "MISSING_FIELD",
        ),
        (
            "orderInformation.amountDetails.currency",
            _DELETE,
            "orderInformation.amountDetails.currency",
            "MISSING_FIELD",
        ),
        (
            "orderInformation.amountDetails.totalAmount",
            _DELETE,
            "orderInformation.amountDetails.totalAmount",
            "MISSING_FIELD",
        ),
        ("invoiceInformation.dueDate", _DELETE, "invoiceInformation.dueDate", "MISSING_FIELD"),
        ("invoiceInformation.dueDate", "31/12/2026", "invoiceInformation.dueDate", "INVALID_DATA"),
        ("invoiceInformation.dueDate", "2026-02-30", "invoiceInformation.dueDate", "INVALID_DATA"),
        (
            "invoiceInformation.expirationDate",
            "2026-1-1",
            "invoiceInformation.expirationDate",
            "INVALID_DATA",
        ),
        (
            "invoiceInformation.deliveryMode",
            "fax",
            "invoiceInformation.deliveryMode",
            "INVALID_DATA",
        ),
        (
            "invoiceInformation.description",
            "d" * 2001,
            "invoiceInformation.description",
            "INVALID_DATA",
        ),
        (
            "invoiceInformation.invoiceNumber",
            "x" * 27,
            "invoiceInformation.invoiceNumber",
            "INVALID_DATA",
        ),
        (
            "invoiceInformation.invoiceNumber",
            "a/b",
            "invoiceInformation.invoiceNumber",
            "INVALID_DATA",
        ),
        (
            "orderInformation.amountDetails.currency",
            "US",
            "orderInformation.amountDetails.currency",
            "INVALID_DATA",
        ),
        (
            "orderInformation.amountDetails.totalAmount",
            "ten",
            "orderInformation.amountDetails.totalAmount",
            "INVALID_DATA",
        ),
        (
            "orderInformation.amountDetails.totalAmount",
            "1" * 20,
            "orderInformation.amountDetails.totalAmount",
            "INVALID_DATA",
        ),
        (
            "customerInformation.email",
            "not-an-address",
            "customerInformation.email",
            "INVALID_DATA",
        ),
        ("customerInformation.name", "n" * 101, "customerInformation.name", "INVALID_DATA"),
        (
            "customerInformation.company",
            {"name": "c" * 61},
            "customerInformation.company.name",
            "INVALID_DATA",
        ),
        (
            "clientReferenceInformation",
            {"partner": {"developerId": "123456789"}},
            "clientReferenceInformation.partner.developerId",
            "INVALID_DATA",
        ),
        (
            "orderInformation.lineItems.0.quantity",
            0,
            "orderInformation.lineItems[0].quantity",
            "INVALID_DATA",
        ),
        (
            "orderInformation.lineItems.0.quantity",
            1_000_000_000,
            "orderInformation.lineItems[0].quantity",
            "INVALID_DATA",
        ),
        (
            "orderInformation.lineItems.0.quantity",
            "many",
            "orderInformation.lineItems[0].quantity",
            "INVALID_DATA",
        ),
        (
            "orderInformation.lineItems.0.productName",
            "p" * 256,
            "orderInformation.lineItems[0].productName",
            "INVALID_DATA",
        ),
        (
            "orderInformation.lineItems.0.unitPrice",
            "1" * 16,
            "orderInformation.lineItems[0].unitPrice",
            "INVALID_DATA",
        ),
        (
            "orderInformation.lineItems.0.discountPercent",
            "1234567",
            "orderInformation.lineItems[0].discountPercent",
            "INVALID_DATA",
        ),
        (
            "processingInformation",
            {"requestPhone": "maybe"},
            "processingInformation.requestPhone",
            "INVALID_DATA",
        ),
    ],
)
async def test_field_limits(raw: RawClient, path: str, value: Any, field: str, reason: str) -> None:
    reply = await raw.call("POST", INVOICES, _with(path, value))
    assert (field, reason) in problems(reply)
    assert schema_errors("createInvoice", 400, reply.json()) == []


async def test_at_most_30_line_items(raw: RawClient) -> None:
    data = body()
    data["orderInformation"]["lineItems"] = [{"productName": f"item {i}"} for i in range(30)]
    assert (await raw.call("POST", INVOICES, data)).status == 201
    data["orderInformation"]["lineItems"].append({"productName": "one too many"})
    assert ("orderInformation.lineItems", "INVALID_DATA") in problems(
        await raw.call("POST", INVOICES, data)
    )


async def test_real_traffic_quirks_are_accepted(raw: RawClient) -> None:
    data = body(deliveryMode="Email")
    del data["invoiceInformation"]["description"]  # the guide's create without description succeeds
    data["customerInformation"]["firstName"] = "Pat"  # unknown field
    data["somethingNew"] = {"a": 1}
    data["orderInformation"]["amountDetails"]["totalAmount"] = 293.5  # a JSON number
    data["orderInformation"]["lineItems"] = [
        {
            "productSKU": "SKU-1",
            "productName": "a",
            "quantity": "20",
            "unitPrice": 12.05,
            "taxAmount": None,
        },
        {
            "productSku": "SKU-2",
            "productName": "b",
            "unitPrice": "5.25",
            "totalAmount": "999.99",
        },  # no total check
    ]
    reply = await raw.call("POST", INVOICES, data)
    assert reply.status == 201, reply.json()
    created = reply.json()
    items = created["orderInformation"]["lineItems"]
    assert items[0] == {
        "productSku": "SKU-1",
        "productName": "a",
        "quantity": 20,
        "unitPrice": "12.05",
    }
    assert items[1]["quantity"] == 1
    assert created["orderInformation"]["amountDetails"]["totalAmount"] == "293.5"
    assert created["customerInformation"]["firstName"] == "Pat"
    assert created["invoiceInformation"]["deliveryMode"] == "Email"


async def test_garbage_bodies_are_400(raw: RawClient) -> None:
    assert problems(await raw.call("POST", INVOICES, raw=b"{not json")) == {
        ("body", "INVALID_DATA")
    }
    assert problems(await raw.call("POST", INVOICES, raw=b"[1, 2]")) == {("body", "INVALID_DATA")}
    encrypted = await raw.call("POST", INVOICES, {"encryptedRequest": "eyJ..."})
    assert problems(encrypted) == {("encryptedRequest", "INVALID_DATA")}


# --- invoice settings -----------------------------------------------------------------------------


async def test_settings_defaults_update_and_product_types(raw: RawClient) -> None:
    first = await raw.call("GET", "/invoicing/v2/invoiceSettings")
    assert first.status == 200 and schema_errors("getInvoiceSettings", 200, first.json()) == []
    sample = load_sample("spec.update-invoice-settings.request.json")
    updated = await raw.call("PUT", "/invoicing/v2/invoiceSettings", sample["body"])
    info = updated.json()["invoiceSettingsInformation"]
    assert updated.status == 200 and info["merchantDisplayName"] == "Custom Merchant Display Name"
    assert info["merchantLogo"].startswith("data:image/jpeg;base64,/9j/")
    assert info["payerAuthentication3DSVersion"] is True
    again = (await raw.call("GET", "/invoicing/v2/invoiceSettings?productType=INVOICING")).json()
    assert again["invoiceSettingsInformation"] == info
    other = (await raw.call("GET", "/invoicing/v2/invoiceSettings?productType=PAYBYLINK")).json()
    assert (
        other["invoiceSettingsInformation"]["merchantDisplayName"] != "Custom Merchant Display Name"
    )
    assert problems(await raw.call("GET", "/invoicing/v2/invoiceSettings?productType=OTHER")) == {
        ("productType", "INVALID_DATA")
    }


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("headerStyle", {"fontColor": "red"}, "VALIDATION_ERROR"),
        ("deliveryLanguage", "xx-XX", "VALIDATION_ERROR"),
        ("payerAuthenticationInInvoicing", "always", "VALIDATION_ERROR"),
        ("customLabels", [{"key": "nope", "value": "x"}], "VALIDATION_ERROR"),
        ("merchantLogo", base64.b64encode(b"plain text, not an image").decode(), "INVALID_IMAGE"),
        ("merchantLogo", "***", "INVALID_IMAGE"),
        (
            "merchantLogo",
            base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"0" * 1_000_001).decode(),
            "INVALID_IMAGE",
        ),
    ],
)
async def test_settings_are_validated(raw: RawClient, field: str, value: Any, reason: str) -> None:
    reply = await raw.call(
        "PUT", "/invoicing/v2/invoiceSettings", {"invoiceSettingsInformation": {field: value}}
    )
    assert reply.status == 400 and reply.json()["reason"] == reason
    assert schema_errors("updateInvoiceSettings", 400, reply.json()) == []


# --- merchant-defined fields ----------------------------------------------------------------------

MDF = "/invoicing/v2/Invoice/merchantDefinedFields"


async def test_merchant_defined_fields_crud(raw: RawClient) -> None:
    definition = load_sample("spec.create-merchant-defined-field.request.json")["body"]
    assert (await raw.call("GET", MDF)).json() == []
    created = await raw.call("POST", MDF, definition)
    assert (
        created.status == 201
        and schema_errors("createMerchantDefinedFieldDefinition", 201, created.json()) == []
    )
    [field] = created.json()
    assert field["customerVisible"] is True and field["referenceType"] == "Invoice"
    clash = await raw.call("POST", MDF, definition)
    assert clash.status == 409 and clash.json()["status"] == 409
    assert schema_errors("createMerchantDefinedFieldDefinition", 409, clash.json()) == []
    changed = copy.deepcopy(definition) | {"label": "Mug"}
    put = await raw.call("PUT", f"{MDF}/{field['id']}", changed)
    assert put.status == 200 and put.json()[0]["label"] == "Mug"
    assert schema_errors("putMerchantDefinedFieldsDefinitions", 200, put.json()) == []
    assert (await raw.call("PUT", f"{MDF}/999999", changed)).status == 409
    listed = await raw.call("GET", MDF)
    assert schema_errors("getMerchantDefinedFieldsDefinitions", 200, listed.json()) == []
    # An invoice that names the definition gets it joined in, as in the spec's create example.
    invoice = body()
    invoice["merchantDefinedFieldValues"] = [{"definitionId": field["id"], "value": "Blue"}]
    joined = (await raw.call("POST", INVOICES, invoice)).json()[
        "merchantDefinedFieldValuesWithDefinition"
    ]
    assert joined[0]["label"] == "Mug" and joined[0]["value"] == "Blue"
    deleted = await raw.call("DELETE", f"{MDF}/{field['id']}")
    assert deleted.status == 204 and deleted.body == b""
    assert (await raw.call("GET", MDF)).json() == []


async def test_merchant_defined_field_errors_use_their_own_envelope(raw: RawClient) -> None:
    bad = await raw.call(
        "POST",
        MDF,
        {
            "fieldType": "Select",
            "label": "Size",
            "readOnly": True,
            "merchantDefinedDataIndex": 3,
            "textMinLength": 1,
        },
    )
    data = bad.json()
    assert bad.status == 400 and data["status"] == 400 and "correlationId" in data
    assert {d["field"] for d in data["responseData"]["details"]} >= {
        "customerVisible readOnly",
        "textMinLength",
        "possibleValues",
    }
    assert (await raw.call("GET", "/invoicing/v2/Order/merchantDefinedFields")).status == 404
    for index in range(1, 21):
        reply = await raw.call(
            "POST",
            "/invoicing/v2/Donation/merchantDefinedFields",
            {"fieldType": "text", "label": f"f{index}", "merchantDefinedDataIndex": index},
        )
        assert reply.status == 201
    full = await raw.call(
        "POST",
        "/invoicing/v2/Donation/merchantDefinedFields",
        {"fieldType": "text", "label": "f21", "merchantDefinedDataIndex": 21},
    )
    assert (
        full.status == 412
        and schema_errors("createMerchantDefinedFieldDefinition", 412, full.json()) == []
    )


async def test_unknown_routes_and_methods(raw: RawClient) -> None:
    missing = await raw.send("GET", "/invoicing/v2/nothing/here")
    assert missing.status == 404 and json.loads(missing.body)["status"] == "NOTFOUND"
    wrong = await raw.call("DELETE", f"{INVOICES}/1")
    assert wrong.status == 405

"""Every invoicing sample in tests/fixtures/cybersource/samples/ goes through the models.

Requests: the body goes through its request model and comes out (Cybersource names, unset fields
dropped) with the same meaning, compared after normalising the known quirks: productSKU ->
productSku, nulls dropped, quantity as int, amounts as Decimal, deliveryMode lowercase,
"true"/"false" as booleans. It is also sent through the client to a local server, which checks the
signature over the bytes it received.
Responses: the body parses into its response model (error bodies into CybersourceErrorBody), every
field lands in a declared attribute (nothing left in `extra`), and it dumps back to the same
meaning.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from pydantic import BaseModel

from app.cybersource.client import ACTION_BODY, CybersourceClient
from app.cybersource.models import (
    CybersourceErrorBody,
    CybersourceModel,
    InvoiceCreateRequest,
    InvoiceListResponse,
    InvoiceResponse,
    InvoiceSettingsRequest,
    InvoiceSettingsResponse,
    InvoiceUpdateRequest,
    MerchantDefinedFieldList,
    MerchantDefinedFieldRequest,
    OrderInformation,
    UpstreamResult,
)
from tests.unit.test_client_upstream import SAMPLES, FakeUpstream, profile

AMOUNT_KEYS = frozenset(
    {
        "totalAmount",
        "balanceAmount",
        "discountAmount",
        "discountPercent",
        "subAmount",
        "minimumPartialAmount",
        "amount",
        "rate",
        "taxRate",
        "unitPrice",
        "taxAmount",
    }
)
BOOLEAN_TEXT_KEYS = frozenset({"customerVisible", "readOnly"})

REQUEST_MODELS: dict[str, type[CybersourceModel]] = {
    "createInvoice": InvoiceCreateRequest,
    "updateInvoice": InvoiceUpdateRequest,
    "updateInvoiceSettings": InvoiceSettingsRequest,
    "createMerchantDefinedFieldDefinition": MerchantDefinedFieldRequest,
    "putMerchantDefinedFieldsDefinitions": MerchantDefinedFieldRequest,
}
ACTION_OPERATIONS = frozenset({"performSendAction", "performCancelAction", "performPublishAction"})
READ_OPERATIONS = frozenset(
    {"getInvoice", "getAllInvoices", "getInvoiceSettings", "getMerchantDefinedFieldsDefinitions"}
)
INVOICING_OPERATIONS = (
    frozenset(REQUEST_MODELS)
    | ACTION_OPERATIONS
    | READ_OPERATIONS
    | {"deleteMerchantDefinedFieldsDefinitions"}
)
NOT_INVOICING = {"sdk-sample.create-invoicing-webhook.request.json"}  # /notification-subscriptions

RESPONSE_MODELS: dict[str, type[UpstreamResult]] = {
    "createInvoice": InvoiceResponse,
    "getInvoice": InvoiceResponse,
    "updateInvoice": InvoiceResponse,
    "performSendAction": InvoiceResponse,
    "performCancelAction": InvoiceResponse,
    "performPublishAction": InvoiceResponse,
    "getAllInvoices": InvoiceListResponse,
    "getInvoiceSettings": InvoiceSettingsResponse,
    "updateInvoiceSettings": InvoiceSettingsResponse,
    "getMerchantDefinedFieldsDefinitions": MerchantDefinedFieldList,
    "createMerchantDefinedFieldDefinition": MerchantDefinedFieldList,
    "putMerchantDefinedFieldsDefinitions": MerchantDefinedFieldList,
}


def load(name: str) -> dict[str, Any]:
    return json.loads((SAMPLES / name).read_text(encoding="utf-8"))


def sample_names(kind: str) -> list[str]:
    return sorted(path.name for path in SAMPLES.glob(f"*.{kind}.json"))


REQUEST_SAMPLES = [name for name in sample_names("request") if name not in NOT_INVOICING]
RESPONSE_SAMPLES = sample_names("response")


def normalise(value: Any, key: str | None = None) -> Any:
    """The meaning of a body, whatever quirks it was spelled with."""
    if isinstance(value, dict):
        out = {}
        for name, item in value.items():
            if item is None:
                continue
            name = "productSku" if name == "productSKU" else name
            out[name] = normalise(item, name)
        return out
    if isinstance(value, list):
        return [normalise(item) for item in value]
    if key in AMOUNT_KEYS and not isinstance(value, bool):
        return Decimal(str(value))
    if key == "quantity":
        return int(value)
    if key == "deliveryMode" or (key == "status" and isinstance(value, str)):
        return value.lower()
    if key in BOOLEAN_TEXT_KEYS and isinstance(value, str):
        return {"true": True, "false": False}[value]
    return value


def extras(model: Any, path: str = "") -> list[str]:
    """Every field a model did not declare, anywhere in the tree (a misspelt alias would land
    here)."""
    found: list[str] = []
    if isinstance(model, BaseModel):
        found += [f"{path}.{name}" for name in (model.__pydantic_extra__ or {})]
        for name in type(model).model_fields:
            found += extras(getattr(model, name), f"{path}.{name}")
    elif isinstance(model, list):
        for index, item in enumerate(model):
            found += extras(item, f"{path}[{index}]")
    elif isinstance(model, dict):
        for name, item in model.items():
            found += extras(item, f"{path}.{name}")
    return found


def wire_types_ok(value: Any, key: str | None = None) -> None:
    """What the models write: amounts as decimal text, quantity as int, no nulls, no productSKU."""
    assert value is not None, key
    if isinstance(value, dict):
        assert "productSKU" not in value
        for name, item in value.items():
            wire_types_ok(item, name)
    elif isinstance(value, list):
        for item in value:
            wire_types_ok(item)
    elif key in AMOUNT_KEYS:
        assert isinstance(value, str) and "E" not in value.upper(), (key, value)
        Decimal(value)
    elif key == "quantity":
        assert type(value) is int


def test_every_sample_is_classified() -> None:
    operations = {name: load(name).get("operationId") for name in REQUEST_SAMPLES}
    assert set(operations.values()) <= INVOICING_OPERATIONS, operations
    assert {load(name)["operationId"] for name in NOT_INVOICING} == {"createWebhookSubscription"}
    for name in RESPONSE_SAMPLES:
        sample = load(name)
        assert sample["status"] >= 400 or sample["operationId"] in RESPONSE_MODELS, name
    assert len(REQUEST_SAMPLES) >= 20 and len(RESPONSE_SAMPLES) >= 15


@pytest.mark.parametrize("name", REQUEST_SAMPLES)
def test_request_sample_round_trips_with_the_same_meaning(name: str) -> None:
    sample = load(name)
    if "fragment" in sample:  # devguide line items: a piece of a create/update body
        order = OrderInformation.model_validate(sample["fragment"]["orderInformation"])
        assert normalise(order.to_cybersource()) == normalise(
            sample["fragment"]["orderInformation"]
        )
        wire_types_ok(json.loads(order.to_wire()))
        return
    operation = sample["operationId"]
    body = sample.get("body")
    if "wireBody" in sample:
        assert json.loads(sample["wireBody"]) == body
    if operation in ACTION_OPERATIONS:
        assert body == {} and json.loads(ACTION_BODY) == body
        return
    if operation in READ_OPERATIONS:
        assert not body
        return
    model = REQUEST_MODELS[operation].model_validate(body)
    wire = json.loads(model.to_wire())
    assert normalise(wire) == normalise(body)
    assert wire == model.to_cybersource()
    wire_types_ok(wire)
    assert extras(model) == [], extras(model)


@pytest.fixture(scope="module")
async def upstream():
    server = await FakeUpstream().start()
    yield server
    await server.close()


async def send(client: CybersourceClient, operation: str, sample: dict[str, Any]) -> None:
    body = sample.get("body")
    invoice_id = "INV-1001"
    match operation:
        case "createInvoice":
            await client.create_invoice(InvoiceCreateRequest.model_validate(body))
        case "updateInvoice":
            await client.update_invoice(invoice_id, InvoiceUpdateRequest.model_validate(body))
        case "updateInvoiceSettings":
            await client.update_invoice_settings(InvoiceSettingsRequest.model_validate(body))
        case "createMerchantDefinedFieldDefinition":
            await client.create_merchant_defined_field(
                "Invoice", MerchantDefinedFieldRequest.model_validate(body)
            )
        case "performSendAction":
            await client.send_invoice(invoice_id)
        case "performCancelAction":
            await client.cancel_invoice(invoice_id)
        case "performPublishAction":
            await client.publish_invoice(invoice_id)
        case "getInvoice":
            await client.get_invoice(invoice_id)
        case "getAllInvoices":
            await client.list_invoices(**sample["query"])
        case "getInvoiceSettings":
            await client.get_invoice_settings(**sample["query"])
        case _:
            raise AssertionError(operation)


@pytest.mark.parametrize("name", [n for n in REQUEST_SAMPLES if "fragment" not in load(n)])
async def test_request_sample_through_the_client(upstream: FakeUpstream, name: str) -> None:
    sample = load(name)
    async with CybersourceClient(profile(upstream.base_url)) as client:
        await send(client, sample["operationId"], sample)
    sent = upstream.last
    assert sent.auth_error is None
    assert sent.method == sample["method"]
    expected_path = sample["path"].replace("{id}", "INV-1001").replace("2675", "INV-1001")
    assert sent.path == expected_path
    assert dict(sent.query) == {key: str(value) for key, value in sample.get("query", {}).items()}
    if sample["method"] in {"POST", "PUT"}:
        assert normalise(sent.json) == normalise(sample["body"])
    else:
        assert sent.body == b""


@pytest.mark.parametrize("name", RESPONSE_SAMPLES)
def test_response_sample_parses(name: str) -> None:
    sample = load(name)
    body, status = sample["body"], sample["status"]
    if status >= 400:
        error = CybersourceErrorBody.model_validate(body)
        assert extras(error) == []
        assert error.effective_reason and error.effective_message
        assert normalise(error.to_cybersource()) == normalise(body)
        return
    model_type = RESPONSE_MODELS[sample["operationId"]]
    result = model_type.from_upstream(body, correlation_id="corr-1", http_status=status)
    assert result.raw is body and result.correlation_id == "corr-1" and result.http_status == status
    assert extras(result) == [], extras(result)
    dumped = result.to_cybersource()
    if isinstance(result, MerchantDefinedFieldList):
        dumped = dumped["definitions"]
    assert normalise(dumped) == normalise(body)


@pytest.mark.parametrize(
    "name",
    [
        n
        for n in RESPONSE_SAMPLES
        if load(n)["operationId"] in RESPONSE_MODELS
        and load(n)["status"] < 300
        and RESPONSE_MODELS[load(n)["operationId"]] is InvoiceResponse
    ],
)
def test_invoice_response_samples_are_typed(name: str) -> None:
    sample = load(name)
    body = sample["body"]
    invoice = InvoiceResponse.from_upstream(body, http_status=sample["status"])
    if sample["status"] == 202:
        assert invoice.accepted_without_email and invoice.status == "ACCEPTED"
        return
    assert invoice.id == body["id"] and invoice.status == body["status"].upper()
    info = invoice.invoice_information
    assert info is not None and info.delivery_mode in {"none", "email"}
    assert info.invoice_number == body["invoiceInformation"]["invoiceNumber"]
    assert str(info.due_date) == body["invoiceInformation"]["dueDate"]
    amounts = invoice.order_information.amount_details  # type: ignore[union-attr]
    assert amounts is not None
    assert isinstance(amounts.total_amount, Decimal)
    assert amounts.total_amount == Decimal(
        str(body["orderInformation"]["amountDetails"]["totalAmount"])
    )
    assert amounts.currency == "USD" and isinstance(amounts.balance_amount, Decimal)
    for item, raw in zip(
        invoice.order_information.line_items or [],  # type: ignore[union-attr]
        body["orderInformation"].get("lineItems", []),
        strict=True,
    ):
        assert type(item.quantity) is int and item.quantity == int(raw["quantity"])
        assert item.product_sku == raw["productSku"]
        assert isinstance(item.total_amount, Decimal)
    assert invoice.links is not None and invoice.links["self"].href is not None


def test_request_models_accept_the_quirks() -> None:
    body = {
        "invoiceInformation": {
            "dueDate": "2025-12-31",
            "deliveryMode": "Email",
            "sendImmediately": "true",
        },
        "orderInformation": {
            "amountDetails": {"totalAmount": 293.5, "currency": "USD"},
            "lineItems": [
                {
                    "productSKU": "S-1",
                    "quantity": "20",
                    "unitPrice": 12.05,
                    "taxRate": None,
                    "futureField": "kept",
                }
            ],
        },
        "somethingNew": {"x": 1},
    }
    request = InvoiceCreateRequest.model_validate(body)
    assert json.loads(request.to_wire()) == {
        "invoiceInformation": {
            "dueDate": "2025-12-31",
            "deliveryMode": "email",
            "sendImmediately": True,
        },
        "orderInformation": {
            "amountDetails": {"totalAmount": "293.5", "currency": "USD"},
            "lineItems": [
                {"productSku": "S-1", "quantity": 20, "unitPrice": "12.05", "futureField": "kept"}
            ],
        },
        "somethingNew": {"x": 1},
    }
    by_name = InvoiceCreateRequest(
        invoice_information={"due_date": "2025-12-31"},  # type: ignore[arg-type]
        order_information={
            "amount_details": {  # type: ignore[arg-type]
                "total_amount": Decimal("1E+2"),
                "currency": "USD",
            }
        },
    )
    assert by_name.to_cybersource() == {
        "invoiceInformation": {"dueDate": "2025-12-31"},
        "orderInformation": {"amountDetails": {"totalAmount": "100", "currency": "USD"}},
    }


@pytest.mark.parametrize(
    "body",
    [
        {"invoiceInformation": {}, "orderInformation": {"amountDetails": {"currency": "USD"}}},
        {"invoiceInformation": {}, "orderInformation": {}},
        {"orderInformation": {"amountDetails": {"totalAmount": "1", "currency": "USD"}}},
        {
            "invoiceInformation": {},
            "orderInformation": {"amountDetails": {"totalAmount": "NaN", "currency": "USD"}},
        },
        {
            "invoiceInformation": {},
            "orderInformation": {"amountDetails": {"totalAmount": "ten", "currency": "USD"}},
        },
    ],
)
def test_create_request_refuses_what_cannot_be_an_invoice(body: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        InvoiceCreateRequest.model_validate(body)


def test_update_request_refuses_an_invoice_number() -> None:
    with pytest.raises(ValueError):
        InvoiceUpdateRequest.model_validate(
            {
                "invoiceInformation": {"invoiceNumber": "A1"},
                "orderInformation": {"amountDetails": {"totalAmount": "1", "currency": "USD"}},
            }
        )


def test_response_models_tolerate_bodies_outside_the_spec() -> None:
    odd = {
        "id": "1",
        "status": "paid",
        "unknownTop": [1],
        "invoiceInformation": {
            "deliveryMode": "EMAIL",
            "dueDate": "07/11/2019",
            "paymentLink": None,
        },
        "orderInformation": {
            "amountDetails": {"totalAmount": 10, "balanceAmount": "", "currency": "EUR"},
            "lineItems": [{"productSku": None, "quantity": "3.0", "unitPrice": "1.50"}],
        },
        "invoiceHistory": [{"event": "payment", "transactionDetails": {"amount": 2.5}}],
    }
    invoice = InvoiceResponse.from_upstream(odd)
    assert invoice.status == "PAID"
    assert invoice.invoice_information.delivery_mode == "email"  # type: ignore[union-attr]
    assert invoice.invoice_information.due_date == "07/11/2019"  # type: ignore[union-attr]
    amounts = invoice.order_information.amount_details  # type: ignore[union-attr]
    assert (
        amounts.total_amount == Decimal(10)  # type: ignore[union-attr]
        and amounts.balance_amount is None  # type: ignore[union-attr]
    )
    assert invoice.order_information.line_items[0].quantity == 3  # type: ignore[union-attr,index]
    assert invoice.invoice_history[0].event == "PAYMENT"  # type: ignore[index]
    assert invoice.model_extra == {"unknownTop": [1]}
    single = MerchantDefinedFieldList.from_upstream({"id": 5, "label": "Cup", "fieldType": "Text"})
    assert [d.id for d in single.definitions] == [5]
    assert MerchantDefinedFieldList.from_upstream([]).definitions == []

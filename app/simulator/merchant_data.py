"""Invoice settings and merchant-defined field definitions (the two non-invoice resources of the
spec).

Settings: GET answers defaults until a PUT changes them; a PUT merges the fields it carries (the SDK
fills every boolean from model defaults anyway). The logo is checked like Cybersource describes it:
base64, at most 1 MB decoded, PNG/JPEG/GIF, else 400 INVALID_IMAGE.

Merchant-defined fields use a different error envelope: `{"correlationId", "status": <int>,
"responseData": {..., "status": <int>, "reason", "message", "details"}}` (the spec's example).
"""

from __future__ import annotations

import base64
import binascii
import copy
import re
import uuid
from datetime import datetime
from typing import Any

from app.simulator.state import MerchantBook
from app.simulator.validation import Checker, ValidationFailed
from app.simulator.views import submit_time

PRODUCT_TYPES = ("INVOICING", "PAYBYLINK")
REFERENCE_TYPES = ("Invoice", "Purchase", "Donation")
COLOUR_RE = re.compile(r"^#(?:[0-9a-fA-F]{3}){1,2}$")
LANGUAGES = frozenset(
    {"zh-CN", "zh-TW", "en-US", "fr-FR", "de-DE", "ja-JP", "pt-BR", "ru-RU", "es-419"}
)
PAYER_AUTH = frozenset({"enable", "update", "disable"})
LABEL_KEYS = frozenset(
    {
        "billTo",
        "invoiceNumber",
        "customerId",
        "companyName",
        "description",
        "shipping",
        "partialPayment",
        "discount",
        "tax",
    }
)
MAX_LOGO_BYTES = 1_000_000
# Not documented: how many definitions a reference type may hold before 412. Chosen, and documented.
MAX_DEFINITIONS_PER_TYPE = 20


class InvalidImage(Exception):
    """400 INVALID_IMAGE for the merchant logo."""


class FieldDefinitionProblem(Exception):
    """A merchant-defined-field refusal in that API's own envelope."""

    def __init__(
        self,
        http_status: int,
        reason: str,
        message: str,
        details: list[dict[str, str]] | None = None,
    ) -> None:
        super().__init__(message)
        self.http_status, self.reason, self.message, self.details = (
            http_status,
            reason,
            message,
            details,
        )

    def body(self, moment: datetime) -> dict[str, Any]:
        data: dict[str, Any] = {
            "submitTimeUtc": submit_time(moment),
            "status": self.http_status,
            "reason": self.reason,
            "message": self.message,
        }
        if self.details:
            data["details"] = self.details
        return {
            "correlationId": str(uuid.uuid4()),
            "status": self.http_status,
            "responseData": data,
        }


# --- invoice settings -----------------------------------------------------------------------------


def default_settings(merchant_id: str, display_name: str | None) -> dict[str, Any]:
    return {
        "invoiceSettingsInformation": {
            "merchantDisplayName": display_name or merchant_id,
            "customEmailMessage": "",
            "enableReminders": False,
            "headerStyle": {"fontColor": "#000000", "backgroundColor": "#FFFFFF"},
            "deliveryLanguage": "en-US",
            "defaultCurrencyCode": "USD",
            "payerAuthentication3DSVersion": False,
            "showVatNumber": False,
            "shipTo": False,
            "phoneNumber": False,
            "email": False,
            "enableMerchantEmailNotifications": False,
        },
        "merchantInformation": {
            "name": display_name or merchant_id,
            "phone": "415-555-0100",
            "addressDetails": {
                "address1": "1 Simulator Way",
                "city": "San Francisco",
                "state": "CA",
                "country": "US",
                "postalCode": "94105",
            },
        },
    }


def _logo_data_url(value: str) -> str:
    payload = value.split(",", 1)[1] if value.startswith("data:") else value
    try:
        raw = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidImage("merchantLogo is not valid base64") from exc
    if len(raw) > MAX_LOGO_BYTES:
        raise InvalidImage("merchantLogo is larger than 1 MB")
    if raw.startswith(b"\x89PNG\r\n\x1a\n"):
        mime = "image/png"
    elif raw.startswith(b"\xff\xd8\xff"):
        mime = "image/jpeg"
    elif raw[:6] in {b"GIF87a", b"GIF89a"}:
        mime = "image/gif"
    else:
        raise InvalidImage("merchantLogo must be a PNG, JPEG or GIF image")
    return value if value.startswith("data:") else f"data:{mime};base64,{payload}"


def validate_settings(body: Any) -> dict[str, Any]:
    """The `invoiceSettingsInformation` of a PUT, normalised; raises ValidationFailed or
    InvalidImage."""
    c = Checker()
    if not isinstance(body, dict):
        raise ValidationFailed([{"field": "body", "reason": "INVALID_DATA"}])
    holder = {k: v for k, v in body.items() if v is not None}
    info = c.obj(holder, "invoiceSettingsInformation", "invoiceSettingsInformation", required=True)
    c.raise_if_any()
    assert info is not None
    base = "invoiceSettingsInformation"
    c.text(info, "merchantLogo", f"{base}.merchantLogo", max_len=10_000_000)
    c.text(info, "merchantDisplayName", f"{base}.merchantDisplayName", max_len=100)
    c.text(info, "customEmailMessage", f"{base}.customEmailMessage", max_len=2000)
    for flag in (
        "enableReminders",
        "showVatNumber",
        "shipTo",
        "phoneNumber",
        "email",
        "enableMerchantEmailNotifications",
    ):
        c.boolean(info, flag, f"{base}.{flag}")
    if style := c.obj(info, "headerStyle", f"{base}.headerStyle"):
        for key in ("fontColor", "backgroundColor"):
            c.text(style, key, f"{base}.headerStyle.{key}", max_len=7, pattern=COLOUR_RE)
    language = c.text(info, "deliveryLanguage", f"{base}.deliveryLanguage", max_len=6)
    if language is not None and language not in LANGUAGES:
        c.fail(f"{base}.deliveryLanguage")
    c.text(
        info,
        "defaultCurrencyCode",
        f"{base}.defaultCurrencyCode",
        pattern=re.compile(r"^[A-Za-z]{3}$"),
    )
    payer_auth = c.text(
        info, "payerAuthenticationInInvoicing", f"{base}.payerAuthenticationInInvoicing", max_len=7
    )
    if payer_auth is not None and payer_auth not in PAYER_AUTH:
        c.fail(f"{base}.payerAuthenticationInInvoicing")
    c.text(info, "vatRegistrationNumber", f"{base}.vatRegistrationNumber", max_len=21)
    if urls := c.obj(info, "customRedirectUrls", f"{base}.customRedirectUrls"):
        for key in ("paymentAccepted", "paymentRejected", "paymentPending"):
            c.text(urls, key, f"{base}.customRedirectUrls.{key}", max_len=500)
    labels = info.get("customLabels")
    if labels is not None:
        if not isinstance(labels, list):
            c.fail(f"{base}.customLabels")
        else:
            for i, label in enumerate(labels):
                path = f"{base}.customLabels[{i}]"
                if not isinstance(label, dict) or label.get("key") not in LABEL_KEYS:
                    c.fail(f"{path}.key")
                    continue
                c.text(label, "value", f"{path}.value", max_len=25)
                for flag in ("hidden", "hiddenForInvoice", "hiddenForItem"):
                    c.boolean(label, flag, f"{path}.{flag}")
    c.raise_if_any()
    if "merchantLogo" in info:
        info["merchantLogo"] = _logo_data_url(info["merchantLogo"])
    return info


def read_settings(
    book: MerchantBook, product_type: str, display_name: str | None
) -> dict[str, Any]:
    """The stored settings (callers only read them: no copy on the hot GET path) or fresh
    defaults."""
    stored = book.settings.get(product_type)
    return stored if stored is not None else default_settings(book.merchant_id, display_name)


def write_settings(
    book: MerchantBook, product_type: str, display_name: str | None, update: dict[str, Any]
) -> dict[str, Any]:
    current = copy.deepcopy(read_settings(book, product_type, display_name))
    info = current["invoiceSettingsInformation"]
    payer_auth = update.pop("payerAuthenticationInInvoicing", None)
    if payer_auth is not None:
        # The GET model reports the switch as a boolean under another name.
        info["payerAuthentication3DSVersion"] = payer_auth != "disable"
    info.update(update)
    if "merchantDisplayName" in update:
        current["merchantInformation"]["name"] = update["merchantDisplayName"]
    book.settings[product_type] = current  # replaced, never mutated: readers may hold the old one
    return current


# --- merchant-defined fields ----------------------------------------------------------------------


def validate_definition(body: Any) -> dict[str, Any]:
    c = Checker()
    if not isinstance(body, dict):
        raise FieldDefinitionProblem(400, "VALIDATION_ERROR", "Invalid request body.")
    data = {k: v for k, v in body.items() if v is not None}
    field_type = c.text(data, "fieldType", "fieldType", required=True)
    c.text(data, "label", "label", max_len=100, required=True)
    for flag in ("customerVisible", "readOnly"):
        if c.boolean(data, flag, flag) is None:
            data[flag] = False
    c.integer(
        data, "merchantDefinedDataIndex", "merchantDefinedDataIndex", minimum=1, required=True
    )
    kind = (field_type or "").lower()
    if field_type is not None and kind not in {"text", "select"}:
        c.fail("fieldType")
    if kind == "select":
        if data["readOnly"] or not data["customerVisible"]:
            c.details.append(
                {
                    "field": "customerVisible readOnly",
                    "reason": (
                        "For 'Select' field type 'Read only' must be false and 'Customer Visible' "
                        "true"
                    ),
                }
            )
        for key in ("textMinLength", "textMaxLength", "textDefaultValue"):
            if key in data:
                c.details.append(
                    {"field": key, "reason": f"{key} is not allowed for field type Select"}
                )
        values = c.text(data, "possibleValues", "possibleValues", max_len=600)
        parts = [p.strip() for p in (values or "").split(",")]
        if values is None:
            c.details.append(
                {
                    "field": "possibleValues",
                    "reason": "Possible values cannot be empty for Select field type",
                }
            )
        elif len(parts) < 2:
            c.details.append(
                {
                    "field": "possibleValues",
                    "reason": "Possible values must contain at least two values",
                }
            )
        elif any(not p for p in parts):
            c.details.append(
                {"field": "possibleValues", "reason": "Possible value cannot be empty"}
            )
    elif kind == "text":
        low = c.integer(data, "textMinLength", "textMinLength", minimum=0)
        high = c.integer(data, "textMaxLength", "textMaxLength", minimum=1)
        data.setdefault("textMinLength", 0)
        data.setdefault("textMaxLength", 100)
        if low is not None and high is not None and low > high:
            c.fail("textMinLength")
        c.text(data, "textDefaultValue", "textDefaultValue", max_len=100)
        if "possibleValues" in data:
            c.details.append(
                {
                    "field": "possibleValues",
                    "reason": "possibleValues is not allowed for field type Text",
                }
            )
    if c.details:
        raise FieldDefinitionProblem(400, "VALIDATION_ERROR", "Field validation errors.", c.details)
    return data


def _check_reference_type(reference_type: str, http_status: int) -> None:
    if reference_type not in REFERENCE_TYPES:
        raise FieldDefinitionProblem(
            http_status,
            "INVALID_REFERENCE_TYPE",
            f"Reference type must be one of {', '.join(REFERENCE_TYPES)}.",
        )


def list_definitions(book: MerchantBook, reference_type: str) -> list[dict[str, Any]]:
    _check_reference_type(reference_type, 404)
    return [dict(d) for d in book.field_definitions.get(reference_type, {}).values()]


def create_definition(
    book: MerchantBook, reference_type: str, data: dict[str, Any]
) -> list[dict[str, Any]]:
    _check_reference_type(reference_type, 400)
    definitions = book.field_definitions.setdefault(reference_type, {})
    if any(
        d["merchantDefinedDataIndex"] == data["merchantDefinedDataIndex"]
        for d in definitions.values()
    ):
        raise FieldDefinitionProblem(
            409,
            "MERCHANT_DEFINED_DATA_INDEX_ALREADY_ASSIGNED",
            "Merchant Defined Data Index is already assigned",
        )
    if len(definitions) >= MAX_DEFINITIONS_PER_TYPE:
        raise FieldDefinitionProblem(
            412, "LIMIT_EXCEEDED", f"Merchant has exceeded limit for type {reference_type}"
        )
    definition_id = book.next_definition_id
    book.next_definition_id += 1
    definitions[definition_id] = {
        "id": definition_id,
        **data,
        "merchantId": book.merchant_id,
        "referenceType": reference_type,
    }
    return list_definitions(book, reference_type)


def update_definition(
    book: MerchantBook, reference_type: str, definition_id: int, data: dict[str, Any]
) -> list[dict[str, Any]]:
    _check_reference_type(reference_type, 400)
    definitions = book.field_definitions.get(reference_type, {})
    if definition_id not in definitions:
        raise FieldDefinitionProblem(
            409,
            "MERCHANT_DEFINED_FIELD_ALREADY_UPDATED",
            "Merchant defined field already updated or does not exist",
        )
    if any(
        d["merchantDefinedDataIndex"] == data["merchantDefinedDataIndex"] and i != definition_id
        for i, d in definitions.items()
    ):
        raise FieldDefinitionProblem(
            409,
            "MERCHANT_DEFINED_DATA_INDEX_ALREADY_ASSIGNED",
            "Merchant Defined Data Index is already assigned",
        )
    definitions[definition_id] = {
        "id": definition_id,
        **data,
        "merchantId": book.merchant_id,
        "referenceType": reference_type,
    }
    return list_definitions(book, reference_type)


def delete_definition(book: MerchantBook, reference_type: str, definition_id: int) -> None:
    # The spec documents only 204; deleting an unknown id is answered the same way (idempotent).
    _check_reference_type(reference_type, 400)
    book.field_definitions.get(reference_type, {}).pop(definition_id, None)


def definitions_by_id(book: MerchantBook) -> dict[int, dict[str, Any]]:
    """Invoice definitions, for `merchantDefinedFieldValuesWithDefinition` in invoice responses."""
    return book.field_definitions.get("Invoice", {})

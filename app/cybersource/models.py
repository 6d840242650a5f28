"""Typed request and response bodies of the Cybersource Invoicing v2 API.

Attributes are snake_case; every field is aliased to Cybersource's camelCase name, so a model reads
the wire shape (`InvoiceResponse.model_validate(json_body)`) and writes it back
(`model.to_cybersource()` / `model.to_wire()`, which use the aliases and drop unset fields).

The models are lenient on input because real traffic and the official samples disagree with the spec
(README "Limits and formats"):

- amounts, rates and percentages arrive as JSON strings *or* numbers; they become `Decimal` and are
  written back as plain decimal strings (never exponent notation, never floats);
- `deliveryMode` comes as `none`, `None`, `Email`...: it is normalised to lowercase;
- the Python SDK sends `productSKU` instead of `productSku`; both are read, `productSku` is written;
- SDK line items carry explicit `null`s; `quantity` may be `"20"`;
- `customerVisible`/`readOnly` may be `"true"`/`"false"` strings;
- unknown fields are kept (`extra="allow"`) and written back unchanged.

Every response model a client method returns derives from `UpstreamResult`: besides its fields it
carries `.raw` (the parsed JSON body exactly as received), `.correlation_id` (the
`v-c-correlation-id` response header) and `.http_status`.
"""

from __future__ import annotations

import math
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, Self

from pydantic import (
    AliasChoices,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    PrivateAttr,
    model_validator,
)
from pydantic.alias_generators import to_camel

# --- lenient scalar types ------------------------------------------------------------------------


def _to_decimal(value: Any) -> Any:
    if value is None or isinstance(value, Decimal):
        result = value
    elif isinstance(value, bool):
        raise ValueError("a boolean is not an amount")
    elif isinstance(value, int):
        result = Decimal(value)
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("an amount must be finite")
        result = Decimal(repr(value))  # shortest round-trip text: 2623.64, not 2623.63999...
    elif isinstance(value, str):
        text = value.strip()
        if not text:
            return None
        try:
            result = Decimal(text)
        except InvalidOperation as exc:
            raise ValueError(f"not a decimal amount: {value!r}") from exc
    else:
        return value  # let pydantic report the type error
    if result is not None and not result.is_finite():
        raise ValueError("an amount must be finite")
    return result


def decimal_text(value: Decimal | None) -> str | None:
    """`Decimal` as Cybersource wants it: plain notation, scale kept (`Decimal("5.0")` ->
    `"5.0"`)."""
    return None if value is None else format(value, "f")


def _to_int(value: Any) -> Any:
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return None
        try:
            number = Decimal(text)
        except InvalidOperation:
            return value
        if number.is_finite() and number == number.to_integral_value():
            return int(number)
    return value


def _lower(value: Any) -> Any:
    return value.strip().lower() if isinstance(value, str) else value


def _upper(value: Any) -> Any:
    return value.strip().upper() if isinstance(value, str) else value


def _blank_to_none(value: Any) -> Any:
    return None if isinstance(value, str) and not value.strip() else value


Amount = Annotated[
    Decimal | None,
    BeforeValidator(_to_decimal),
    PlainSerializer(decimal_text, return_type=str | None, when_used="json"),
]
"""An amount, rate or percentage: JSON string or number in, `Decimal` inside, decimal string out."""

Quantity = Annotated[int | None, BeforeValidator(_to_int)]
LowerText = Annotated[str | None, BeforeValidator(_lower)]
UpperText = Annotated[str | None, BeforeValidator(_upper)]
# `YYYY-MM-DD` becomes a `date`; anything else stays the text that came (responses are not ours to
# refuse).
DateOrText = Annotated[
    date | str | None, Field(union_mode="left_to_right"), BeforeValidator(_blank_to_none)
]


class CybersourceModel(BaseModel):
    """Base of every body: camelCase aliases, snake_case attributes, unknown fields kept."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="allow")

    def to_cybersource(self) -> dict[str, Any]:
        """The wire shape as a JSON-ready dict: Cybersource names, unset fields dropped, amounts as
        text."""
        data: dict[str, Any] = self.model_dump(mode="json", by_alias=True, exclude_none=True)
        return data

    def to_wire(self) -> bytes:
        """The exact UTF-8 JSON bytes to send (compact separators)."""
        return self.__pydantic_serializer__.to_json(self, by_alias=True, exclude_none=True)


# --- shared building blocks ----------------------------------------------------------------------


class Link(CybersourceModel):
    href: str | None = None
    method: str | None = None


Links = dict[str, Link]


class Partner(CybersourceModel):
    developer_id: str | None = None
    solution_id: str | None = None


class ClientReferenceInformation(CybersourceModel):
    partner: Partner | None = None


class Company(CybersourceModel):
    name: str | None = None


class CustomerInformation(CybersourceModel):
    name: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    email: str | None = None
    merchant_customer_id: str | None = None
    company: Company | None = None


class ProcessingInformation(CybersourceModel):
    request_phone: bool | None = None
    request_shipping: bool | None = None


class CustomLabel(CybersourceModel):
    key: str | None = None
    value: str | None = None
    hidden: bool | None = None
    hidden_for_invoice: bool | None = None
    hidden_for_item: bool | None = None


class InvoiceInformation(CybersourceModel):
    invoice_number: str | None = None
    description: str | None = None
    due_date: DateOrText = None
    expiration_date: DateOrText = None
    send_immediately: bool | None = None
    allow_partial_payments: bool | None = None
    # Lowercase whatever came in: the spec says `None`/`Email`, samples send `none`/`email`.
    delivery_mode: LowerText = None
    # Response only.
    payment_link: str | None = None
    custom_labels: list[CustomLabel] | None = None


class TaxDetails(CybersourceModel):
    type: str | None = None
    amount: Amount = None
    rate: Amount = None


class Freight(CybersourceModel):
    amount: Amount = None
    taxable: bool | None = None
    tax_rate: Amount = None


class AmountDetails(CybersourceModel):
    total_amount: Amount = None
    currency: str | None = None
    discount_amount: Amount = None
    discount_percent: Amount = None
    sub_amount: Amount = None
    minimum_partial_amount: Amount = None
    tax_details: TaxDetails | None = None
    freight: Freight | None = None
    # Response only.
    balance_amount: Amount = None


class LineItem(CybersourceModel):
    # The Python SDK renames productSku to productSKU on the wire; read both, write productSku.
    product_sku: str | None = Field(
        default=None,
        validation_alias=AliasChoices("productSku", "productSKU", "product_sku"),
        serialization_alias="productSku",
    )
    product_name: str | None = None
    quantity: Quantity = None
    unit_price: Amount = None
    discount_amount: Amount = None
    discount_percent: Amount = None
    tax_amount: Amount = None
    tax_rate: Amount = None
    total_amount: Amount = None


class OrderInformation(CybersourceModel):
    amount_details: AmountDetails | None = None
    line_items: list[LineItem] | None = None
    # The spec's update-invoice 200 example nests this here instead of at the top level.
    merchant_defined_field_values_with_definition: list[MerchantDefinedField] | None = None


class MerchantDefinedFieldValue(CybersourceModel):
    definition_id: int | None = None
    value: str | None = None


class TransactionDetails(CybersourceModel):
    transaction_id: str | None = None
    amount: Amount = None


class InvoiceHistoryEntry(CybersourceModel):
    event: UpperText = None
    date: str | None = None
    transaction_details: TransactionDetails | None = None


class MerchantDefinedField(CybersourceModel):
    """A merchant-defined field definition (also each `merchantDefinedFieldValuesWithDefinition`
    entry)."""

    id: int | None = None
    field_type: str | None = None
    label: str | None = None
    customer_visible: bool | None = None
    read_only: bool | None = None
    text_min_length: int | None = None
    text_max_length: int | None = None
    text_default_value: str | None = None
    possible_values: str | None = None
    merchant_id: str | None = None
    reference_type: str | None = None
    merchant_defined_data_index: int | None = None
    # Only in `merchantDefinedFieldValuesWithDefinition`.
    definition_id: int | None = None
    value: str | None = None
    position: int | None = None


class HeaderStyle(CybersourceModel):
    font_color: str | None = None
    background_color: str | None = None


class CustomRedirectUrls(CybersourceModel):
    payment_accepted: str | None = None
    payment_rejected: str | None = None
    payment_pending: str | None = None


class InvoiceSettingsInformation(CybersourceModel):
    merchant_logo: str | None = None
    merchant_display_name: str | None = None
    custom_email_message: str | None = None
    enable_reminders: bool | None = None
    header_style: HeaderStyle | None = None
    delivery_language: str | None = None
    default_currency_code: str | None = None
    # Request: enable | update | disable.  Response: a boolean under another name.
    payer_authentication_in_invoicing: str | None = None
    payer_authentication_3ds_version: bool | None = Field(
        default=None, alias="payerAuthentication3DSVersion"
    )
    show_vat_number: bool | None = None
    vat_registration_number: str | None = None
    ship_to: bool | None = None
    phone_number: bool | None = None
    email: bool | None = None
    enable_merchant_email_notifications: bool | None = None
    custom_labels: list[CustomLabel] | None = None
    custom_redirect_urls: CustomRedirectUrls | None = None


class AddressDetails(CybersourceModel):
    address1: str | None = None
    address2: str | None = None
    city: str | None = None
    state: str | None = None
    country: str | None = None
    postal_code: str | None = None


class MerchantInformation(CybersourceModel):
    name: str | None = None
    phone: str | None = None
    address_details: AddressDetails | None = None


# --- requests ------------------------------------------------------------------------------------


class _InvoiceRequestBase(CybersourceModel):
    customer_information: CustomerInformation | None = None
    processing_information: ProcessingInformation | None = None
    invoice_information: InvoiceInformation
    order_information: OrderInformation
    merchant_defined_field_values: list[MerchantDefinedFieldValue] | None = None

    @model_validator(mode="after")
    def _amount_required(self) -> Self:
        details = self.order_information.amount_details
        if details is None or details.total_amount is None or not details.currency:
            raise ValueError("orderInformation.amountDetails needs totalAmount and currency")
        return self


class InvoiceCreateRequest(_InvoiceRequestBase):
    """Body of `POST /invoicing/v2/invoices`."""

    client_reference_information: ClientReferenceInformation | None = None


class InvoiceUpdateRequest(_InvoiceRequestBase):
    """Body of `PUT /invoicing/v2/invoices/{id}`: a full replacement; the invoice number cannot
    change."""

    @model_validator(mode="after")
    def _no_invoice_number(self) -> Self:
        if self.invoice_information.invoice_number is not None:
            raise ValueError(
                "an update cannot carry invoiceInformation.invoiceNumber (it never changes)"
            )
        return self


class InvoiceSettingsRequest(CybersourceModel):
    """Body of `PUT /invoicing/v2/invoiceSettings`."""

    invoice_settings_information: InvoiceSettingsInformation | None = None


class MerchantDefinedFieldRequest(CybersourceModel):
    """Body of `POST .../merchantDefinedFields` and `PUT .../merchantDefinedFields/{id}`."""

    field_type: str
    label: str
    merchant_defined_data_index: int
    customer_visible: bool | None = None
    read_only: bool | None = None
    text_min_length: int | None = None
    text_max_length: int | None = None
    text_default_value: str | None = None
    possible_values: str | None = None


# --- responses -----------------------------------------------------------------------------------


class UpstreamResult(CybersourceModel):
    """Mixin of every response a client method returns: the model plus what came with it."""

    _raw: Any = PrivateAttr(default=None)
    _correlation_id: str | None = PrivateAttr(default=None)
    _http_status: int | None = PrivateAttr(default=None)

    @property
    def raw(self) -> Any:
        """The parsed JSON body exactly as received (dict or list; None for a 204)."""
        return self._raw

    @property
    def correlation_id(self) -> str | None:
        """The `v-c-correlation-id` response header: quote it to Cybersource support."""
        return self._correlation_id

    @property
    def http_status(self) -> int | None:
        return self._http_status

    @classmethod
    def from_upstream(
        cls, body: Any, *, correlation_id: str | None = None, http_status: int | None = None
    ) -> Self:
        result = cls.model_validate(body if body is not None else {})
        private = result.__pydantic_private__
        if (
            private is None
        ):  # pragma: no cover - pydantic always initialises it for models with PrivateAttr
            private = {}
            object.__setattr__(result, "__pydantic_private__", private)
        # Straight into the private dict: three BaseModel.__setattr__ calls cost more than the rest
        # of this.
        private["_raw"] = body
        private["_correlation_id"] = correlation_id
        private["_http_status"] = http_status
        return result


class Invoice(CybersourceModel):
    """An invoice as Cybersource returns it (also each entry of a list page)."""

    links: Links | None = Field(default=None, alias="_links")
    id: str | None = None
    submit_time_utc: str | None = None
    status: UpperText = None
    created_date: str | None = None
    client_reference_information: ClientReferenceInformation | None = None
    customer_information: CustomerInformation | None = None
    processing_information: ProcessingInformation | None = None
    invoice_information: InvoiceInformation | None = None
    order_information: OrderInformation | None = None
    invoice_history: list[InvoiceHistoryEntry] | None = None
    merchant_defined_field_values: list[MerchantDefinedFieldValue] | None = None
    merchant_defined_field_values_with_definition: list[MerchantDefinedField] | None = None
    # A 202 on create carries only these: the invoice exists but its e-mail failed.
    reason: str | None = None
    message: str | None = None

    @property
    def invoice_number(self) -> str | None:
        """The number that addresses the invoice in follow-on calls."""
        info = self.invoice_information
        return info.invoice_number if info is not None and info.invoice_number else self.id


class InvoiceResponse(Invoice, UpstreamResult):
    """Result of create, get, update, send, cancel and publish."""

    @property
    def accepted_without_email(self) -> bool:
        """202 ACCEPTED on create: stored, but the e-mail failed; send it separately."""
        return self.http_status == 202 or (self.status or "") == "ACCEPTED"


class InvoiceListResponse(UpstreamResult):
    """Result of `list_invoices`: one page."""

    links: Links | None = Field(default=None, alias="_links")
    submit_time_utc: str | None = None
    total_invoices: int | None = None
    invoices: list[Invoice] = Field(default_factory=list)


class InvoiceSettingsResponse(UpstreamResult):
    """Result of `get_invoice_settings` and `update_invoice_settings`."""

    submit_time_utc: str | None = None
    invoice_settings_information: InvoiceSettingsInformation | None = None
    merchant_information: MerchantInformation | None = None


class MerchantDefinedFieldList(UpstreamResult):
    """Result of the merchant-defined-field list, create and update calls (a JSON array
    upstream)."""

    definitions: list[MerchantDefinedField] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _wrap_array(cls, value: Any) -> Any:
        if isinstance(value, list):
            return {"definitions": value}
        if isinstance(value, dict) and "definitions" not in value and value:
            return {"definitions": [value]}  # a single definition instead of the documented array
        return value


class EmptyResponse(UpstreamResult):
    """Result of `delete_merchant_defined_field` (204, no body)."""


# --- errors --------------------------------------------------------------------------------------


class ErrorDetail(CybersourceModel):
    field: str | None = None
    reason: str | None = None


class CybersourceErrorBody(CybersourceModel):
    """Any error body: the invoicing shape, the merchant-defined-field envelope (`responseData`),
    the `errorInformation` wrapper some 5xx carry, and the gateway's
    401 `{"response": {"rmsg": ...}}`."""

    submit_time_utc: str | None = None
    status: str | int | None = None
    reason: str | None = None
    message: str | None = None
    details: list[ErrorDetail] | None = None
    id: str | None = None
    correlation_id: str | None = None
    response_data: CybersourceErrorBody | None = None
    error_information: CybersourceErrorBody | None = None
    response: dict[str, Any] | None = None

    def _layers(self) -> list[CybersourceErrorBody]:
        return [
            layer
            for layer in (self.response_data, self.error_information, self)
            if layer is not None
        ]

    @property
    def effective_reason(self) -> str | None:
        return next((layer.reason for layer in self._layers() if layer.reason), None)

    @property
    def effective_message(self) -> str | None:
        for layer in self._layers():
            if layer.message:
                return layer.message
        rmsg = (self.response or {}).get("rmsg")
        return str(rmsg) if rmsg else None

    @property
    def effective_details(self) -> list[ErrorDetail]:
        return next((layer.details for layer in self._layers() if layer.details), [])


__all__ = [
    "AddressDetails",
    "Amount",
    "AmountDetails",
    "ClientReferenceInformation",
    "Company",
    "CustomLabel",
    "CustomRedirectUrls",
    "CustomerInformation",
    "CybersourceErrorBody",
    "CybersourceModel",
    "EmptyResponse",
    "ErrorDetail",
    "Freight",
    "HeaderStyle",
    "Invoice",
    "InvoiceCreateRequest",
    "InvoiceHistoryEntry",
    "InvoiceInformation",
    "InvoiceListResponse",
    "InvoiceResponse",
    "InvoiceSettingsInformation",
    "InvoiceSettingsRequest",
    "InvoiceSettingsResponse",
    "InvoiceUpdateRequest",
    "LineItem",
    "Link",
    "MerchantDefinedField",
    "MerchantDefinedFieldList",
    "MerchantDefinedFieldRequest",
    "MerchantDefinedFieldValue",
    "MerchantInformation",
    "OrderInformation",
    "Partner",
    "ProcessingInformation",
    "TaxDetails",
    "TransactionDetails",
    "UpstreamResult",
    "decimal_text",
]

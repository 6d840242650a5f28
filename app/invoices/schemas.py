"""The v1 contract: request and response bodies of the public API.

Invoice bodies keep Cybersource's field names and nesting, so anyone who has read Cybersource's docs
can use the facade, and they accept what Cybersource's own samples send (README "Validation"):
amounts as decimal strings or JSON numbers (read without a float: `app/http/json_body.py`),
`quantity` as an integer or a string of digits, `productSku` or the Python SDK's `productSKU`,
`firstName`/`lastName`, and explicit `null`s for anything optional. Unknown fields and wrong types
are refused with the field named. What goes to Cybersource is the canonical form: amounts as decimal
strings, quantity as an integer, `productSku`.
"""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import (
    AliasChoices,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    WithJsonSchema,
    field_validator,
)

from app.http.schemas import UpstreamError
from app.invoices.currencies import currency_exponent

# ASCII digits only: `\d` would also take Arabic-Indic or full-width digits.
AMOUNT_PATTERN = r"^[0-9]{1,15}(\.[0-9]{1,4})?$"
RATE_PATTERN = r"^[0-9]{1,3}(\.[0-9]{1,4})?$"
EMAIL_PATTERN = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"
DATE_PATTERN = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"
QUANTITY_TEXT = re.compile(r"^[0-9]{1,9}$")
# Cybersource's invoice `id` is at most 26 characters; these characters need no escaping in signed
# paths.
INVOICE_NUMBER_MAX_LENGTH = 26
INVOICE_NUMBER_PATTERN = rf"^[A-Za-z0-9_-]{{1,{INVOICE_NUMBER_MAX_LENGTH}}}$"


def _number_text(value: Any) -> Any:
    """A JSON number (int or Decimal, never a float) as its plain decimal text; text stays text."""
    if isinstance(value, bool):
        raise ValueError("must be a decimal string or number, not a boolean")
    if isinstance(value, float):
        raise ValueError("must be a decimal string or number read without a float")
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, int):
        return str(value)
    return value


def _quantity(value: Any) -> Any:
    if value is None:
        return 1  # Cybersource's default
    if isinstance(value, str) and QUANTITY_TEXT.match(value):
        return int(value)  # the spec's own examples send "20"
    if isinstance(value, Decimal) and value == value.to_integral_value():
        return int(value)
    return value


def _none_to(default: Any) -> Any:
    return lambda value: default if value is None else value


def _amount_schema(pattern: str, max_length: int) -> WithJsonSchema:
    return WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "pattern": pattern, "maxLength": max_length},
                {"type": "number", "minimum": 0},
            ]
        }
    )


# Amounts and rates: decimal strings or JSON numbers, limited to the lengths of Cybersource's spec.
_AmountText = Annotated[str, BeforeValidator(_number_text)]
Amount13 = Annotated[
    _AmountText,
    StringConstraints(pattern=AMOUNT_PATTERN, max_length=13),
    _amount_schema(AMOUNT_PATTERN, 13),
]
Amount15 = Annotated[
    _AmountText,
    StringConstraints(pattern=AMOUNT_PATTERN, max_length=15),
    _amount_schema(AMOUNT_PATTERN, 15),
]
Amount19 = Annotated[
    _AmountText,
    StringConstraints(pattern=AMOUNT_PATTERN, max_length=19),
    _amount_schema(AMOUNT_PATTERN, 19),
]
Amount25 = Annotated[
    _AmountText,
    StringConstraints(pattern=AMOUNT_PATTERN, max_length=25),
    _amount_schema(AMOUNT_PATTERN, 25),
]
Rate6 = Annotated[
    _AmountText,
    StringConstraints(pattern=RATE_PATTERN, max_length=6),
    _amount_schema(RATE_PATTERN, 6),
]
Rate7 = Annotated[
    _AmountText,
    StringConstraints(pattern=RATE_PATTERN, max_length=7),
    _amount_schema(RATE_PATTERN, 7),
]
Quantity = Annotated[
    int,
    BeforeValidator(_quantity),
    Field(ge=1, le=999_999_999),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "integer", "minimum": 1, "maximum": 999_999_999},
                {"type": "string", "pattern": QUANTITY_TEXT.pattern},
                {"type": "null"},
            ]
        }
    ),
]
FalseIfNull = Annotated[
    bool,
    BeforeValidator(_none_to(False)),
    WithJsonSchema({"type": ["boolean", "null"], "default": False}),
]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    @field_validator("*", mode="after")
    @classmethod
    def no_nul_characters(cls, value: Any) -> Any:
        # PostgreSQL can store no NUL character in text or JSONB; Cybersource's fields are printable
        # text.
        if isinstance(value, str) and "\x00" in value:
            raise ValueError("must not contain a NUL character (\\u0000)")
        return value


class Partner(Strict):
    developerId: str | None = Field(default=None, max_length=8)
    solutionId: str | None = Field(default=None, max_length=8)


class ClientReferenceInformation(Strict):
    partner: Partner | None = None


class Company(Strict):
    name: str | None = Field(default=None, max_length=60)


class CustomerInformation(Strict):
    name: str | None = Field(default=None, max_length=100)
    # Not in the spec's schema, but in its examples (and echoed in its responses).
    firstName: str | None = Field(default=None, max_length=100)
    lastName: str | None = Field(default=None, max_length=100)
    email: str | None = Field(default=None, max_length=255, pattern=EMAIL_PATTERN)
    merchantCustomerId: str | None = Field(default=None, max_length=100)
    company: Company | None = None


class ProcessingInformation(Strict):
    requestPhone: FalseIfNull = False
    requestShipping: FalseIfNull = False


def _date(value: Any) -> Any:
    # Dates travel as "YYYY-MM-DD" text of ASCII digits (strict mode refuses a str otherwise).
    if isinstance(value, str):
        if not re.match(DATE_PATTERN, value):
            raise ValueError("must be a date as YYYY-MM-DD")
        try:
            return dt.date.fromisoformat(value)
        except ValueError:
            raise ValueError("must be a date as YYYY-MM-DD") from None
    return value


DateText = Annotated[
    dt.date,
    BeforeValidator(_date),
    WithJsonSchema({"type": "string", "format": "date", "pattern": DATE_PATTERN}),
]


def _delivery_mode(value: Any) -> Any:
    if value is None:
        return "email"
    if isinstance(value, str) and value.lower() in ("email", "none"):
        return value.lower()  # the spec says None/Email, every sample sends none/email
    raise ValueError("must be email or none (any case)")


DeliveryMode = Annotated[
    str,
    BeforeValidator(_delivery_mode),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "pattern": "^(?i:email|none)$"},
                {"type": "null"},
            ],
            "default": "email",
        }
    ),
]


class InvoiceInformationBase(Strict):
    # The spec lists description as required; the developer guide creates an invoice without one.
    description: str | None = Field(default=None, max_length=2000)
    dueDate: DateText
    expirationDate: DateText | None = None
    sendImmediately: FalseIfNull = False
    allowPartialPayments: FalseIfNull = False
    deliveryMode: DeliveryMode = "email"


class InvoiceInformationCreate(InvoiceInformationBase):
    invoiceNumber: str | None = Field(default=None, pattern=INVOICE_NUMBER_PATTERN)


class TaxDetails(Strict):
    type: str | None = Field(default=None, max_length=100)
    amount: Amount13 | None = None
    rate: Rate6 | None = None


class Freight(Strict):
    amount: Amount13 | None = None
    taxable: bool | None = None
    taxRate: Rate7 | None = None


def _currency(value: Any) -> Any:
    if isinstance(value, str) and currency_exponent(value) is None:
        raise ValueError("is not an ISO 4217 currency with minor units (e.g. USD, EUR, JPY)")
    return value


class AmountDetails(Strict):
    totalAmount: Amount19
    currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$")]
    discountAmount: Amount15 | None = None
    discountPercent: Rate7 | None = None
    subAmount: Amount25 | None = None
    minimumPartialAmount: Amount19 | None = None
    taxDetails: TaxDetails | None = None
    freight: Freight | None = None

    @field_validator("currency", mode="after")
    @classmethod
    def _known_currency(cls, value: str) -> str:
        return str(_currency(value))


class LineItem(Strict):
    # The Python SDK writes productSKU on the wire; both are read, productSku is sent.
    productSku: str | None = Field(
        default=None,
        max_length=255,
        validation_alias=AliasChoices("productSku", "productSKU"),
    )
    productName: str | None = Field(default=None, max_length=255)
    quantity: Quantity = 1
    unitPrice: Amount15 | None = None
    discountAmount: Amount13 | None = None
    discountPercent: Rate6 | None = None
    taxAmount: Amount15 | None = None
    taxRate: Rate7 | None = None
    totalAmount: Amount13 | None = None


class OrderInformation(Strict):
    amountDetails: AmountDetails
    lineItems: list[LineItem] | None = Field(default=None, max_length=30)


class MerchantDefinedFieldValue(Strict):
    definitionId: int = Field(ge=1, le=2**63 - 1)
    value: str = Field(max_length=600)


# The caller's own reference and metadata (README "References and metadata"): stored by the facade,
# never sent to Cybersource. Metadata keys go into a query (`metadata[key]=value`), hence their
# alphabet.
EXTERNAL_REFERENCE_MAX_LENGTH = 255
METADATA_MAX_KEYS = 20
METADATA_KEY_PATTERN = r"^[A-Za-z0-9_.:-]{1,40}$"
METADATA_VALUE_MAX_LENGTH = 500
ExternalReference = Annotated[
    str,
    StringConstraints(
        min_length=1, max_length=EXTERNAL_REFERENCE_MAX_LENGTH, pattern=r"^[^\x00-\x1f\x7f]+$"
    ),
]
MetadataKey = Annotated[str, StringConstraints(pattern=METADATA_KEY_PATTERN)]
MetadataValue = Annotated[str, StringConstraints(max_length=METADATA_VALUE_MAX_LENGTH)]
Metadata = Annotated[dict[MetadataKey, MetadataValue], Field(max_length=METADATA_MAX_KEYS)]


class InvoiceUpdate(Strict):
    """Full replacement of an invoice's content (everything but its number)."""

    customerInformation: CustomerInformation | None = None
    processingInformation: ProcessingInformation | None = None
    invoiceInformation: InvoiceInformationBase
    orderInformation: OrderInformation
    merchantDefinedFieldValues: list[MerchantDefinedFieldValue] | None = None
    externalReference: ExternalReference | None = Field(
        default=None,
        description="Your own reference (an order number): unique among your invoices of this "
        "merchant profile, found with `GET /v1/invoices?externalReference=`. Never sent to "
        "Cybersource. On update, leaving it out keeps it; null removes it.",
    )
    metadata: Metadata | None = Field(
        default=None,
        description=f"Your own string map: at most {METADATA_MAX_KEYS} keys of 1-40 characters "
        f"`[A-Za-z0-9_.:-]`, values of at most {METADATA_VALUE_MAX_LENGTH} characters; filter with "
        "`GET /v1/invoices?metadata[key]=value`. Never sent to Cybersource. On update, leaving it "
        "out keeps it; an object replaces it; null or {} removes it.",
    )


class InvoiceCreate(InvoiceUpdate):
    clientReferenceInformation: ClientReferenceInformation | None = None
    invoiceInformation: InvoiceInformationCreate


# --- responses ------------------------------------------------------------------------------------


class InvoiceSync(BaseModel):
    state: Literal["pending", "in_sync", "failed", "unknown"]
    pendingOperations: list[str] = []
    lastError: UpstreamError | None = None


# The docstring is the OpenAPI description (openapi/openapi.json): a backslash-newline keeps its
# text unchanged where a line would be longer than 100 characters.
class InvoiceWarning(BaseModel):
    """Something the facade noticed but did not refuse (INVOICE_TOTALS=warn): README \
"Validation"."""

    code: str
    field: str
    message: str


# The docstring is the OpenAPI description (openapi/openapi.json): a backslash-newline keeps its
# text unchanged where a line would be longer than 100 characters.
class EmailFailure(BaseModel):
    """Cybersource created the invoice but could not e-mail it (its 202 ACCEPTED); a send \
retries it."""

    message: str
    failedAt: dt.datetime


class InvoiceOut(BaseModel):
    invoiceNumber: str
    merchantProfile: str
    owner: str
    status: str | None = Field(
        description="Cybersource's status; null until Cybersource has the invoice"
    )
    paymentLink: str | None = None
    balanceAmount: str | None = None
    sync: InvoiceSync
    customerInformation: dict[str, Any] | None = None
    processingInformation: dict[str, Any] | None = None
    invoiceInformation: dict[str, Any]
    orderInformation: dict[str, Any]
    merchantDefinedFieldValues: list[dict[str, Any]] | None = None
    merchantDefinedFieldValuesWithDefinition: list[dict[str, Any]] | None = Field(
        default=None,
        description="the values with their definitions (label, field type, ...), as Cybersource's "
        "last answer joined them",
    )
    externalReference: str | None = Field(default=None, description="your own reference")
    metadata: dict[str, str] = Field(default_factory=dict, description="your own string map")
    invoiceHistory: list[dict[str, Any]] | None = None
    warnings: list[InvoiceWarning] = Field(
        default_factory=list,
        description="totals that do not follow Cybersource's rule, and similar",
    )
    emailFailure: EmailFailure | None = Field(
        default=None,
        description="set while Cybersource could not e-mail the invoice; send it again",
    )
    supportedActions: list[str] | None = Field(
        default=None,
        description=(
            "the actions Cybersource says the invoice allows now (its `_supportedActions`), "
            "when its answers carry them"
        ),
    )
    createdAt: dt.datetime
    updatedAt: dt.datetime


class InvoicePage(BaseModel):
    items: list[InvoiceOut]
    nextCursor: str | None = None

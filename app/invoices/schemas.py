"""The v1 contract: request and response bodies of the public API.

Invoice bodies keep Cybersource's field names and nesting, so anyone who has read Cybersource's docs can
use the facade. Requests are strict (unknown fields and wrong types are refused with the field named);
amounts are decimal strings, as in Cybersource's spec.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from app.http.schemas import UpstreamError

AMOUNT_PATTERN = r"^\d{1,15}(\.\d{1,4})?$"
RATE_PATTERN = r"^\d{1,3}(\.\d{1,4})?$"
EMAIL_PATTERN = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"
# Cybersource's invoice `id` is at most 26 characters; these characters need no escaping in signed paths.
INVOICE_NUMBER_MAX_LENGTH = 26
INVOICE_NUMBER_PATTERN = rf"^[A-Za-z0-9_-]{{1,{INVOICE_NUMBER_MAX_LENGTH}}}$"


# Amounts and rates are decimal strings, limited to the lengths of Cybersource's spec.
Amount13 = Annotated[str, StringConstraints(pattern=AMOUNT_PATTERN, max_length=13)]
Amount15 = Annotated[str, StringConstraints(pattern=AMOUNT_PATTERN, max_length=15)]
Amount19 = Annotated[str, StringConstraints(pattern=AMOUNT_PATTERN, max_length=19)]
Amount25 = Annotated[str, StringConstraints(pattern=AMOUNT_PATTERN, max_length=25)]
Rate6 = Annotated[str, StringConstraints(pattern=RATE_PATTERN, max_length=6)]
Rate7 = Annotated[str, StringConstraints(pattern=RATE_PATTERN, max_length=7)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    @field_validator("*", mode="after")
    @classmethod
    def no_nul_characters(cls, value: Any) -> Any:
        # PostgreSQL can store no NUL character in text or JSONB; Cybersource's fields are printable text.
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
    email: str | None = Field(default=None, max_length=255, pattern=EMAIL_PATTERN)
    merchantCustomerId: str | None = Field(default=None, max_length=100)
    company: Company | None = None


class ProcessingInformation(Strict):
    requestPhone: bool = False
    requestShipping: bool = False


class InvoiceInformationBase(Strict):
    description: str = Field(min_length=1, max_length=2000)
    dueDate: dt.date
    expirationDate: dt.date | None = None
    sendImmediately: bool = False
    allowPartialPayments: bool = False
    deliveryMode: Literal["email", "none", "Email", "None", "EMAIL", "NONE"] = "email"

    @field_validator("dueDate", "expirationDate", mode="before")
    @classmethod
    def _date_text(cls, value: Any) -> Any:
        # Dates travel as "YYYY-MM-DD" text (strict mode refuses a str otherwise).
        if isinstance(value, str):
            try:
                return dt.date.fromisoformat(value) if len(value) == 10 else value
            except ValueError:
                return value
        return value


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


class AmountDetails(Strict):
    totalAmount: Amount19
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    discountAmount: Amount15 | None = None
    discountPercent: Rate7 | None = None
    subAmount: Amount25 | None = None
    minimumPartialAmount: Amount19 | None = None
    taxDetails: TaxDetails | None = None
    freight: Freight | None = None


class LineItem(Strict):
    productSku: str | None = Field(default=None, max_length=255)
    productName: str | None = Field(default=None, max_length=255)
    quantity: int = Field(default=1, ge=1, le=999_999_999)
    unitPrice: Amount15
    discountAmount: Amount13 | None = None
    discountPercent: Rate6 | None = None
    taxAmount: Amount15 | None = None
    taxRate: Rate7 | None = None
    totalAmount: Amount13 | None = None


class OrderInformation(Strict):
    amountDetails: AmountDetails
    lineItems: list[LineItem] | None = Field(default=None, max_length=30)


class MerchantDefinedFieldValue(Strict):
    definitionId: int = Field(ge=1)
    value: str = Field(max_length=600)


class InvoiceUpdate(Strict):
    """Full replacement of an invoice's content (everything but its number)."""

    customerInformation: CustomerInformation | None = None
    processingInformation: ProcessingInformation | None = None
    invoiceInformation: InvoiceInformationBase
    orderInformation: OrderInformation
    merchantDefinedFieldValues: list[MerchantDefinedFieldValue] | None = None


class InvoiceCreate(InvoiceUpdate):
    clientReferenceInformation: ClientReferenceInformation | None = None
    invoiceInformation: InvoiceInformationCreate


# --- responses ------------------------------------------------------------------------------------


class InvoiceSync(BaseModel):
    state: Literal["pending", "in_sync", "failed", "unknown"]
    pendingOperations: list[str] = []
    lastError: UpstreamError | None = None


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
    invoiceHistory: list[dict[str, Any]] | None = None
    createdAt: dt.datetime
    updatedAt: dt.datetime


class InvoicePage(BaseModel):
    items: list[InvoiceOut]
    nextCursor: str | None = None

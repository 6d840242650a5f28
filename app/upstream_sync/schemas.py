"""Request and response bodies of adoption: `POST /v1/invoices/{invoiceNumber}/adopt`."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from app.invoices.schemas import ExternalReference, Metadata


class InvoiceAdopt(BaseModel):
    """Whose the adopted invoice becomes, and the caller's own fields for it (all optional)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    owner: str | None = Field(
        default=None,
        min_length=1,
        max_length=64,
        pattern=r"^[^\x00-\x1f\x7f]+$",
        description="the client the invoice belongs to (default: the adopting admin's client)",
    )
    externalReference: ExternalReference | None = None
    metadata: Metadata | None = None

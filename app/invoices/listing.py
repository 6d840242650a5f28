"""A list request (`GET /v1/invoices`) as the router parsed it, and its keyset cursors.

The default order (newest first) keeps its two-part cursor (created_at, id), so cursors handed out
before the other sorts existed still work; every other sort's cursor names the sort, the last row's
sort value and its id, and is refused (400) under another sort.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from app import errors
from app.invoices.repository import SORT_COLUMNS, InvoiceFilter, InvoiceRow, SortPosition
from app.kit.cursors import decode_sort_cursor, decode_time_and_id, encode_cursor

DEFAULT_SORT = "-createdAt"
SORTS = tuple(SORT_COLUMNS)


@dataclass(frozen=True, slots=True)
class InvoiceQuery:
    """A list request as the router parsed it (the owner filter is decided by the caller's
    scopes)."""

    profile: str
    status: str | None = None  # one status, or several separated by commas
    customer_email: str | None = None
    created_from: datetime | None = None
    created_to: datetime | None = None
    owner: str | None = None
    cursor: str | None = None
    limit: int = 50
    due_from: date | None = None
    due_to: date | None = None
    overdue: bool | None = None
    amount_from: Decimal | None = None
    amount_to: Decimal | None = None
    merchant_customer_id: str | None = None
    external_reference: str | None = None
    metadata: tuple[tuple[str, str], ...] = ()
    sort: str = DEFAULT_SORT
    today: date | None = (
        None  # what `overdue` counts from; today (UTC) unless a test says otherwise
    )


def _bad_cursor() -> errors.MalformedRequest:
    return errors.MalformedRequest("The cursor is not one this API handed out for this sort.")


def _position(sort: str, cursor: str) -> SortPosition:
    if sort == DEFAULT_SORT:
        created, row_id = decode_time_and_id(cursor)
        return SortPosition(created, row_id)
    named, text, row_id = decode_sort_cursor(cursor)
    if named != sort:
        raise _bad_cursor()
    column = SORT_COLUMNS[sort][0]
    value: Any
    try:
        if column == "created_at":
            value = datetime.fromisoformat(text)
            if value.tzinfo is None:
                raise _bad_cursor()
        elif column == "due_date":
            value = None if text == "" else date.fromisoformat(text)
        else:
            value = Decimal(text)
            if not value.is_finite():
                raise _bad_cursor()
    except (ValueError, InvalidOperation):
        raise _bad_cursor() from None
    return SortPosition(value, row_id)


def page_request(
    query: InvoiceQuery, *, owner: str | None
) -> tuple[InvoiceFilter, SortPosition | None]:
    """The repository's filter and the page's start for `query`, listed for `owner` (None: all)."""
    if query.sort not in SORT_COLUMNS:
        raise errors.MalformedRequest(f"sort must be one of {', '.join(SORTS)}.")
    statuses = tuple(part for part in (query.status or "").split(",") if part)
    after = None if query.cursor is None else _position(query.sort, query.cursor)
    filters = InvoiceFilter(
        owner=owner,
        statuses=statuses,
        customer_email=query.customer_email,
        created_from=query.created_from,
        created_to=query.created_to,
        merchant_profile=query.profile,
        due_from=query.due_from,
        due_to=query.due_to,
        overdue=query.overdue,
        today=query.today,
        amount_from=query.amount_from,
        amount_to=query.amount_to,
        merchant_customer_id=query.merchant_customer_id,
        external_reference=query.external_reference,
        metadata=query.metadata,
    )
    return filters, after


def next_cursor(sort: str, last: InvoiceRow) -> str:
    """The cursor of the page after the one that ends with `last`."""
    if sort == DEFAULT_SORT:
        return encode_cursor(last.created_at, last.id)
    column = SORT_COLUMNS[sort][0]
    value: Any = {"created_at": last.created_at, "due_date": last.due_date}.get(
        column, last.total_amount
    )
    if value is None:
        text = ""
    elif isinstance(value, datetime | date):
        text = value.isoformat()
    else:
        text = format(value, "f")
    return encode_cursor(sort, text, last.id)

"""The invoices table and its number allocator: every statement about invoice rows."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy.exc import IntegrityError

from app import errors
from app.kit.sql import BaseRepository, to_json

# The unique index that keeps a caller's externalReference to one invoice per merchant profile.
EXTERNAL_REFERENCE_INDEX = "uq_invoices_external_reference"


@dataclass(frozen=True, slots=True)
class InvoiceFields:
    """The columns derived from an invoice body, so lists and filters need no JSON digging."""

    currency: str
    total_amount: Decimal
    customer_email: str | None
    customer_name: str | None
    due_date: date | None
    content: dict[str, Any]
    merchant_customer_id: str | None = None
    # The caller's own (never sent to Cybersource).
    external_reference: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class InvoiceRow:
    id: int
    merchant_profile: str
    invoice_number: str
    owner: str
    status: str | None  # NULL until Cybersource created it
    sync_state: str
    last_error: dict[str, Any] | None
    payment_link: str | None
    currency: str
    balance_amount: Decimal | None
    content: dict[str, Any]
    upstream: dict[str, Any] | None
    created_at: datetime
    updated_at: datetime
    checked_at: datetime
    total_amount: Decimal
    due_date: date | None
    external_reference: str | None
    metadata: dict[str, str]


@dataclass(frozen=True, slots=True)
class InvoiceView(InvoiceRow):
    """An invoice with the ids of its unfinished commands (what a read answers with)."""

    pending_ids: list[str]


@dataclass(frozen=True, slots=True)
class InvoiceFilter:
    owner: str | None = None
    status: str | None = None
    customer_email: str | None = None  # any case
    created_from: datetime | None = None
    created_to: datetime | None = None
    merchant_profile: str | None = None
    # Receivables (README "Listing and receivables"); each is backed by an index of migration 0006.
    statuses: tuple[str, ...] = ()
    due_from: date | None = None
    due_to: date | None = None
    overdue: bool | None = None  # due before `today` and still open (or, False, not so)
    today: date | None = None
    amount_from: Decimal | None = None
    amount_to: Decimal | None = None
    merchant_customer_id: str | None = None
    external_reference: str | None = None
    metadata: tuple[tuple[str, str], ...] = ()


# The sorts a list can have: column, descending. Only due_date can be NULL (an adopted invoice
# without one): such invoices come last in ascending order and first in descending order, as
# PostgreSQL sorts.
SORT_COLUMNS: dict[str, tuple[str, bool]] = {
    "-createdAt": ("created_at", True),
    "createdAt": ("created_at", False),
    "dueDate": ("due_date", False),
    "-dueDate": ("due_date", True),
    "amount": ("total_amount", False),
    "-amount": ("total_amount", True),
}
OPEN_STATUSES = "('CREATED', 'SENT', 'PARTIAL', 'PENDING')"


@dataclass(frozen=True, slots=True)
class SortPosition:
    """Where a sorted page starts: after the row with this sort value (None: a NULL due date) and
    id."""

    value: Any
    id: int


def _filter_clauses(filters: InvoiceFilter) -> tuple[list[str], dict[str, Any]]:
    clauses: list[str] = []
    params: dict[str, Any] = {}
    for column, value in (
        ("owner", filters.owner),
        ("status", filters.status),
        ("merchant_profile", filters.merchant_profile),
        ("merchant_customer_id", filters.merchant_customer_id),
        ("external_reference", filters.external_reference),
    ):
        if value is not None:
            clauses.append(f"{column} = :{column}")
            params[column] = value
    ranges = (
        ("created_at >= :created_from", "created_from", filters.created_from),
        ("created_at < :created_to", "created_to", filters.created_to),
        ("due_date >= :due_from", "due_from", filters.due_from),
        ("due_date <= :due_to", "due_to", filters.due_to),
        ("total_amount >= :amount_from", "amount_from", filters.amount_from),
        ("total_amount <= :amount_to", "amount_to", filters.amount_to),
    )
    for clause, name, bound in ranges:
        if bound is not None:
            clauses.append(clause)
            params[name] = bound
    if filters.customer_email is not None:
        clauses.append("lower(customer_email) = lower(:customer_email)")
        params["customer_email"] = filters.customer_email
    if filters.statuses:
        clauses.append("status = ANY(:statuses)")
        params["statuses"] = list(filters.statuses)
    if filters.overdue is not None:
        overdue = f"(due_date < :today AND status IN {OPEN_STATUSES})"
        clauses.append(overdue if filters.overdue else f"NOT COALESCE({overdue}, false)")
        params["today"] = filters.today or date.today()
    if filters.metadata:
        clauses.append("metadata @> CAST(:metadata AS jsonb)")
        params["metadata"] = to_json(dict(filters.metadata))
    return clauses, params


def list_statements(
    filters: InvoiceFilter, sort: str, after: SortPosition | None, limit: int
) -> list[tuple[str, dict[str, Any]]]:
    """The statements of one sorted page, run in order until `limit` rows are found (more than one
    only when a due-date sort crosses between dated invoices and those without a due date)."""
    column, descending = SORT_COLUMNS[sort]
    clauses, params = _filter_clauses(filters)
    params["limit"] = limit
    direction = "DESC" if descending else "ASC"
    order = f"ORDER BY {column} {direction}, id {direction}"
    compare = "<" if descending else ">"
    segments: list[list[str]] = []
    if column != "due_date":
        if after is not None:
            segments.append([f"({column}, id) {compare} (:after_value, :after_id)"])
        else:
            segments.append([])
    else:
        dated, undated = "due_date IS NOT NULL", "due_date IS NULL"
        # Ascending: dated invoices, then undated ones; descending: the other way round.
        first, second = (undated, dated) if descending else (dated, undated)
        if after is None:
            segments = [[first], [second]]
        elif after.value is None:  # inside the undated invoices
            in_undated = [undated, f"id {compare} :after_id"]
            segments = [in_undated] if not descending else [in_undated, [dated]]
        else:
            in_dated = [dated, f"(due_date, id) {compare} (:after_value, :after_id)"]
            segments = [in_dated] if descending else [in_dated, [undated]]
        order = f"ORDER BY due_date {direction}, id {direction}"
    if after is not None:
        params.update(after_value=after.value, after_id=after.id)
    if column == "created_at" and len(filters.statuses) > 1:
        # Several statuses newest first: one ordered index scan per status, merged (an `= ANY` would
        # read every matching row and sort them).
        return [_per_status(filters.statuses, clauses, segments[0], order, params)]
    statements = []
    for extra in segments:
        where = " AND ".join(clauses + extra)
        where_sql = f"WHERE {where}" if where else ""
        # Fixed clauses only (hence the noqa: S608).
        sql = f"SELECT * FROM invoices {where_sql} {order} LIMIT :limit"  # noqa: S608
        statements.append((sql, params))
    return statements


def _per_status(
    statuses: tuple[str, ...],
    clauses: list[str],
    extra: list[str],
    order: str,
    params: dict[str, Any],
) -> tuple[str, dict[str, Any]]:
    common = [clause for clause in clauses if clause != "status = ANY(:statuses)"]
    params = {key: value for key, value in params.items() if key != "statuses"}
    branches = []
    for n, status in enumerate(statuses):
        params[f"status_{n}"] = status
        where = " AND ".join([*common, f"status = :status_{n}", *extra])
        branches.append(
            f"(SELECT * FROM invoices WHERE {where} {order} LIMIT :limit)"  # noqa: S608
        )
    union = " UNION ALL ".join(branches)
    return f"SELECT * FROM ({union}) AS page {order} LIMIT :limit", params  # noqa: S608


@dataclass(frozen=True, slots=True)
class DeliveredState:
    """What a finished command leaves on its invoice: Cybersource's answer, or the error."""

    invoice_id: int
    succeeded: bool
    status: str | None
    payment_link: str | None
    balance_amount: Decimal | None
    upstream: dict[str, Any] | None
    error: dict[str, Any] | None
    # Cybersource created the invoice but did not e-mail it (kept in the content's facade notes) ...
    email_failure: dict[str, Any] | None = None
    # ... until an e-mail went out.
    email_sent: bool = False


def _field_params(fields: InvoiceFields) -> dict[str, Any]:
    return {
        "currency": fields.currency,
        "total": fields.total_amount,
        "email": fields.customer_email,
        "name": fields.customer_name,
        "due": fields.due_date,
        "content": to_json(fields.content),
        "customer_id": fields.merchant_customer_id,
        "reference": fields.external_reference,
        "metadata": to_json(fields.metadata),
    }


def external_reference_taken(reference: str | None) -> errors.ExternalReferenceTaken:
    return errors.ExternalReferenceTaken(
        f"The externalReference {reference!r} is already used by another of your invoices of this "
        "merchant profile; find it with GET /v1/invoices?externalReference=….",
        errors=[{"field": "externalReference", "message": "already used by another invoice"}],
    )


class InvoiceRepository(BaseRepository):
    async def next_number(self, merchant_profile: str, *, gapless: bool) -> int:
        if gapless:
            value = await self._scalar(
                "INSERT INTO invoice_number_counters (merchant_profile, last_value) VALUES (:p, 1) "
                "ON CONFLICT (merchant_profile) DO UPDATE "
                "SET last_value = invoice_number_counters.last_value + 1 RETURNING last_value",
                p=merchant_profile,
            )
        else:
            value = await self._scalar("SELECT nextval('invoice_number_seq')")
        return int(value)

    async def insert(
        self, *, merchant_profile: str, invoice_number: str, owner: str, fields: InvoiceFields
    ) -> int | None:
        """Insert a new invoice; None when the number is already taken for this merchant.

        A caller's externalReference already on another of its invoices is ExternalReferenceTaken.
        """
        return await self._insert_row(
            "INSERT INTO invoices (merchant_profile, invoice_number, owner, currency, "
            "total_amount, customer_email, customer_name, due_date, content, merchant_customer_id, "
            "external_reference, metadata) VALUES (:profile, :number, :owner, :currency, :total, "
            ":email, :name, :due, CAST(:content AS jsonb), :customer_id, :reference, "
            "CAST(:metadata AS jsonb)) "
            "ON CONFLICT (merchant_profile, invoice_number) DO NOTHING RETURNING id",
            profile=merchant_profile,
            number=invoice_number,
            owner=owner,
            **_field_params(fields),
        )

    async def insert_adopted(
        self,
        *,
        merchant_profile: str,
        invoice_number: str,
        owner: str,
        fields: InvoiceFields,
        status: str | None,
        payment_link: str | None,
        balance_amount: Decimal | None,
        upstream: dict[str, Any],
    ) -> int | None:
        """Insert an invoice made outside the facade, as Cybersource has it now (in sync, just
        seen);
        None when the store already has that number for this merchant."""
        return await self._insert_row(
            "INSERT INTO invoices (merchant_profile, invoice_number, owner, currency, "
            "total_amount, customer_email, customer_name, due_date, content, merchant_customer_id, "
            "external_reference, metadata, status, sync_state, payment_link, balance_amount, "
            "upstream, checked_at) VALUES (:profile, :number, :owner, :currency, :total, :email, "
            ":name, :due, CAST(:content AS jsonb), :customer_id, :reference, "
            "CAST(:metadata AS jsonb), :status, 'in_sync', :link, :balance, "
            "CAST(:upstream AS jsonb), now()) "
            "ON CONFLICT (merchant_profile, invoice_number) DO NOTHING RETURNING id",
            profile=merchant_profile,
            number=invoice_number,
            owner=owner,
            status=status,
            link=payment_link,
            balance=balance_amount,
            upstream=to_json(upstream),
            **_field_params(fields),
        )

    async def known_numbers(self, merchant_profile: str, numbers: Sequence[str]) -> set[str]:
        """Which of `numbers` the store has for this merchant (an import skips them)."""
        rows = await self._all(
            "SELECT invoice_number FROM invoices WHERE merchant_profile = :p "
            "AND invoice_number = ANY(:numbers)",
            p=merchant_profile,
            numbers=list(numbers),
        )
        return {str(row["invoice_number"]) for row in rows}

    async def _insert_row(self, sql: str, **params: Any) -> int | None:
        try:
            value = await self._scalar(sql, **params)
        except IntegrityError as exc:
            if EXTERNAL_REFERENCE_INDEX in str(exc.orig):
                raise external_reference_taken(params["reference"]) from exc
            raise
        return None if value is None else int(value)

    async def get(
        self, merchant_profile: str, invoice_number: str, *, for_update: bool = False
    ) -> InvoiceRow | None:
        lock = " FOR UPDATE" if for_update else ""
        return await self._row(
            InvoiceRow,
            "SELECT * FROM invoices WHERE merchant_profile = :p "  # noqa: S608
            "AND invoice_number = :n" + lock,
            p=merchant_profile,
            n=invoice_number,
        )

    async def get_by_id(self, invoice_id: int, *, for_update: bool = False) -> InvoiceRow | None:
        lock = " FOR UPDATE" if for_update else ""
        sql = "SELECT * FROM invoices WHERE id = :id" + lock  # noqa: S608 (a constant suffix)
        return await self._row(InvoiceRow, sql, id=invoice_id)

    async def get_view(self, merchant_profile: str, invoice_number: str) -> InvoiceView | None:
        """The invoice and the ids of its unfinished commands, in one round trip (the read hot
        path)."""
        return await self._row(
            InvoiceView,
            "SELECT i.*, ARRAY(SELECT o.id::text FROM operations o WHERE o.invoice_id = i.id "
            "AND o.state IN ('pending', 'in_flight') ORDER BY o.seq) AS pending_ids "
            "FROM invoices i WHERE i.merchant_profile = :p AND i.invoice_number = :n",
            p=merchant_profile,
            n=invoice_number,
        )

    async def list_newest(
        self, filters: InvoiceFilter, *, after: tuple[datetime, int] | None, limit: int
    ) -> list[InvoiceRow]:
        """Newest first, keyset-paginated on (created_at, id)."""
        position = None if after is None else SortPosition(after[0], after[1])
        return await self.list_sorted(filters, "-createdAt", after=position, limit=limit)

    async def list_sorted(
        self, filters: InvoiceFilter, sort: str, *, after: SortPosition | None, limit: int
    ) -> list[InvoiceRow]:
        """One page in `sort` order (a key of SORT_COLUMNS), keyset-paginated on (sort value,
        id)."""
        rows: list[InvoiceRow] = []
        for sql, params in list_statements(filters, sort, after, limit):
            rows += await self._rows(InvoiceRow, sql, **{**params, "limit": limit - len(rows)})
            if len(rows) >= limit:
                break
        return rows

    async def external_reference_owner(
        self, merchant_profile: str, owner: str, reference: str
    ) -> str | None:
        """The invoice number that holds this caller's reference, if any."""
        value = await self._scalar(
            "SELECT invoice_number FROM invoices WHERE merchant_profile = :p AND owner = :o "
            "AND external_reference = :r",
            p=merchant_profile,
            o=owner,
            r=reference,
        )
        return None if value is None else str(value)

    async def replace_content(self, invoice_id: int, fields: InvoiceFields) -> None:
        try:
            await self._execute(
                "UPDATE invoices SET content = CAST(:content AS jsonb), currency = :currency, "
                "total_amount = :total, customer_email = :email, customer_name = :name, "
                "due_date = :due, merchant_customer_id = :customer_id, "
                "external_reference = :reference, metadata = CAST(:metadata AS jsonb), "
                "sync_state = 'pending', updated_at = now() "
                "WHERE id = :id",
                id=invoice_id,
                **_field_params(fields),
            )
        except IntegrityError as exc:
            if EXTERNAL_REFERENCE_INDEX in str(exc.orig):
                raise external_reference_taken(fields.external_reference) from exc
            raise

    async def mark_pending(self, invoice_id: int) -> None:
        await self._execute(
            "UPDATE invoices SET sync_state = 'pending', updated_at = now() WHERE id = :id",
            id=invoice_id,
        )

    async def apply_upstream_state(
        self,
        invoice_id: int,
        *,
        status: str | None,
        payment_link: str | None,
        balance_amount: Decimal | None,
        upstream: dict[str, Any] | None,
    ) -> None:
        """Record what Cybersource says the invoice is now (a refresh, a webhook, the
        reconciler)."""
        await self._execute(
            "UPDATE invoices SET status = COALESCE(:status, status), "
            "payment_link = COALESCE(:link, payment_link), "
            "balance_amount = COALESCE(:balance, balance_amount), "
            "upstream = COALESCE(CAST(:upstream AS jsonb), upstream), updated_at = now(), "
            "checked_at = now() "
            "WHERE id = :id",
            id=invoice_id,
            status=status,
            link=payment_link,
            balance=balance_amount,
            upstream=None if upstream is None else to_json(upstream),
        )

    async def apply_delivered(self, states: Sequence[DeliveredState]) -> None:
        """Record the outcome of finished commands on their invoices, set-based in one statement."""
        if not states:
            return
        items = [
            {
                "id": s.invoice_id,
                "ok": s.succeeded,
                "status": s.status,
                "link": s.payment_link,
                "balance": None if s.balance_amount is None else str(s.balance_amount),
                "upstream": s.upstream,
                "error": s.error,
                "email_failure": s.email_failure,
                "email_sent": s.email_sent,
            }
            for s in states
        ]
        await self._execute(
            """
            UPDATE invoices i SET
                status = CASE WHEN x.ok THEN COALESCE(x.status, i.status) ELSE i.status END,
                payment_link = COALESCE(x.link, i.payment_link),
                balance_amount = COALESCE(x.balance, i.balance_amount),
                upstream = COALESCE(x.upstream, i.upstream),
                last_error = CASE WHEN x.ok THEN NULL ELSE x.error END,
                content = CASE
                    WHEN x.email_failure IS NOT NULL THEN jsonb_set(i.content, '{_facade}',
                        COALESCE(i.content -> '_facade', CAST('{}' AS jsonb))
                        || jsonb_build_object('emailFailure', x.email_failure))
                    WHEN x.email_sent THEN i.content #- '{_facade,emailFailure}'
                    ELSE i.content END,
                sync_state = CASE
                    WHEN NOT x.ok AND x.error ->> 'kind' = 'unknown' THEN 'unknown'
                    WHEN NOT x.ok THEN 'failed'
                    WHEN EXISTS (SELECT 1 FROM operations p WHERE p.invoice_id = i.id
                                 AND p.state IN ('pending', 'in_flight')) THEN 'pending'
                    ELSE 'in_sync' END,
                updated_at = now(),
                checked_at = CASE WHEN x.ok THEN now() ELSE i.checked_at END
            FROM jsonb_to_recordset(CAST(:items AS jsonb))
                 AS x(id bigint, ok boolean, status text, link text, balance numeric, \
upstream jsonb, error jsonb,
                    email_failure jsonb, email_sent boolean)
            WHERE i.id = x.id
            """,
            items=to_json(items),
        )

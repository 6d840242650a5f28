"""The invoices table and its number allocator: every statement about invoice rows."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from app.kit.sql import BaseRepository, to_json


@dataclass(frozen=True, slots=True)
class InvoiceFields:
    """The columns derived from an invoice body, so lists and filters need no JSON digging."""

    currency: str
    total_amount: Decimal
    customer_email: str | None
    customer_name: str | None
    due_date: date | None
    content: dict[str, Any]


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


@dataclass(frozen=True, slots=True)
class InvoiceView(InvoiceRow):
    """An invoice with the ids of its unfinished commands (what a read answers with)."""

    pending_ids: list[str]


@dataclass(frozen=True, slots=True)
class InvoiceFilter:
    owner: str | None = None
    status: str | None = None
    customer_email: str | None = None
    created_from: datetime | None = None
    created_to: datetime | None = None
    merchant_profile: str | None = None


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
        """Insert a new invoice; None when the number is already taken for this merchant."""
        value = await self._scalar(
            "INSERT INTO invoices (merchant_profile, invoice_number, owner, currency, total_amount, "
            "customer_email, customer_name, due_date, content) VALUES "
            "(:profile, :number, :owner, :currency, :total, :email, :name, :due, CAST(:content AS jsonb)) "
            "ON CONFLICT (merchant_profile, invoice_number) DO NOTHING RETURNING id",
            profile=merchant_profile,
            number=invoice_number,
            owner=owner,
            currency=fields.currency,
            total=fields.total_amount,
            email=fields.customer_email,
            name=fields.customer_name,
            due=fields.due_date,
            content=to_json(fields.content),
        )
        return None if value is None else int(value)

    async def get(
        self, merchant_profile: str, invoice_number: str, *, for_update: bool = False
    ) -> InvoiceRow | None:
        lock = " FOR UPDATE" if for_update else ""
        return await self._row(
            InvoiceRow,
            "SELECT * FROM invoices WHERE merchant_profile = :p AND invoice_number = :n" + lock,  # noqa: S608
            p=merchant_profile,
            n=invoice_number,
        )

    async def get_by_id(self, invoice_id: int, *, for_update: bool = False) -> InvoiceRow | None:
        lock = " FOR UPDATE" if for_update else ""
        sql = "SELECT * FROM invoices WHERE id = :id" + lock  # noqa: S608 (a constant suffix)
        return await self._row(InvoiceRow, sql, id=invoice_id)

    async def get_view(self, merchant_profile: str, invoice_number: str) -> InvoiceView | None:
        """The invoice and the ids of its unfinished commands, in one round trip (the read hot path)."""
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
        clauses: list[str] = []
        params: dict[str, Any] = {"limit": limit}
        for column, value in (
            ("owner", filters.owner),
            ("status", filters.status),
            ("customer_email", filters.customer_email),
            ("merchant_profile", filters.merchant_profile),
        ):
            if value is not None:
                clauses.append(f"{column} = :{column}")
                params[column] = value
        if filters.created_from is not None:
            clauses.append("created_at >= :created_from")
            params["created_from"] = filters.created_from
        if filters.created_to is not None:
            clauses.append("created_at < :created_to")
            params["created_to"] = filters.created_to
        if after is not None:
            clauses.append("(created_at, id) < (:after_ts, :after_id)")
            params.update(after_ts=after[0], after_id=after[1])
        where = ("WHERE " + " AND ".join(clauses)) if clauses else ""
        return await self._rows(
            InvoiceRow,
            f"SELECT * FROM invoices {where} ORDER BY created_at DESC, id DESC LIMIT :limit",  # noqa: S608
            **params,
        )

    async def replace_content(self, invoice_id: int, fields: InvoiceFields) -> None:
        await self._execute(
            "UPDATE invoices SET content = CAST(:content AS jsonb), currency = :currency, total_amount = :total, "
            "customer_email = :email, customer_name = :name, due_date = :due, sync_state = 'pending', "
            "updated_at = now() WHERE id = :id",
            id=invoice_id,
            content=to_json(fields.content),
            currency=fields.currency,
            total=fields.total_amount,
            email=fields.customer_email,
            name=fields.customer_name,
            due=fields.due_date,
        )

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
        """Record what Cybersource says the invoice is now (a refresh, a webhook, the reconciler)."""
        await self._execute(
            "UPDATE invoices SET status = COALESCE(:status, status), "
            "payment_link = COALESCE(:link, payment_link), "
            "balance_amount = COALESCE(:balance, balance_amount), "
            "upstream = COALESCE(CAST(:upstream AS jsonb), upstream), updated_at = now(), checked_at = now() "
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
                 AS x(id bigint, ok boolean, status text, link text, balance numeric, upstream jsonb, error jsonb,
                    email_failure jsonb, email_sent boolean)
            WHERE i.id = x.id
            """,
            items=to_json(items),
        )

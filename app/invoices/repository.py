"""Every SQL statement of the facade. Built from a connection; never commits (the caller's
transaction boundary does).

Plain SQL through SQLAlchemy Core: the hot paths (reads, the idempotency check, the create transaction,
the relay's claim and batch completion) are measured faster this way than through ORM sessions.
"""

from __future__ import annotations

import functools
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import RowMapping, text
from sqlalchemy.ext.asyncio import AsyncConnection

from app.models import RECONCILED_STATUSES

UNFINISHED = ("pending", "in_flight")
OUTBOX_CHANNEL = "igw_outbox"
OPERATION_DONE_CHANNEL = "igw_operation_done"


def _json(value: Any) -> str:
    return json.dumps(value, default=str, separators=(",", ":"))


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
class Completion:
    """The outcome of one delivered command, written with others in one batch."""

    operation_id: uuid.UUID
    invoice_id: int
    state: str  # succeeded | failed
    result: dict[str, Any] | None
    error: dict[str, Any] | None
    # Invoice columns from Cybersource's answer (success), or the error to show on it (failure).
    status: str | None = None
    payment_link: str | None = None
    balance_amount: Decimal | None = None
    upstream: dict[str, Any] | None = None
    event_type: str | None = None
    event_data: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class InvoiceFilter:
    owner: str | None = None
    status: str | None = None
    customer_email: str | None = None
    created_from: datetime | None = None
    created_to: datetime | None = None
    merchant_profile: str | None = None


# text() parses every statement for its bind parameters; the statements here are a small fixed set (the list
# filters combine into a few dozen), so each is parsed once.
_statement = functools.lru_cache(maxsize=512)(text)


class Repository:
    def __init__(self, connection: AsyncConnection) -> None:
        self.conn = connection

    async def _one(self, sql: str, **params: Any) -> RowMapping | None:
        return (await self.conn.execute(_statement(sql), params)).mappings().first()

    async def _all(self, sql: str, **params: Any) -> Sequence[RowMapping]:
        return (await self.conn.execute(_statement(sql), params)).mappings().all()

    # --- invoice numbers ----------------------------------------------------------------------------

    async def next_invoice_number(self, merchant_profile: str, *, gapless: bool) -> int:
        if gapless:
            row = await self._one(
                "INSERT INTO invoice_number_counters (merchant_profile, last_value) VALUES (:p, 1) "
                "ON CONFLICT (merchant_profile) DO UPDATE "
                "SET last_value = invoice_number_counters.last_value + 1 RETURNING last_value",
                p=merchant_profile)
        else:
            row = await self._one("SELECT nextval('invoice_number_seq') AS last_value")
        assert row is not None
        return int(row["last_value"])

    # --- invoices -----------------------------------------------------------------------------------

    async def insert_invoice(self, *, merchant_profile: str, invoice_number: str, owner: str,
                             fields: InvoiceFields) -> int | None:
        """Insert a new invoice; None when the number is already taken for this merchant."""
        row = await self._one(
            "INSERT INTO invoices (merchant_profile, invoice_number, owner, currency, total_amount, "
            "customer_email, customer_name, due_date, content) "
            "VALUES (:profile, :number, :owner, :currency, :total, :email, :name, :due, CAST(:content AS jsonb)) "
            "ON CONFLICT (merchant_profile, invoice_number) DO NOTHING RETURNING id",
            profile=merchant_profile, number=invoice_number, owner=owner, currency=fields.currency,
            total=fields.total_amount, email=fields.customer_email, name=fields.customer_name,
            due=fields.due_date, content=_json(fields.content))
        return None if row is None else int(row["id"])

    async def get_invoice(self, merchant_profile: str, invoice_number: str, *,
                          for_update: bool = False) -> RowMapping | None:
        lock = " FOR UPDATE" if for_update else ""
        return await self._one(
            "SELECT * FROM invoices WHERE merchant_profile = :p AND invoice_number = :n" + lock,  # noqa: S608
            p=merchant_profile, n=invoice_number)

    async def get_invoice_with_pending(self, merchant_profile: str, invoice_number: str) -> RowMapping | None:
        """The invoice and the ids of its unfinished commands, in one round trip (the read hot path)."""
        return await self._one(
            "SELECT i.*, ARRAY(SELECT o.id::text FROM operations o WHERE o.invoice_id = i.id "
            "AND o.state IN ('pending', 'in_flight') ORDER BY o.seq) AS pending_ids "
            "FROM invoices i WHERE i.merchant_profile = :p AND i.invoice_number = :n",
            p=merchant_profile, n=invoice_number)

    async def list_invoices(self, filters: InvoiceFilter, *, after: tuple[datetime, int] | None,
                            limit: int) -> Sequence[RowMapping]:
        """Newest first, keyset-paginated on (created_at, id)."""
        clauses: list[str] = []
        params: dict[str, Any] = {"limit": limit}
        for column, value in (("owner", filters.owner), ("status", filters.status),
                              ("customer_email", filters.customer_email),
                              ("merchant_profile", filters.merchant_profile)):
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
        return await self._all(
            f"SELECT * FROM invoices {where} ORDER BY created_at DESC, id DESC LIMIT :limit",  # noqa: S608
            **params)

    async def replace_invoice_content(self, invoice_id: int, fields: InvoiceFields) -> None:
        await self.conn.execute(text(
            "UPDATE invoices SET content = CAST(:content AS jsonb), currency = :currency, total_amount = :total, "
            "customer_email = :email, customer_name = :name, due_date = :due, sync_state = 'pending', "
            "updated_at = now() WHERE id = :id"),
            {"id": invoice_id, "content": _json(fields.content), "currency": fields.currency,
             "total": fields.total_amount, "email": fields.customer_email, "name": fields.customer_name,
             "due": fields.due_date})

    async def mark_invoice_pending(self, invoice_id: int) -> None:
        await self.conn.execute(text(
            "UPDATE invoices SET sync_state = 'pending', updated_at = now() WHERE id = :id"), {"id": invoice_id})

    async def apply_upstream_state(self, invoice_id: int, *, status: str | None, payment_link: str | None,
                                   balance_amount: Decimal | None, upstream: dict[str, Any] | None) -> None:
        """Record what Cybersource says the invoice is now (a refresh or a webhook)."""
        await self.conn.execute(text(
            "UPDATE invoices SET status = COALESCE(:status, status), "
            "payment_link = COALESCE(:link, payment_link), "
            "balance_amount = COALESCE(:balance, balance_amount), "
            "upstream = COALESCE(CAST(:upstream AS jsonb), upstream), updated_at = now(), checked_at = now() "
            "WHERE id = :id"),
            {"id": invoice_id, "status": status, "link": payment_link, "balance": balance_amount,
             "upstream": None if upstream is None else _json(upstream)})

    async def claim_invoices_to_reconcile(self, *, stale_seconds: float, limit: int) -> Sequence[RowMapping]:
        """Open invoices not seen upstream for `stale_seconds` and with no command on its way, oldest first.

        Marking them seen now is the claim: another relay skips the locked rows and, once this commits,
        finds them fresh. The returned `checked_at` lets the caller notice a newer observation later.
        """
        return await self._all(
            f"""
            UPDATE invoices i SET checked_at = now()
            FROM (SELECT id FROM invoices
                  WHERE status IN {RECONCILED_STATUSES} AND sync_state <> 'pending'
                    AND checked_at < now() - make_interval(secs => :stale)
                  ORDER BY checked_at LIMIT :limit FOR UPDATE SKIP LOCKED) due
            WHERE i.id = due.id
            RETURNING i.id, i.merchant_profile, i.invoice_number, i.checked_at
            """, stale=stale_seconds, limit=limit)  # noqa: S608 (a constant tuple, no input)

    async def get_invoice_by_id(self, invoice_id: int, *, for_update: bool = False) -> RowMapping | None:
        lock = " FOR UPDATE" if for_update else ""
        return await self._one("SELECT * FROM invoices WHERE id = :id" + lock, id=invoice_id)  # noqa: S608

    # --- operations (the outbox) --------------------------------------------------------------------

    async def insert_operation(self, *, operation_id: uuid.UUID, invoice_id: int, merchant_profile: str,
                               kind: str, payload: dict[str, Any] | None, requested_by: str) -> None:
        """Queue a command and notify the relays (delivered at commit), in one round trip."""
        await self.conn.execute(text(
            "WITH queued AS (INSERT INTO operations (id, invoice_id, merchant_profile, kind, payload, requested_by) "
            "VALUES (:id, :invoice_id, :profile, :kind, CAST(:payload AS jsonb), :by) RETURNING id) "
            "SELECT pg_notify(:channel, id::text) FROM queued"),
            {"id": operation_id, "invoice_id": invoice_id, "profile": merchant_profile, "kind": kind,
             "payload": None if payload is None else _json(payload), "by": requested_by,
             "channel": OUTBOX_CHANNEL})

    async def notify(self, channel: str, payload: str = "") -> None:
        await self.conn.execute(text("SELECT pg_notify(:c, :p)"), {"c": channel, "p": payload})

    async def operation_state(self, operation_id: uuid.UUID) -> str | None:
        row = await self._one("SELECT state FROM operations WHERE id = :id", id=operation_id)
        return None if row is None else str(row["state"])

    async def outbox_depth(self) -> tuple[dict[str, int], float]:
        """Commands per state, and the age in seconds of the oldest unfinished one (0 when none)."""
        rows = await self._all("SELECT state, count(*) AS n FROM operations GROUP BY state")
        oldest = await self._one(
            "SELECT EXTRACT(EPOCH FROM now() - min(created_at)) AS age FROM operations "
            "WHERE state IN ('pending', 'in_flight')")
        age = oldest["age"] if oldest is not None else None
        return {row["state"]: int(row["n"]) for row in rows}, float(age or 0)

    async def ping(self) -> None:
        await self.conn.execute(text("SELECT 1"))

    async def get_operation(self, operation_id: uuid.UUID) -> RowMapping | None:
        return await self._one(
            "SELECT o.*, i.invoice_number, i.owner FROM operations o JOIN invoices i ON i.id = o.invoice_id "
            "WHERE o.id = :id", id=operation_id)

    async def unfinished_operations(self, invoice_id: int) -> Sequence[RowMapping]:
        return await self._all(
            "SELECT id, kind, state FROM operations WHERE invoice_id = :id AND state IN ('pending', 'in_flight') "
            "ORDER BY seq", id=invoice_id)

    async def list_operations(self, *, state: str | None, after_seq: int | None, limit: int) -> Sequence[RowMapping]:
        clauses: list[str] = []
        params: dict[str, Any] = {"limit": limit}
        if state is not None:
            clauses.append("o.state = :state")
            params["state"] = state
        if after_seq is not None:
            clauses.append("o.seq > :after")
            params["after"] = after_seq
        where = ("WHERE " + " AND ".join(clauses)) if clauses else ""
        return await self._all(
            "SELECT o.*, i.invoice_number, i.owner FROM operations o JOIN invoices i ON i.id = o.invoice_id "  # noqa: S608
            f"{where} ORDER BY o.seq LIMIT :limit", **params)

    async def claim_due_operations(self, *, owner: str, limit: int, lease_seconds: float) -> Sequence[RowMapping]:
        """Claim due commands under a lease; a command waits while an older one of its invoice is unfinished.

        SKIP LOCKED lets several relays claim side by side; an expired lease (a crashed relay) makes an
        in-flight command claimable again.
        """
        return await self._all(
            """
            WITH due AS (
                SELECT o.id FROM operations o
                WHERE ((o.state = 'pending' AND o.available_at <= now())
                       OR (o.state = 'in_flight' AND o.lease_expires_at < now()))
                  AND NOT EXISTS (SELECT 1 FROM operations p WHERE p.invoice_id = o.invoice_id
                                  AND p.seq < o.seq AND p.state IN ('pending', 'in_flight'))
                ORDER BY o.available_at, o.seq
                LIMIT :limit
                FOR UPDATE OF o SKIP LOCKED
            )
            UPDATE operations o SET state = 'in_flight', lease_owner = :owner,
                   lease_expires_at = now() + make_interval(secs => :lease), attempts = o.attempts + 1,
                   -- a command taken over from an expired lease may have reached Cybersource: look first
                   needs_reconcile = o.needs_reconcile OR o.state = 'in_flight', updated_at = now()
            FROM due, invoices i
            WHERE o.id = due.id AND i.id = o.invoice_id
            RETURNING o.id, o.invoice_id, o.merchant_profile, o.kind, o.payload, o.attempts, o.created_at,
                      o.needs_reconcile, o.baseline, i.invoice_number, i.status AS invoice_status, i.content
            """, owner=owner, limit=limit, lease=lease_seconds)

    async def set_baseline(self, operation_id: uuid.UUID, owner: str, baseline: dict[str, Any]) -> None:
        await self.conn.execute(text(
            "UPDATE operations SET baseline = CAST(:b AS jsonb) WHERE id = :id AND lease_owner = :owner"),
            {"id": operation_id, "owner": owner, "b": _json(baseline)})

    async def reschedule_operation(self, operation_id: uuid.UUID, *, owner: str, delay_seconds: float,
                                   error: dict[str, Any], needs_reconcile: bool) -> bool:
        row = await self._one(
            "UPDATE operations SET state = 'pending', lease_owner = NULL, lease_expires_at = NULL, "
            "available_at = now() + make_interval(secs => :delay), last_error = CAST(:err AS jsonb), "
            "needs_reconcile = needs_reconcile OR :reconcile, updated_at = now() "
            "WHERE id = :id AND lease_owner = :owner AND state = 'in_flight' RETURNING id",
            id=operation_id, owner=owner, delay=delay_seconds, err=_json(error), reconcile=needs_reconcile)
        return row is not None

    async def complete_operations(self, owner: str, completions: Sequence[Completion]) -> list[uuid.UUID]:
        """Finish a batch of delivered commands set-based: one statement per table for the whole batch.

        Only commands still leased by `owner` are finished (a relay whose lease expired is fenced off).
        """
        if not completions:
            return []
        items = [{"id": str(c.operation_id), "state": c.state, "result": c.result, "error": c.error}
                 for c in completions]
        rows = await self._all(
            """
            UPDATE operations o SET state = x.state, result = x.result, last_error = x.error,
                   lease_owner = NULL, lease_expires_at = NULL, completed_at = now(), updated_at = now()
            FROM jsonb_to_recordset(CAST(:items AS jsonb)) AS x(id uuid, state text, result jsonb, error jsonb)
            WHERE o.id = x.id AND o.lease_owner = :owner AND o.state = 'in_flight'
            RETURNING o.id
            """, items=_json(items), owner=owner)
        done = {row["id"] for row in rows}
        finished = [c for c in completions if c.operation_id in done]
        if not finished:
            return []
        invoices = [{"id": c.invoice_id, "ok": c.state == "succeeded", "status": c.status,
                     "link": c.payment_link, "balance": None if c.balance_amount is None else str(c.balance_amount),
                     "upstream": c.upstream, "error": c.error} for c in finished]
        await self.conn.execute(text(
            """
            UPDATE invoices i SET
                status = CASE WHEN x.ok THEN COALESCE(x.status, i.status) ELSE i.status END,
                payment_link = COALESCE(x.link, i.payment_link),
                balance_amount = COALESCE(x.balance, i.balance_amount),
                upstream = COALESCE(x.upstream, i.upstream),
                last_error = CASE WHEN x.ok THEN NULL ELSE x.error END,
                sync_state = CASE
                    WHEN NOT x.ok THEN 'failed'
                    WHEN EXISTS (SELECT 1 FROM operations p WHERE p.invoice_id = i.id
                                 AND p.state IN ('pending', 'in_flight')) THEN 'pending'
                    ELSE 'in_sync' END,
                updated_at = now(),
                checked_at = CASE WHEN x.ok THEN now() ELSE i.checked_at END
            FROM jsonb_to_recordset(CAST(:items AS jsonb))
                 AS x(id bigint, ok boolean, status text, link text, balance numeric, upstream jsonb, error jsonb)
            WHERE i.id = x.id
            """), {"items": _json(invoices)})
        events = [{"type": c.event_type, "invoice_id": c.invoice_id, "op": str(c.operation_id),
                   "data": c.event_data or {}} for c in finished if c.event_type]
        if events:
            await self.conn.execute(text(
                """
                INSERT INTO events (type, invoice_id, invoice_number, merchant_profile, owner, operation_id, data)
                SELECT x.type, i.id, i.invoice_number, i.merchant_profile, i.owner, x.op, x.data
                FROM jsonb_to_recordset(CAST(:items AS jsonb)) AS x(type text, invoice_id bigint, op uuid, data jsonb)
                JOIN invoices i ON i.id = x.invoice_id
                """), {"items": _json(events)})
        await self.conn.execute(text(
            "SELECT pg_notify(:c, x) FROM unnest(CAST(:ids AS text[])) AS x"),
            {"c": OPERATION_DONE_CHANNEL, "ids": [str(c.operation_id) for c in finished]})
        return [c.operation_id for c in finished]

    async def release_leases(self, owner: str) -> int:
        """Give back what a stopping relay holds, so another relay can take it at once.

        What is still held was cut off mid-delivery (its call may have reached Cybersource): the next relay
        reconciles before re-sending, as after an expired lease.
        """
        rows = await self._all(
            "UPDATE operations SET state = 'pending', lease_owner = NULL, lease_expires_at = NULL, "
            "attempts = GREATEST(attempts - 1, 0), needs_reconcile = true, updated_at = now() "
            "WHERE lease_owner = :owner AND state = 'in_flight' RETURNING id", owner=owner)
        return len(rows)

    async def retry_failed_operation(self, operation_id: uuid.UUID) -> RowMapping | None:
        return await self._one(
            "UPDATE operations SET state = 'pending', attempts = 0, available_at = now(), completed_at = NULL, "
            "result = NULL, created_at = now(), updated_at = now() "
            "WHERE id = :id AND state = 'failed' RETURNING invoice_id", id=operation_id)

    # --- events -------------------------------------------------------------------------------------

    async def insert_event(self, *, event_type: str, invoice: RowMapping, operation_id: uuid.UUID | None,
                           data: dict[str, Any]) -> None:
        await self.conn.execute(text(
            "INSERT INTO events (type, invoice_id, invoice_number, merchant_profile, owner, operation_id, data) "
            "VALUES (:type, :iid, :num, :profile, :owner, :op, CAST(:data AS jsonb))"),
            {"type": event_type, "iid": invoice["id"], "num": invoice["invoice_number"],
             "profile": invoice["merchant_profile"], "owner": invoice["owner"], "op": operation_id,
             "data": _json(data)})

    async def list_events(self, *, after: tuple[int, int] | None, owner: str | None,
                          limit: int) -> Sequence[RowMapping]:
        """Events in commit order, never skipping a row that commits late.

        Ids are handed out before commit, so a reader must not move past a transaction that is still
        running: rows are shown only below the oldest in-progress transaction id of the statement's
        snapshot. Transactions known to run in another database cannot write our events and do not hold
        the feed back; anything unknown (including one that just finished) does, for one poll.
        """
        clauses = ["e.txid < cutoff.txid"]
        params: dict[str, Any] = {"limit": limit}
        if after is not None:
            clauses.append("(e.txid, e.id) > (:after_tx, :after_id)")
            params.update(after_tx=after[0], after_id=after[1])
        if owner is not None:
            clauses.append("e.owner = :owner")
            params["owner"] = owner
        return await self._all(
            f"""
            WITH snap AS (SELECT pg_current_snapshot() AS s),
            elsewhere AS (
                SELECT backend_xid::text::bigint AS xid32 FROM pg_stat_activity
                WHERE backend_xid IS NOT NULL AND datname IS DISTINCT FROM current_database()
            ),
            cutoff AS (
                SELECT COALESCE(
                    (SELECT min(x::text::bigint) FROM snap, pg_snapshot_xip(snap.s) AS x
                     WHERE x::text::bigint % 4294967296 NOT IN (SELECT xid32 FROM elsewhere)),
                    (SELECT pg_snapshot_xmax(s)::text::bigint FROM snap)) AS txid
            )
            SELECT e.* FROM events e, cutoff
            WHERE {" AND ".join(clauses)}
            ORDER BY e.txid, e.id LIMIT :limit
            """,  # noqa: S608  (clauses are fixed text; values are bound)
            **params)

    # --- webhook receipts ----------------------------------------------------------------------------

    async def webhook_receipt_exists(self, dedup_key: str) -> bool:
        return await self._one("SELECT 1 FROM webhook_receipts WHERE dedup_key = :k", k=dedup_key) is not None

    async def record_webhook_receipt(self, *, dedup_key: str, event_type: str, invoice_number: str | None,
                                     raw_body: str) -> bool:
        """Remember an accepted notification; False when it was accepted before (a redelivery)."""
        row = await self._one(
            "INSERT INTO webhook_receipts (dedup_key, event_type, invoice_number, raw_body) "
            "VALUES (:k, :e, :n, :b) ON CONFLICT DO NOTHING RETURNING dedup_key",
            k=dedup_key, e=event_type, n=invoice_number, b=raw_body)
        return row is not None

    # --- idempotency records ------------------------------------------------------------------------

    async def claim_idempotency_key(self, *, client: str, key: str, fingerprint: str, method: str, path: str,
                                    lock_seconds: float) -> bool:
        """Claim a key; blocks while another transaction holds an uncommitted claim on it."""
        row = await self._one(
            "INSERT INTO idempotency_records (client, key, fingerprint, method, path, locked_until) "
            "VALUES (:client, :key, :fp, :method, :path, now() + make_interval(secs => :lock)) "
            "ON CONFLICT (client, key) DO NOTHING RETURNING key",
            client=client, key=key, fp=fingerprint, method=method, path=path, lock=lock_seconds)
        return row is not None

    async def get_idempotency_record(self, client: str, key: str) -> RowMapping | None:
        return await self._one(
            "SELECT * FROM idempotency_records "
            "WHERE client = :client AND key = :key", client=client, key=key)

    async def attach_operation(self, client: str, key: str, operation_id: uuid.UUID) -> None:
        await self.conn.execute(text(
            "UPDATE idempotency_records SET operation_id = :op WHERE client = :client AND key = :key"),
            {"op": operation_id, "client": client, "key": key})

    async def complete_idempotency_key(self, client: str, key: str, *, status: int, headers: dict[str, str],
                                       body: Any) -> None:
        await self.conn.execute(text(
            "UPDATE idempotency_records SET state = 'completed', response_status = :status, "
            "response_headers = CAST(:headers AS jsonb), response_body = CAST(:body AS jsonb), "
            "completed_at = now() WHERE client = :client AND key = :key AND state = 'processing'"),
            {"client": client, "key": key, "status": status, "headers": _json(headers), "body": _json(body)})

    async def purge_idempotency_records(self, *, older_than_hours: float, batch: int) -> int:
        rows = await self._all(
            "DELETE FROM idempotency_records WHERE ctid IN (SELECT ctid FROM idempotency_records "
            "WHERE created_at < now() - make_interval(secs => :age) "
            "AND (state = 'completed' OR locked_until < now()) LIMIT :batch) RETURNING key",
            age=older_than_hours * 3600, batch=batch)
        return len(rows)

"""Rows for the package tests, written through the repositories (plain SQL only to age or move
rows)."""

from __future__ import annotations

import uuid
from datetime import date
from decimal import Decimal
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from app.invoices.repository import InvoiceFields, InvoiceRepository
from app.outbox.repository import OutboxRepository

PROFILE = "default"


def fields(
    *,
    total: str = "100.00",
    email: str | None = "ada@example.com",
    name: str | None = "Ada Lovelace",
    content: dict[str, Any] | None = None,
) -> InvoiceFields:
    return InvoiceFields(
        currency="USD",
        total_amount=Decimal(total),
        customer_email=email,
        customer_name=name,
        due_date=date(2026, 12, 31),
        content=content
        if content is not None
        else {
            "customerInformation": {"name": name, "email": email},
            "invoiceInformation": {"description": "Consulting", "dueDate": "2026-12-31"},
            "orderInformation": {"amountDetails": {"totalAmount": total, "currency": "USD"}},
        },
    )


def number() -> str:
    return f"PKG-{uuid.uuid4().hex[:12]}"


async def sql(conn: AsyncConnection, statement: str, **params: Any) -> Any:
    return await conn.execute(text(statement), params)


async def invoice(
    conn: AsyncConnection,
    invoice_number: str | None = None,
    *,
    owner: str = "billing",
    profile: str = PROFILE,
    status: str | None = None,
    sync_state: str | None = None,
    email: str | None = "ada@example.com",
    age_seconds: float | None = None,
    checked_seconds_ago: float | None = None,
) -> int:
    """An invoice row; `age_seconds` backdates created_at, `checked_seconds_ago` its checked_at."""
    invoice_id = await InvoiceRepository(conn).insert(
        merchant_profile=profile,
        invoice_number=invoice_number or number(),
        owner=owner,
        fields=fields(email=email),
    )
    assert invoice_id is not None
    if status is not None:
        await sql(conn, "UPDATE invoices SET status = :s WHERE id = :id", s=status, id=invoice_id)
    if sync_state is not None:
        await sql(
            conn, "UPDATE invoices SET sync_state = :s WHERE id = :id", s=sync_state, id=invoice_id
        )
    if age_seconds is not None:
        await sql(
            conn,
            "UPDATE invoices SET created_at = now() - make_interval(secs => :a) WHERE id = :id",
            a=age_seconds,
            id=invoice_id,
        )
    if checked_seconds_ago is not None:
        await sql(
            conn,
            "UPDATE invoices SET checked_at = now() - make_interval(secs => :a) WHERE id = :id",
            a=checked_seconds_ago,
            id=invoice_id,
        )
    return invoice_id


async def operation(
    conn: AsyncConnection,
    invoice_id: int,
    kind: str = "send",
    *,
    profile: str = PROFILE,
    payload: dict[str, Any] | None = None,
    requested_by: str = "billing",
    state: str | None = None,
) -> uuid.UUID:
    """An outbox command; `state` moves it straight to another state (plain SQL, no lease)."""
    operation_id = uuid.uuid4()
    await OutboxRepository(conn).insert(
        operation_id=operation_id,
        invoice_id=invoice_id,
        merchant_profile=profile,
        kind=kind,
        payload=payload,
        requested_by=requested_by,
    )
    if state is not None:
        await sql(conn, "UPDATE operations SET state = :s WHERE id = :id", s=state, id=operation_id)
    return operation_id


async def column(conn: AsyncConnection, table: str, name: str, row_id: Any) -> Any:
    return (await sql(conn, f"SELECT {name} FROM {table} WHERE id = :id", id=row_id)).scalar_one()

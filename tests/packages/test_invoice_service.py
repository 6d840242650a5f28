"""InvoiceService's writes inside a key's transaction (enqueue_create, enqueue_action), on a
rolled-back connection: number allocation, the local state-transition check, and who may act on an
invoice."""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app import errors
from app.auth.principal import ADMIN, READ, WRITE, Caller
from app.idempotency.executor import Accepted
from app.invoices.commands import COMMANDS, InvoiceStatus, OperationKind
from app.invoices.repository import InvoiceRepository
from app.invoices.schemas import InvoiceCreate
from app.invoices.service import InvoiceService
from app.outbox.repository import OutboxRepository
from app.settings import Settings
from tests.packages import seed

BILLING = Caller("billing", frozenset({READ, WRITE}))
SHOP = Caller("shop", frozenset({READ, WRITE}))
OPS = Caller("ops", frozenset({READ, WRITE, ADMIN}))
ACTIONS = [kind for kind in OperationKind if COMMANDS[kind].allowed_from is not None]


def _service(engine: AsyncEngine, **settings: Any) -> InvoiceService:
    values: dict[str, Any] = {"app_env": "test", "invoice_number_prefix": "SVC-"}
    values.update(settings)
    # The executor runs the key's transaction around these writes; the tests hand the connection in.
    return InvoiceService(
        engine=engine,
        reads=engine,
        settings=Settings(**values),
        executor=None,  # type: ignore[arg-type]
    )


def _body(number: str | None = None) -> InvoiceCreate:
    info: dict[str, Any] = {"description": "Consulting, two hours", "dueDate": "2026-12-31"}
    if number is not None:
        info["invoiceNumber"] = number
    return InvoiceCreate.model_validate(
        {
            "customerInformation": {"name": "Ada Lovelace", "email": "ada@example.com"},
            "invoiceInformation": info,
            "orderInformation": {
                "amountDetails": {"totalAmount": "250.00", "currency": "USD"},
                "lineItems": [{"productName": "Hour", "quantity": 2, "unitPrice": "125.00"}],
            },
        }
    )


async def _create(service: InvoiceService, conn: AsyncConnection, body: InvoiceCreate) -> str:
    """Enqueue a create; return the invoice's number, checking the row and its queued command."""
    accepted = await service.enqueue_create(conn, BILLING, "default", body)
    assert isinstance(accepted, Accepted)
    operation = await OutboxRepository(conn).get(accepted.operation_id)
    assert operation is not None
    assert (operation.kind, operation.state, operation.owner) == ("create", "pending", "billing")
    invoice = await InvoiceRepository(conn).get_by_id(operation.invoice_id)
    assert invoice is not None
    assert (invoice.owner, invoice.status, invoice.sync_state) == ("billing", None, "pending")
    assert invoice.content["invoiceInformation"]["invoiceNumber"] == invoice.invoice_number
    payload = await seed.column(conn, "operations", "payload", accepted.operation_id)
    assert payload["invoiceInformation"]["invoiceNumber"] == invoice.invoice_number
    assert payload["orderInformation"]["amountDetails"]["totalAmount"] == "250.00"
    return invoice.invoice_number


# --- creates --------------------------------------------------------------------------------------


async def test_gapless_numbers_take_the_prefix_and_width(engine, conn: AsyncConnection) -> None:
    service = _service(engine, invoice_number_mode="gapless", invoice_number_width=5)
    assert [await _create(service, conn, _body()) for _ in range(3)] == [
        "SVC-00001",
        "SVC-00002",
        "SVC-00003",
    ]


async def test_sequence_numbers_take_the_prefix_and_width(engine, conn: AsyncConnection) -> None:
    service = _service(engine, invoice_number_mode="sequence", invoice_number_width=12)
    first, second = [await _create(service, conn, _body()) for _ in range(2)]
    assert re.fullmatch(r"SVC-\d{12}", first) and re.fullmatch(r"SVC-\d{12}", second)
    assert int(second[4:]) == int(first[4:]) + 1


async def test_a_chosen_number_is_kept_and_never_reused(engine, conn: AsyncConnection) -> None:
    service = _service(engine)
    number = f"mine-{uuid.uuid4().hex[:10]}"
    assert await _create(service, conn, _body(number)) == number
    with pytest.raises(errors.InvoiceNumberTaken):
        await service.enqueue_create(conn, SHOP, "default", _body(number))
    queued = await seed.sql(conn, "SELECT count(*) FROM operations")
    assert queued.scalar_one() == 1


async def test_an_unknown_merchant_profile_is_refused(engine, conn: AsyncConnection) -> None:
    with pytest.raises(errors.MalformedRequest):
        await _service(engine).enqueue_create(conn, BILLING, "nowhere", _body())
    assert (await seed.sql(conn, "SELECT count(*) FROM invoices")).scalar_one() == 0


# --- actions: the local state-transition check ----------------------------------------------------


def _cases(allowed: bool) -> list[tuple[OperationKind, InvoiceStatus]]:
    return [
        (kind, status)
        for kind in ACTIONS
        for status in InvoiceStatus
        if (status in (COMMANDS[kind].allowed_from or ())) is allowed
    ]


@pytest.mark.parametrize(("kind", "status"), _cases(allowed=False), ids=str)
async def test_an_action_from_a_status_it_is_not_allowed_from_is_refused(
    engine, conn: AsyncConnection, kind: OperationKind, status: InvoiceStatus
) -> None:
    number = seed.number()
    invoice_id = await seed.invoice(conn, number, status=status, sync_state="in_sync")
    with pytest.raises(errors.ActionNotAllowed) as refused:
        await _service(engine).enqueue_action(conn, BILLING, "default", number, kind)

    assert refused.value.extra.get("invoiceStatus") == status
    listed = re.search(r"allowed from ([A-Z_]+(?:, [A-Z_]+)*)", refused.value.detail)
    assert listed is not None, refused.value.detail
    assert set(listed.group(1).split(", ")) == {s.value for s in COMMANDS[kind].allowed_from or ()}
    # Nothing was written: no command, the invoice as it was.
    assert not await OutboxRepository(conn).has_unfinished(invoice_id)
    row = await InvoiceRepository(conn).get_by_id(invoice_id)
    assert row is not None and row.sync_state == "in_sync"


@pytest.mark.parametrize(("kind", "status"), _cases(allowed=True), ids=str)
async def test_an_action_from_an_allowed_status_is_queued(
    engine, conn: AsyncConnection, kind: OperationKind, status: InvoiceStatus
) -> None:
    number = seed.number()
    invoice_id = await seed.invoice(conn, number, status=status, sync_state="in_sync")
    accepted = await _service(engine).enqueue_action(conn, BILLING, "default", number, kind)
    operation = await OutboxRepository(conn).get(accepted.operation_id)
    assert operation is not None
    assert (operation.kind, operation.state, operation.invoice_id) == (kind, "pending", invoice_id)
    row = await InvoiceRepository(conn).get_by_id(invoice_id)
    assert row is not None and (row.sync_state, row.status) == ("pending", status)


async def test_an_invoice_whose_create_failed_allows_no_action(
    engine, conn: AsyncConnection
) -> None:
    number = seed.number()
    invoice_id = await seed.invoice(conn, number, status=None, sync_state="failed")
    await seed.operation(conn, invoice_id, "create", state="failed")
    for kind in ACTIONS:
        with pytest.raises(errors.ActionNotAllowed):
            await _service(engine).enqueue_action(conn, BILLING, "default", number, kind)


async def test_behind_an_unfinished_command_cybersource_decides(
    engine, conn: AsyncConnection
) -> None:
    # The stored state is not current while a command is queued: no local refusal then.
    number = seed.number()
    invoice_id = await seed.invoice(conn, number, status=None)
    create = await seed.operation(conn, invoice_id, "create")
    service = _service(engine)
    send = await service.enqueue_action(conn, BILLING, "default", number, OperationKind.SEND)
    cancel = await service.enqueue_action(conn, BILLING, "default", number, OperationKind.CANCEL)
    view = await InvoiceRepository(conn).get_view("default", number)
    assert view is not None
    assert view.pending_ids == [str(create), str(send.operation_id), str(cancel.operation_id)]


async def test_only_the_owner_or_an_admin_may_act(engine, conn: AsyncConnection) -> None:
    service = _service(engine)
    number = seed.number()
    await seed.invoice(conn, number, owner="billing", status="DRAFT", sync_state="in_sync")
    with pytest.raises(errors.InvoiceNotFound):  # not even told that it exists
        await service.enqueue_action(conn, SHOP, "default", number, OperationKind.SEND)
    with pytest.raises(errors.InvoiceNotFound):
        await service.enqueue_action(conn, BILLING, "default", seed.number(), OperationKind.SEND)
    accepted = await service.enqueue_action(conn, OPS, "default", number, OperationKind.SEND)
    operation = await OutboxRepository(conn).get(accepted.operation_id)
    assert operation is not None and operation.owner == "billing"  # still the invoice's owner's

"""OutboxRepository on a real database: the claim's order per invoice, lease fencing, release,
re-drive."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncConnection

from app.outbox.repository import (
    ClaimedOperation,
    Finish,
    OperationRow,
    OutboxRepository,
    Reschedule,
)
from tests.packages import seed

LEASE = 60.0


async def _claim(conn: AsyncConnection, owner: str, limit: int = 10) -> list[ClaimedOperation]:
    return await OutboxRepository(conn).claim_due(owner=owner, limit=limit, lease_seconds=LEASE)


async def _raw(conn: AsyncConnection, operation_id: uuid.UUID) -> dict:
    row = (
        await seed.sql(
            conn,
            "SELECT state, attempts, lease_owner, lease_expires_at, available_at, needs_reconcile, "
            "baseline, last_error, result, completed_at FROM operations WHERE id = :id",
            id=operation_id,
        )
    ).mappings()
    return dict(row.one())


def _succeeded(operation_id: uuid.UUID) -> Finish:
    return Finish(operation_id, "succeeded", {"status": "SENT"}, None)


def _later(
    operation_id: uuid.UUID,
    *,
    delay: float = 5.0,
    error: dict | None = None,
    reconcile: bool | None = None,
) -> Reschedule:
    return Reschedule(operation_id, delay, error or {"class": "transient"}, reconcile, "transient")


async def test_insert_and_get_return_typed_rows(conn: AsyncConnection) -> None:
    outbox = OutboxRepository(conn)
    number = seed.number()
    invoice_id = await seed.invoice(conn, number, owner="shop")
    operation_id = await seed.operation(conn, invoice_id, "create", payload={"a": [1, {"b": "c"}]})

    row = await outbox.get(operation_id)
    assert isinstance(row, OperationRow)
    assert isinstance(row.id, uuid.UUID) and row.id == operation_id
    assert isinstance(row.seq, int) and row.invoice_id == invoice_id
    assert (row.kind, row.state, row.attempts) == ("create", "pending", 0)
    assert (row.invoice_number, row.owner, row.merchant_profile) == (number, "shop", "default")
    assert row.last_error is None and row.completed_at is None
    assert isinstance(row.created_at, datetime) and row.created_at.tzinfo is not None
    assert await outbox.state(operation_id) == "pending"
    assert await outbox.state(uuid.uuid4()) is None
    assert await outbox.get(uuid.uuid4()) is None

    [claimed] = await _claim(conn, "relay-1")
    assert isinstance(claimed, ClaimedOperation)
    assert claimed.payload == {"a": [1, {"b": "c"}]} and isinstance(claimed.payload, dict)
    assert claimed.invoice_number == number and claimed.kind == "create"
    assert claimed.created_at.tzinfo is not None


async def test_claim_takes_one_command_per_invoice_in_queue_order(conn: AsyncConnection) -> None:
    first_invoice = await seed.invoice(conn)
    other_invoice = await seed.invoice(conn)
    a1 = await seed.operation(conn, first_invoice, "create")
    b1 = await seed.operation(conn, other_invoice, "create")
    a2 = await seed.operation(conn, first_invoice, "send")

    claimed = await _claim(conn, "relay-1")
    assert {c.id for c in claimed} == {a1, b1}  # a2 waits for a1
    for c in claimed:
        assert (c.attempts, c.needs_reconcile) == (1, False)
        raw = await _raw(conn, c.id)
        assert (raw["state"], raw["lease_owner"]) == ("in_flight", "relay-1")
        assert raw["lease_expires_at"] > raw["available_at"]

    # While a1 is in flight under a live lease, nobody gets a1 or a2.
    assert await _claim(conn, "relay-2") == []

    finished = await OutboxRepository(conn).finish("relay-1", [_succeeded(a1), _succeeded(b1)])
    assert finished == {a1, b1}
    [next_one] = await _claim(conn, "relay-2")
    assert next_one.id == a2 and next_one.kind == "send"


async def test_a_later_command_waits_for_an_earlier_one_that_is_not_due_yet(
    conn: AsyncConnection,
) -> None:
    invoice_id = await seed.invoice(conn)
    earlier = await seed.operation(conn, invoice_id, "create")
    later = await seed.operation(conn, invoice_id, "send")
    await seed.sql(
        conn,
        "UPDATE operations SET available_at = now() + interval '1 hour' WHERE id = :id",
        id=earlier,
    )
    assert await _claim(conn, "relay-1") == []
    assert await OutboxRepository(conn).state(later) == "pending"


async def test_a_finished_earlier_command_no_longer_holds_the_invoice(
    conn: AsyncConnection,
) -> None:
    for final_state in ("succeeded", "failed"):
        invoice_id = await seed.invoice(conn)
        await seed.operation(conn, invoice_id, "create", state=final_state)
        later = await seed.operation(conn, invoice_id, "send")
        assert [c.id for c in await _claim(conn, f"relay-{final_state}")] == [later]


async def test_claim_order_is_due_time_then_queue_order_and_respects_the_limit(
    conn: AsyncConnection,
) -> None:
    ops = [await seed.operation(conn, await seed.invoice(conn)) for _ in range(4)]
    # Due longest ago first; the same due time goes in queue order (seq).
    for operation_id, seconds_ago in zip(ops, (10, 30, 30, 20), strict=True):
        await seed.sql(
            conn,
            "UPDATE operations SET available_at = now() - make_interval(secs => :s) WHERE id = :id",
            s=seconds_ago,
            id=operation_id,
        )
    assert [c.id for c in await _claim(conn, "relay-1", limit=1)] == [ops[1]]
    assert [c.id for c in await _claim(conn, "relay-1", limit=2)] == [ops[2], ops[3]]
    assert [c.id for c in await _claim(conn, "relay-1", limit=2)] == [ops[0]]
    assert await _claim(conn, "relay-1") == []


async def test_an_expired_lease_is_taken_over_and_must_reconcile_first(
    conn: AsyncConnection,
) -> None:
    outbox = OutboxRepository(conn)
    operation_id = await seed.operation(conn, await seed.invoice(conn))
    await _claim(conn, "relay-1")
    await seed.sql(
        conn,
        "UPDATE operations SET lease_expires_at = now() - interval '1 second' WHERE id = :id",
        id=operation_id,
    )
    [taken] = await _claim(conn, "relay-2")
    assert taken.id == operation_id
    assert taken.attempts == 2
    assert taken.needs_reconcile is True  # its first call may have reached Cybersource
    assert (await _raw(conn, operation_id))["lease_owner"] == "relay-2"

    # The relay that lost its lease is fenced off: nothing it writes lands.
    assert await outbox.reschedule("relay-1", [_later(operation_id, reconcile=False)]) == set()
    assert await outbox.renew("relay-1", [operation_id], LEASE) == set()
    assert await outbox.finish("relay-1", [_succeeded(operation_id)]) == set()
    raw = await _raw(conn, operation_id)
    assert (raw["state"], raw["lease_owner"], raw["last_error"], raw["result"]) == (
        "in_flight",
        "relay-2",
        None,
        None,
    )


async def test_reschedule_finish_and_baseline_by_a_non_owner_change_nothing(
    conn: AsyncConnection,
) -> None:
    outbox = OutboxRepository(conn)
    operation_id = await seed.operation(conn, await seed.invoice(conn))
    await _claim(conn, "relay-1")
    before = await _raw(conn, operation_id)

    assert await outbox.reschedule("relay-2", [_later(operation_id, reconcile=True)]) == set()
    assert await outbox.finish("relay-2", [_succeeded(operation_id)]) == set()
    await outbox.set_baseline(operation_id, "relay-2", {"status": "DRAFT"})
    assert await outbox.renew("relay-2", [operation_id], 3600) == set()
    assert await _raw(conn, operation_id) == before

    # The owner's heartbeat extends its lease.
    assert await outbox.renew("relay-1", [operation_id], 3600) == {operation_id}
    renewed = (await _raw(conn, operation_id))["lease_expires_at"]
    assert (renewed - before["lease_expires_at"]).total_seconds() == 3600 - LEASE

    await outbox.set_baseline(operation_id, "relay-1", {"status": "DRAFT", "sendCount": 0})
    assert (await _raw(conn, operation_id))["baseline"] == {"status": "DRAFT", "sendCount": 0}


async def test_reschedule_by_the_owner_puts_the_command_back_later(conn: AsyncConnection) -> None:
    outbox = OutboxRepository(conn)
    operation_id = await seed.operation(conn, await seed.invoice(conn))
    await _claim(conn, "relay-1")
    now = (await seed.sql(conn, "SELECT now()")).scalar_one()

    error = {"class": "ambiguous", "status": 504}
    rescheduled = await outbox.reschedule(
        "relay-1", [_later(operation_id, delay=30, error=error, reconcile=True)]
    )
    assert rescheduled == {operation_id}
    raw = await _raw(conn, operation_id)
    assert (raw["state"], raw["lease_owner"], raw["lease_expires_at"]) == ("pending", None, None)
    assert raw["last_error"] == error and raw["needs_reconcile"] is True
    assert (raw["available_at"] - now).total_seconds() == 30
    assert await _claim(conn, "relay-1") == []  # not due yet

    # A rescheduled command is no longer leased: a second reschedule or a finish lands nowhere.
    assert await outbox.reschedule("relay-1", [_later(operation_id, delay=0)]) == set()
    assert await outbox.finish("relay-1", [_succeeded(operation_id)]) == set()

    # Once set, needs_reconcile stays set through a reschedule that does not say otherwise.
    await seed.sql(
        conn, "UPDATE operations SET available_at = now() WHERE id = :id", id=operation_id
    )
    await _claim(conn, "relay-1")
    assert await outbox.reschedule("relay-1", [_later(operation_id, delay=0)]) == {operation_id}
    assert (await _raw(conn, operation_id))["needs_reconcile"] is True
    assert await outbox.reschedule("relay-1", []) == set()


async def test_finish_by_the_owner_is_final(conn: AsyncConnection) -> None:
    outbox = OutboxRepository(conn)
    ok = await seed.operation(conn, await seed.invoice(conn))
    bad = await seed.operation(conn, await seed.invoice(conn))
    await _claim(conn, "relay-1")

    error = {"class": "rejected", "status": 400}
    finished = await outbox.finish("relay-1", [_succeeded(ok), Finish(bad, "failed", None, error)])
    assert finished == {ok, bad}
    raw_ok, raw_bad = await _raw(conn, ok), await _raw(conn, bad)
    assert (raw_ok["state"], raw_ok["result"], raw_ok["last_error"]) == (
        "succeeded",
        {"status": "SENT"},
        None,
    )
    assert (raw_bad["state"], raw_bad["last_error"]) == ("failed", error)
    for raw in (raw_ok, raw_bad):
        assert raw["lease_owner"] is None and raw["completed_at"] is not None
    assert await outbox.finish("relay-1", [_succeeded(ok)]) == set()  # not twice
    assert await outbox.finish("relay-1", []) == set()
    assert await _claim(conn, "relay-1") == []


async def test_release_gives_back_only_the_stopping_relays_commands(conn: AsyncConnection) -> None:
    outbox = OutboxRepository(conn)
    mine = [await seed.operation(conn, await seed.invoice(conn)) for _ in range(2)]
    await _claim(conn, "relay-1")
    theirs = await seed.operation(conn, await seed.invoice(conn))
    await _claim(conn, "relay-2")

    assert await outbox.release("relay-1") == 2
    for operation_id in mine:
        raw = await _raw(conn, operation_id)
        assert (raw["state"], raw["lease_owner"], raw["lease_expires_at"]) == (
            "pending",
            None,
            None,
        )
        assert raw["attempts"] == 0  # the cut-off attempt does not count
        assert raw["needs_reconcile"] is True  # but its call may have reached Cybersource
    assert (await _raw(conn, theirs))["lease_owner"] == "relay-2"
    assert await outbox.release("relay-1") == 0

    # Released commands can be claimed at once by another relay.
    assert {c.id for c in await _claim(conn, "relay-3")} == set(mine)


async def test_requeue_failed_only_from_failed(conn: AsyncConnection) -> None:
    outbox = OutboxRepository(conn)
    failed = await seed.operation(conn, await seed.invoice(conn))
    await _claim(conn, "relay-1")
    await outbox.finish(
        "relay-1", [Finish(failed, "failed", {"partial": 1}, {"class": "rejected"})]
    )
    await seed.sql(conn, "UPDATE operations SET attempts = 7 WHERE id = :id", id=failed)

    pending = await seed.operation(conn, await seed.invoice(conn))
    in_flight = await seed.operation(conn, await seed.invoice(conn))
    succeeded = await seed.operation(conn, await seed.invoice(conn), state="succeeded")
    await seed.sql(conn, "UPDATE operations SET state = 'in_flight' WHERE id = :id", id=in_flight)
    for operation_id in (pending, in_flight, succeeded):
        before = await _raw(conn, operation_id)
        assert await outbox.requeue_failed(operation_id) is False
        assert await _raw(conn, operation_id) == before
    assert await outbox.requeue_failed(uuid.uuid4()) is False

    assert await outbox.requeue_failed(failed) is True
    raw = await _raw(conn, failed)
    assert (raw["state"], raw["attempts"], raw["completed_at"], raw["result"]) == (
        "pending",
        0,
        None,
        None,
    )
    assert await outbox.requeue_failed(failed) is False  # now pending
    assert failed in {c.id for c in await _claim(conn, "relay-2")}


async def test_has_unfinished_counts_pending_and_in_flight_only(conn: AsyncConnection) -> None:
    outbox = OutboxRepository(conn)
    for state, unfinished in (
        (None, True),
        ("in_flight", True),
        ("succeeded", False),
        ("failed", False),
    ):
        invoice_id = await seed.invoice(conn)
        await seed.operation(conn, invoice_id, state=state)
        assert await outbox.has_unfinished(invoice_id) is unfinished, state
    assert await outbox.has_unfinished(await seed.invoice(conn)) is False


async def test_list_by_seq_filters_and_pages_in_queue_order(conn: AsyncConnection) -> None:
    outbox = OutboxRepository(conn)
    invoice_id = await seed.invoice(conn)
    ops = [
        await seed.operation(conn, invoice_id, state=state)
        for state in ("failed", "succeeded", "failed", None, "failed")
    ]
    everything = await outbox.list_by_seq(state=None, after_seq=None, limit=50)
    assert [row.id for row in everything] == ops
    assert [r.seq for r in everything] == sorted(r.seq for r in everything)

    failed = await outbox.list_by_seq(state="failed", after_seq=None, limit=50)
    assert [row.id for row in failed] == [ops[0], ops[2], ops[4]]
    first_page = await outbox.list_by_seq(state="failed", after_seq=None, limit=2)
    assert [row.id for row in first_page] == [ops[0], ops[2]]
    rest = await outbox.list_by_seq(state="failed", after_seq=first_page[-1].seq, limit=2)
    assert [row.id for row in rest] == [ops[4]]
    assert await outbox.list_by_seq(state="failed", after_seq=rest[-1].seq, limit=2) == []


async def test_depth_counts_states_and_ages_the_oldest_unfinished(conn: AsyncConnection) -> None:
    outbox = OutboxRepository(conn)
    assert await outbox.depth() == ({}, 0.0)
    invoice_id = await seed.invoice(conn)
    old = await seed.operation(conn, invoice_id)
    await seed.operation(conn, invoice_id)
    await seed.operation(conn, invoice_id, state="failed")
    done = await seed.operation(conn, invoice_id, state="succeeded")
    for operation_id, age in ((old, 90), (done, 900)):  # a finished command does not count
        await seed.sql(
            conn,
            "UPDATE operations SET created_at = now() - make_interval(secs => :a) WHERE id = :id",
            a=age,
            id=operation_id,
        )
    counts, age = await outbox.depth()
    assert counts == {"pending": 2, "failed": 1, "succeeded": 1}
    assert age == 90.0

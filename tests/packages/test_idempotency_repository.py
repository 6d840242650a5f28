"""IdempotencyRepository on a real database: one claim per client and key, the stored answer is
written once, and the purge takes only old records that no running request holds."""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncConnection

from app.idempotency.repository import IdempotencyRecord, IdempotencyRepository
from tests.packages import seed


async def _claim(
    repo: IdempotencyRepository, client: str, key: str, *, lock: float = 60.0, fp: str = "fp-1"
) -> bool:
    return await repo.claim(
        client=client,
        key=key,
        fingerprint=fp,
        method="POST",
        path="/v1/invoices",
        lock_seconds=lock,
    )


async def _age(conn: AsyncConnection, key: str, *, hours: float, lock_from_now: float) -> None:
    await seed.sql(
        conn,
        "UPDATE idempotency_records SET created_at = now() - make_interval(secs => :age), "
        "locked_until = now() + make_interval(secs => :lock) WHERE key = :key",
        age=hours * 3600,
        lock=lock_from_now,
        key=key,
    )


async def _keys(conn: AsyncConnection) -> set[str]:
    return set((await seed.sql(conn, "SELECT key FROM idempotency_records")).scalars().all())


async def test_a_key_is_claimed_once_per_client(conn: AsyncConnection) -> None:
    repo = IdempotencyRepository(conn)
    key = str(uuid.uuid4())
    assert await _claim(repo, "billing", key) is True
    assert await _claim(repo, "billing", key, fp="another request") is False
    assert await _claim(repo, "shop", key) is True  # keys are per client

    record = await repo.get("billing", key)
    assert isinstance(record, IdempotencyRecord)
    assert (record.fingerprint, record.method, record.path, record.state) == (
        "fp-1",
        "POST",
        "/v1/invoices",
        "processing",
    )  # the losing claim changed nothing
    assert record.operation_id is None
    assert (record.response_status, record.response_headers, record.response_body) == (
        None,
        None,
        None,
    )
    assert await repo.get("billing", str(uuid.uuid4())) is None
    assert await repo.get("auditor", key) is None

    locked = await seed.sql(
        conn,
        "SELECT EXTRACT(EPOCH FROM locked_until - now()) FROM idempotency_records "
        "WHERE client = 'billing' AND key = :k",
        k=key,
    )
    assert float(locked.scalar_one()) == 60.0


async def test_attach_operation_and_complete_store_typed_values(conn: AsyncConnection) -> None:
    repo = IdempotencyRepository(conn)
    key = str(uuid.uuid4())
    await _claim(repo, "billing", key)
    operation_id = uuid.uuid4()
    await repo.attach_operation("billing", key, operation_id)
    body = {"invoiceNumber": "INV-1", "amount": "10.00", "items": [1, None, True]}
    await repo.complete(
        "billing", key, status=201, headers={"Location": "/v1/invoices/INV-1"}, body=body
    )

    record = await repo.get("billing", key)
    assert record is not None
    assert isinstance(record.operation_id, uuid.UUID) and record.operation_id == operation_id
    assert record.state == "completed"
    assert record.response_status == 201
    assert record.response_headers == {"Location": "/v1/invoices/INV-1"}
    assert record.response_body == body and isinstance(record.response_body, dict)


async def test_complete_writes_the_answer_only_once(conn: AsyncConnection) -> None:
    repo = IdempotencyRepository(conn)
    key = str(uuid.uuid4())
    await _claim(repo, "billing", key)
    await repo.complete("billing", key, status=200, headers={}, body=["first"])
    await repo.complete("billing", key, status=500, headers={"X": "y"}, body=["second"])
    record = await repo.get("billing", key)
    assert record is not None
    assert (record.response_status, record.response_headers, record.response_body) == (
        200,
        {},
        ["first"],
    )
    # Another client's record with the same key is not touched.
    await _claim(repo, "shop", key)
    other = await repo.get("shop", key)
    assert other is not None and other.state == "processing" and other.response_status is None


async def test_purge_takes_old_records_that_no_request_holds(conn: AsyncConnection) -> None:
    repo = IdempotencyRepository(conn)
    for key in ("old-done", "old-abandoned", "old-held", "new-done", "new-abandoned"):
        await _claim(repo, "billing", key)
    await repo.complete("billing", "old-done", status=200, headers={}, body={})
    await repo.complete("billing", "new-done", status=200, headers={}, body={})
    await _age(conn, "old-done", hours=30, lock_from_now=-3600)
    await _age(conn, "old-abandoned", hours=30, lock_from_now=-1)  # its request died
    await _age(conn, "old-held", hours=30, lock_from_now=600)  # still held by its request
    await _age(conn, "new-done", hours=1, lock_from_now=-3000)
    await _age(conn, "new-abandoned", hours=1, lock_from_now=-3000)

    assert await repo.purge(older_than_hours=24, batch=100) == 2
    assert await _keys(conn) == {"old-held", "new-done", "new-abandoned"}
    assert await repo.purge(older_than_hours=24, batch=100) == 0


async def test_purge_deletes_at_most_one_batch(conn: AsyncConnection) -> None:
    repo = IdempotencyRepository(conn)
    keys = [f"old-{n}" for n in range(5)]
    for key in keys:
        await _claim(repo, "billing", key)
        await repo.complete("billing", key, status=200, headers={}, body=None)
        await _age(conn, key, hours=48, lock_from_now=-60)
    assert [await repo.purge(older_than_hours=24, batch=2) for _ in range(4)] == [2, 2, 1, 0]
    assert await _keys(conn) == set()

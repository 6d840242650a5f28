"""JSONB decoding with orjson keeps what Cybersource's bodies hold exactly."""

from __future__ import annotations

from decimal import Decimal

from app.db import async_url, json_dumps, json_loads


def test_json_round_trip_keeps_cybersource_values():
    body = {
        "status": "PAID",
        "amount": "10.00",
        "history": [{"event": "SEND"}],
        "quantity": 999_999_999,
        "definitionId": 9_223_372_036_854_775_807,
        "balance": 2623.64,
        "name": "Zoë",
    }
    assert json_loads(json_dumps(body)) == body
    assert Decimal(str(json_loads('{"totalAmount": 11955.45}')["totalAmount"])) == Decimal(
        "11955.45"
    )


def test_async_url_accepts_plain_postgres_urls():
    assert async_url("postgres://u@h/db") == "postgresql+asyncpg://u@h/db"
    assert async_url("postgresql+asyncpg://u@h/db") == "postgresql+asyncpg://u@h/db"

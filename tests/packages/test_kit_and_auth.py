"""Unit tests of the shared mechanics: pagination cursors (app/kit/cursors), typed rows
(app/kit/sql.as_row) and the one owner-or-admin check (app/auth/principal.Caller). No database."""

from __future__ import annotations

import base64
import dataclasses
from datetime import UTC, datetime, timedelta, timezone

import pytest

from app import errors
from app.auth.principal import ADMIN, READ, WRITE, Caller
from app.kit.cursors import decode_ids, decode_time_and_id, encode_cursor
from app.kit.sql import as_row

BIGINT_MAX = 2**63 - 1


def _raw(text: str | bytes) -> str:
    """A cursor someone made by hand: the same encoding, any content."""
    data = text.encode() if isinstance(text, str) else text
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


# --- cursors --------------------------------------------------------------------------------------


@pytest.mark.parametrize("ids", [(0,), (1,), (BIGINT_MAX,), (7, 123456789), (BIGINT_MAX, 0)])
def test_id_cursors_round_trip(ids: tuple[int, ...]) -> None:
    cursor = encode_cursor(*ids)
    assert "=" not in cursor and "|" not in cursor  # opaque and URL-safe
    assert decode_ids(cursor, len(ids)) == ids


@pytest.mark.parametrize(
    "created",
    [
        datetime(2026, 11, 25, 12, 30, 45, 123456, tzinfo=UTC),
        datetime(2026, 1, 1, tzinfo=timezone(timedelta(hours=-5))),
        datetime(1999, 12, 31, 23, 59, 59, tzinfo=timezone(timedelta(hours=5, minutes=30))),
    ],
)
def test_time_and_id_cursors_round_trip(created: datetime) -> None:
    decoded = decode_time_and_id(encode_cursor(created, 42))
    assert decoded == (created, 42)
    assert decoded[0].utcoffset() == created.utcoffset()


@pytest.mark.parametrize(
    "cursor",
    [
        "",
        "!!!!",
        "a",  # not a whole base64 quantum
        _raw(b"\xff\xfe\xfd"),  # not UTF-8
        _raw("abc"),
        _raw("-1"),
        _raw("+1"),
        _raw(" 1"),
        _raw("1.0"),
        _raw("1e3"),
        _raw("١٢٣"),  # digits, but not ASCII ones
        _raw(str(BIGINT_MAX + 1)),  # beyond a bigint
        _raw("1" * 20),
        _raw("1|2"),  # two parts where one is expected
    ],
)
def test_forged_id_cursors_are_malformed_requests(cursor: str) -> None:
    with pytest.raises(errors.MalformedRequest):
        decode_ids(cursor, 1)


@pytest.mark.parametrize(
    ("cursor", "count"),
    [(encode_cursor(1), 2), (encode_cursor(1, 2, 3), 2), (_raw("1||2"), 2), (_raw("1|"), 2)],
)
def test_id_cursors_with_the_wrong_number_of_parts_are_malformed(cursor: str, count: int) -> None:
    with pytest.raises(errors.MalformedRequest):
        decode_ids(cursor, count)


@pytest.mark.parametrize(
    "cursor",
    [
        _raw("2026-11-25T12:00:00|5"),  # no time zone: PostgreSQL would read it in its own
        _raw("yesterday|5"),
        _raw("2026-13-45T12:00:00+00:00|5"),
        _raw("2026-11-25T12:00:00+00:00|x"),
        _raw(f"2026-11-25T12:00:00+00:00|{BIGINT_MAX + 1}"),
        _raw("2026-11-25T12:00:00+00:00"),
        _raw("2026-11-25T12:00:00+00:00|5|6"),
        encode_cursor(5),
        "%%%",
    ],
)
def test_forged_time_cursors_are_malformed_requests(cursor: str) -> None:
    with pytest.raises(errors.MalformedRequest):
        decode_time_and_id(cursor)


def test_a_malformed_cursor_is_a_400_problem() -> None:
    with pytest.raises(errors.MalformedRequest) as refused:
        decode_ids("not a cursor", 2)
    assert refused.value.status_code == 400
    assert refused.value.problem()["code"] == "malformed_request"


# --- typed rows -----------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class _Narrow:
    id: int
    name: str


@dataclasses.dataclass(frozen=True, slots=True)
class _Wide:
    id: int
    name: str
    extra: dict


@dataclasses.dataclass(frozen=True, slots=True)
class _WideView(_Wide):
    pending: list


def test_as_row_takes_the_declared_columns_and_ignores_the_rest() -> None:
    columns = {"id": 1, "name": "a", "extra": {"k": [1]}, "pending": ["x"], "unrelated": object()}
    assert as_row(_Narrow, columns) == _Narrow(1, "a")
    assert as_row(_Wide, columns) == _Wide(1, "a", {"k": [1]})
    assert as_row(_WideView, columns) == _WideView(
        1, "a", {"k": [1]}, ["x"]
    )  # inherited fields too
    # Each row type keeps its own columns (the field-name cache is per type).
    assert as_row(_Narrow, {"id": 2, "name": "b", "extra": None}) == _Narrow(2, "b")


def test_as_row_refuses_a_missing_column_and_returns_frozen_rows() -> None:
    with pytest.raises(KeyError):
        as_row(_Wide, {"id": 1, "name": "a"})
    row = as_row(_Narrow, {"id": 1, "name": "a"})
    with pytest.raises(dataclasses.FrozenInstanceError):
        row.name = "b"  # type: ignore[misc]


# --- the owner-or-admin check ---------------------------------------------------------------------

WRITER = Caller("billing", frozenset({READ, WRITE}))
ADMIN_CALLER = Caller("ops", frozenset({READ, WRITE, ADMIN}))


def test_a_caller_sees_its_own_and_an_admin_sees_all() -> None:
    assert WRITER.may_see("billing", "default")
    assert not WRITER.may_see("shop", "default")
    assert not WRITER.may_see("billing-2", "default")  # the owner matches exactly
    assert ADMIN_CALLER.may_see("billing", "default") and ADMIN_CALLER.may_see("ops", "default")
    assert not WRITER.is_admin and ADMIN_CALLER.is_admin


def test_nobody_sees_a_merchant_profile_it_may_not_act_for() -> None:
    eu_admin = Caller("ops", frozenset({ADMIN}), profiles=frozenset({"eu"}))
    assert eu_admin.may_see("billing", "eu")
    assert not eu_admin.may_see("billing", "default")
    assert not WRITER.may_see("billing", "eu")  # default: the default profile only
    both = Caller("billing", frozenset({READ}), profiles=frozenset({"default", "eu"}))
    assert both.may_see("billing", "eu") and both.may_see("billing", "default")


def test_the_owner_filter_is_the_callers_own_unless_admin() -> None:
    assert WRITER.owner_filter() == "billing"
    assert WRITER.owner_filter("shop") == "billing"  # asking for another owner changes nothing
    assert ADMIN_CALLER.owner_filter() is None  # every owner
    assert ADMIN_CALLER.owner_filter("shop") == "shop"

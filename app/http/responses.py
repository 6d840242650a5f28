"""How answers are written: one serialisation for read hot paths, one for idempotent outcomes."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel

from app.errors import PROBLEM_JSON
from app.idempotency.executor import Outcome
from app.idempotency.keys import REPLAYED_HEADER


def _decimal_text(value: Any) -> str:
    if isinstance(value, Decimal) and value.is_finite():
        return format(value, "f")
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


class PassThroughJSON(JSONResponse):
    """A body passed through from Cybersource: its numbers were read as `Decimal` (never a float),
    and are answered as decimal text (`1.50` stays `"1.50"`), the form the facade sends amounts
    in."""

    def render(self, content: Any) -> bytes:
        return json.dumps(
            content,
            ensure_ascii=False,
            allow_nan=False,
            separators=(",", ":"),
            default=_decimal_text,
        ).encode("utf-8")


def as_json(model: BaseModel) -> Response:
    """Serialise once, straight from the model (a read hot path: no second validation by
    FastAPI)."""
    return Response(model.model_dump_json(), media_type="application/json")


def respond(answer: tuple[Outcome, bool]) -> JSONResponse:
    """An idempotent request's answer; a replayed one says so in `Idempotent-Replayed`."""
    outcome, replayed = answer
    headers = dict(outcome.headers)
    if replayed:
        headers[REPLAYED_HEADER] = "true"
    media = PROBLEM_JSON if outcome.status >= 400 else "application/json"
    return PassThroughJSON(
        outcome.body, status_code=outcome.status, headers=headers, media_type=media
    )

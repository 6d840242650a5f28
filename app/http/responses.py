"""How answers are written: one serialisation for read hot paths, one for idempotent outcomes."""

from __future__ import annotations

from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel

from app.errors import PROBLEM_JSON
from app.idempotency.executor import Outcome
from app.idempotency.keys import REPLAYED_HEADER


def as_json(model: BaseModel) -> Response:
    """Serialise once, straight from the model (a read hot path: no second validation by FastAPI)."""
    return Response(model.model_dump_json(), media_type="application/json")


def respond(answer: tuple[Outcome, bool]) -> JSONResponse:
    """An idempotent request's answer; a replayed one says so in `Idempotent-Replayed`."""
    outcome, replayed = answer
    headers = dict(outcome.headers)
    if replayed:
        headers[REPLAYED_HEADER] = "true"
    media = PROBLEM_JSON if outcome.status >= 400 else "application/json"
    return JSONResponse(outcome.body, status_code=outcome.status, headers=headers, media_type=media)

"""Answers that pass Cybersource's bodies through (invoice settings): the client reads numbers as
`Decimal`, never float; the facade answers them as decimal text, as it sends amounts, and never
fails on them (starlette's JSONResponse raised TypeError: a 500)."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from app.http.responses import PassThroughJSON, respond
from app.idempotency.executor import Outcome
from app.idempotency.keys import fingerprint


def test_an_idempotent_answer_with_decimals_is_decimal_text():
    body = {"rate": Decimal("1.50"), "big": Decimal("1E+2"), "n": 3, "name": "Zoë", "none": None}
    response = respond((Outcome(200, body, {}), True))
    assert response.status_code == 200 and response.headers["Idempotent-Replayed"] == "true"
    assert json.loads(response.body) == {
        "rate": "1.50",
        "big": "100",
        "n": 3,
        "name": "Zoë",
        "none": None,
    }


def test_a_pass_through_answer_refuses_what_is_not_json():
    with pytest.raises(TypeError):
        PassThroughJSON({"nan": Decimal("NaN")})
    with pytest.raises(ValueError):
        PassThroughJSON({"nan": float("nan")})


def test_a_fingerprint_reads_decimals_as_the_text_sent_upstream():
    def fp(body: object) -> str:
        return fingerprint("PUT", "/v1/invoice-settings", body)

    assert fp({"rate": Decimal("1.50")}) == fp({"rate": "1.50"})  # sent upstream as "1.50" both
    assert fp({"rate": Decimal("1.50")}) != fp({"rate": Decimal("1.5")})
    assert fp({"rate": Decimal("2.25e1")}) == fp({"rate": Decimal("22.5")})
    with pytest.raises(TypeError):
        fp({"rate": Decimal("NaN")})

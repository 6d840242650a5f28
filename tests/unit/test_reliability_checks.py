"""The reliability suite's own judgement (issue 15): a retrying caller counts a "nothing was
applied" answer as false only when the key was new.

The suite's `database_restart` scenario once counted a wrong answer in about one run of twenty: the
end phase sends every key again, and right after the last restart the first of those replays met a
pooled connection that had died with the database (503 "nothing was applied", true of that attempt);
its retry replayed the key's first answer, as it should. These tests pin both sides.
"""

from __future__ import annotations

import httpx

from reliability.callers import Answer, Caller, Step, Story, Tally

NOTHING_APPLIED = {
    "status": 503,
    "code": "service_unavailable",
    "detail": "The database is unavailable; nothing was applied. Retry with the same "
    "Idempotency-Key.",
}


def flaky_then_replaying() -> httpx.MockTransport:
    """First attempt: 503 "nothing was applied"; then the key's stored 201, replayed."""
    attempts = 0

    def answer(request: httpx.Request) -> httpx.Response:
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            return httpx.Response(503, json=NOTHING_APPLIED, headers={"Retry-After": "0"})
        return httpx.Response(
            201, json={"invoiceNumber": "INV00000001"}, headers={"Idempotent-Replayed": "true"}
        )

    return httpx.MockTransport(answer)


async def test_a_new_key_replayed_after_nothing_was_applied_is_a_wrong_answer():
    tally = Tally()
    async with httpx.AsyncClient(transport=flaky_then_replaying()) as http:
        caller = Caller(http, ["http://api"], tally, seed=1)
        answer = await caller.perform("POST", "/v1/invoices", "k-1", {"x": 1})
    assert answer.outcome == "success"
    assert tally.wrong_answers == 1
    assert "nothing was applied" in tally.notes[0]


async def test_sending_an_answered_key_again_may_meet_the_database_away_first():
    tally = Tally()
    story = Story("rel-test-00001", ("create",), number="INV00000001")
    step = Step("create", "k-2", Answer("success", 201, number="INV00000001"))
    story.steps.append(step)
    async with httpx.AsyncClient(transport=flaky_then_replaying()) as http:
        caller = Caller(http, ["http://api"], tally, seed=1)
        assert await caller.replay_matches(story, step)
    assert tally.wrong_answers == 0, tally.notes

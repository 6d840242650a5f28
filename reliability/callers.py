"""Retrying callers, as a careful client of the facade behaves: one Idempotency-Key per intended
change, sent again unchanged until a final answer comes (5xx 503, 409 key in use, a dropped
connection: retry; 202: follow the operation), switching API when one does not answer.

Each caller plays stories: create an invoice, then publish, send, resend or cancel it, one step
after the other, stopping at the first step refused. Every step's final answer is kept for the end
checks.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx

from reliability.stack import API_KEY

PLANS: tuple[tuple[str, ...], ...] = (
    ("create",),
    ("create", "send"),
    ("create", "publish", "send"),
    ("create", "send", "send"),
    ("create", "publish", "cancel"),
    ("create", "send", "cancel"),
)
FINAL_STATES = {"succeeded", "failed", "superseded", "unknown"}
# How long one step may take before the caller gives up on it (then it counts as lost).
STEP_DEADLINE_SECONDS = 240.0


@dataclass
class Answer:
    outcome: str  # success | failure | unknown | none (no final answer within the deadline)
    status: int
    code: str | None = None
    operation_id: str | None = None
    number: str | None = None


@dataclass
class Step:
    kind: str
    key: str
    answer: Answer | None = None


@dataclass
class Story:
    tag: str
    plan: tuple[str, ...]
    number: str | None = None
    steps: list[Step] = field(default_factory=list)


@dataclass
class Tally:
    """What callers see on the way, besides the final answers."""

    requests: int = 0
    server_errors: int = 0
    wrong_answers: int = 0
    notes: list[str] = field(default_factory=list)

    def wrong(self, note: str) -> None:
        self.wrong_answers += 1
        self.notes.append(note)


def invoice_body(tag: str) -> dict[str, Any]:
    return {
        "customerInformation": {"name": "Reliability Caller", "email": "payer@example.com"},
        "invoiceInformation": {
            "description": tag,
            "dueDate": "2027-12-31",
            "deliveryMode": "email",
        },
        "orderInformation": {"amountDetails": {"totalAmount": "42.00", "currency": "USD"}},
    }


class Caller:
    def __init__(self, http: httpx.AsyncClient, urls: list[str], tally: Tally, seed: int) -> None:
        self.http = http
        self.urls = urls
        self.tally = tally
        self.random = random.Random(seed)  # noqa: S311 (a workload, not cryptography)
        self.turn = seed

    def _url(self) -> str:
        return self.urls[self.turn % len(self.urls)]

    async def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response | None:
        """One request to one API; None when it did not answer (then the next call tries the
        other)."""
        self.tally.requests += 1
        headers = {"Authorization": f"Bearer {API_KEY}", **kwargs.pop("headers", {})}
        try:
            response = await self.http.request(
                method, self._url() + path, headers=headers, **kwargs
            )
        except httpx.TransportError:
            self.turn += 1
            return None
        if response.status_code >= 500 and response.status_code not in (502, 503):
            self.tally.server_errors += 1
            self.tally.notes.append(
                f"{response.status_code} on {method} {path}: {response.text[:200]}"
            )
            self.turn += 1
            return None
        return response

    async def _pause(self, response: httpx.Response | None) -> None:
        retry_after = 0.2
        if response is not None and response.headers.get("retry-after", "").isdigit():
            retry_after = min(float(response.headers["retry-after"]), 1.0)
        await asyncio.sleep(retry_after * self.random.uniform(0.5, 1.0))

    async def perform(
        self, method: str, path: str, key: str, body: Any, *, first_use: bool = True
    ) -> Answer:
        """Send one intended change until a final answer comes. `first_use`: the key is new, so a
        replay after answers that all said "nothing was applied" exposes one of them as false. A
        key sent again after it was answered (`replay_matches`) has its record already: there a
        "nothing was applied" from an attempt that met the database away is true of that attempt,
        and the replay that follows is what the caller asked for."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + STEP_DEADLINE_SECONDS
        # Whether some attempt said "nothing was applied", and whether any attempt may have been
        # applied without saying so (no answer, or an answer that says it may have been).
        nothing_applied = False
        maybe_applied = False
        seen: list[str] = []  # what each attempt got, for the notes
        while loop.time() < deadline:
            response = await self._request(
                method,
                path,
                json=body,
                headers={"Idempotency-Key": key, "Prefer": "wait=5"},
                timeout=30.0,
            )
            if response is None:
                maybe_applied = True
                seen.append("no answer")
                await self._pause(None)
                continue
            payload = _json(response)
            code = payload.get("code") if isinstance(payload, dict) else None
            seen.append(f"{response.status_code} {str(payload.get('detail', ''))[:90]}")
            if response.status_code == 503:
                denied = "nothing was applied" in str(payload.get("detail", ""))
                nothing_applied |= denied
                maybe_applied |= not denied
                await self._pause(response)
                continue
            if response.status_code == 409 and code == "idempotency_key_in_use":
                await self._pause(response)
                continue
            replayed = response.headers.get("idempotent-replayed") == "true"
            if first_use and nothing_applied and not maybe_applied and replayed:
                # Every attempt that got an answer said nothing was applied, and none went
                # unanswered, yet the key has an answer (or a command) behind it: one of those
                # answers was false.
                self.tally.wrong(
                    f"503 'nothing was applied' then a replay for {method} {path} "
                    f"(key {key}): {seen}"
                )
            if response.status_code == 202:
                return await self.follow(str(payload["id"]), deadline)
            if response.is_success:
                return Answer("success", response.status_code, number=payload.get("invoiceNumber"))
            return Answer(
                "failure", response.status_code, code=code, operation_id=payload.get("operationId")
            )
        return Answer("none", 0)

    async def follow(self, operation_id: str, deadline: float) -> Answer:
        """A 202: poll the operation until it is final."""
        loop = asyncio.get_running_loop()
        while loop.time() < deadline:
            response = await self._request("GET", f"/v1/operations/{operation_id}", timeout=10.0)
            if response is not None and response.status_code == 200:
                operation = response.json()
                state = operation["state"]
                if state in FINAL_STATES:
                    outcome = {"succeeded": "success", "unknown": "unknown"}.get(state, "failure")
                    return Answer(
                        outcome,
                        202,
                        code=state,
                        operation_id=operation_id,
                        number=operation["invoiceNumber"],
                    )
            await asyncio.sleep(0.3)
        return Answer("none", 202, operation_id=operation_id)

    async def play(self, story: Story) -> None:
        for kind in story.plan:
            step = Step(kind, str(uuid.uuid4()))
            story.steps.append(step)
            if kind == "create":
                step.answer = await self.perform(
                    "POST", "/v1/invoices", step.key, invoice_body(story.tag)
                )
                story.number = step.answer.number
            else:
                assert story.number is not None
                step.answer = await self.perform(
                    "POST", f"/v1/invoices/{story.number}/{kind}", step.key, None
                )
            if step.answer.outcome != "success":
                return

    async def replay_matches(self, story: Story, step: Step) -> bool:
        """The same key again, after everything settled: the answer must agree with the first."""
        assert step.answer is not None
        if step.kind == "create":
            path, body = "/v1/invoices", invoice_body(story.tag)
        else:
            path, body = f"/v1/invoices/{story.number}/{step.kind}", None
        answer = await self.perform("POST", path, step.key, body, first_use=False)
        first = step.answer
        if first.outcome == "success":
            return answer.outcome == "success" and answer.number in (None, story.number)
        if first.outcome == "failure" and first.status != 202:
            return (answer.outcome, answer.status) == ("failure", first.status)
        return answer.outcome == first.outcome


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        payload = response.json()
    except ValueError:
        return {}
    return payload if isinstance(payload, dict) else {}


def stories(scenario: str, count: int, seed: int) -> list[Story]:
    rng = random.Random(seed)  # noqa: S311 (a workload, not cryptography)
    return [
        Story(f"rel-{scenario}-{n:05d}-{uuid.uuid4().hex[:8]}", rng.choice(PLANS))
        for n in range(count)
    ]


async def run_callers(
    urls: list[str], all_stories: list[Story], callers: int, tally: Tally, seed: int
) -> None:
    """`callers` callers share the stories, each playing one story at a time."""
    queue: asyncio.Queue[Story] = asyncio.Queue()
    for story in all_stories:
        queue.put_nowait(story)
    limits = httpx.Limits(max_connections=callers * 2, max_keepalive_connections=callers)
    async with httpx.AsyncClient(limits=limits) as http:

        async def one(n: int) -> None:
            caller = Caller(http, urls, tally, seed * 1000 + n)
            while not queue.empty():
                await caller.play(queue.get_nowait())

        await asyncio.gather(*(one(n) for n in range(callers)))

"""The six scenarios, one after the other on the same processes (the simulator, two APIs, two
relays) and database: each starts from a reset simulator, has retrying callers play stories of its
own (their tags name the scenario) while its faults happen; then the faults stop, the outbox drains,
and the end checks count what went wrong with that scenario's stories.
"""

from __future__ import annotations

import asyncio
import random
import signal
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import httpx

from reliability import checks
from reliability.callers import Caller, Step, Story, Tally, invoice_body, run_callers, stories
from reliability.cluster import Cluster
from reliability.stack import Process, Stack

DRAIN_SECONDS = 180.0
MORE_STORIES_SECONDS = 45.0
# ~30 % of invoicing calls meet a fault (rules are tried in order; the first that fires wins).
UPSTREAM_FAULTS: list[dict[str, Any]] = [
    {"id": "503", "path": "/invoicing/*", "probability": 0.08, "status": 503},
    {"id": "429", "path": "/invoicing/*", "probability": 0.05, "status": 429, "retry_after": "1"},
    {"id": "502", "path": "/invoicing/*", "probability": 0.03, "status": 502},
    {
        "id": "slow",
        "path": "/invoicing/*",
        "probability": 0.05,
        "action": "latency",
        "latency_ms": 400,
    },
    {"id": "hang", "path": "/invoicing/*", "probability": 0.02, "action": "hang", "hang_s": 4},
    {
        "id": "drop",
        "path": "/invoicing/*",
        "probability": 0.03,
        "action": "drop",
        "stage": "nothing",
    },
    {"id": "lost-answer", "path": "/invoicing/*", "probability": 0.05, "action": "apply_then_drop"},
]
# Keeps calls in flight long enough that a kill or a stop meets some of them.
SLOW_CALLS: list[dict[str, Any]] = [
    {
        "id": "slow",
        "path": "/invoicing/*",
        "probability": 0.5,
        "action": "latency",
        "latency_ms": 300,
    },
]


@dataclass
class Result:
    name: str
    operations: int = 0
    faults_injected: int = 0
    duplicates: int = 0
    lost: int = 0
    mismatched: int = 0
    wrong_answers: int = 0
    server_errors: int = 0
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        return {
            "operations": self.operations,
            "faults_injected": self.faults_injected,
            "duplicates": self.duplicates,
            "lost": self.lost,
            "mismatched": self.mismatched,
            "wrong_answers": self.wrong_answers,
            "server_errors": self.server_errors,
        }


@dataclass
class Size:
    stories: int
    callers: int


# A fault-maker: runs until `stop`, counts what it did in `done[0]` as it goes, returns the count.
Chaos = Callable[[Stack, Cluster, asyncio.Event, list[int]], Coroutine[Any, Any, int]]


async def add_faults(stack: Stack, rules: list[dict[str, Any]]) -> None:
    async with httpx.AsyncClient(timeout=10.0) as client:
        response = await client.post(f"{stack.simulator_url}/__sim/faults", json=rules)
        response.raise_for_status()


async def clear_faults(stack: Stack) -> int:
    """Remove every fault rule; returns how often they fired."""
    async with httpx.AsyncClient(timeout=10.0) as client:
        rules = (await client.get(f"{stack.simulator_url}/__sim/faults")).json()
        await client.delete(f"{stack.simulator_url}/__sim/faults")
    return sum(int(rule["hits"]) for rule in rules)


async def drain(database_url: str, scenario: str) -> dict[str, int]:
    """Wait for the scenario's commands to finish (none pending or in flight); returns what is
    left."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + DRAIN_SECONDS
    while True:
        left = await checks.unfinished_commands(database_url, f"rel-{scenario}-")
        busy = {state: n for state, n in left.items() if state != "unknown"}
        if not busy or loop.time() > deadline:
            return left
        await asyncio.sleep(0.5)


async def every(stop: asyncio.Event, seconds: float, action: Callable[[], Awaitable[None]]) -> int:
    """Run `action` every `seconds` until `stop`; returns how many times it ran."""
    count = 0
    while True:
        try:
            await asyncio.wait_for(stop.wait(), seconds)
            return count
        except TimeoutError:
            pass
        await action()
        count += 1


async def kill_and_restart(stack: Stack, process: Process, sig: signal.Signals) -> None:
    process.signal(sig)
    await process.wait_exit(40)
    await asyncio.sleep(0.5)
    await stack.restart(process)


def kills(pick: Callable[[Stack], list[Process]], sig: signal.Signals, seconds: float) -> Chaos:
    """Every `seconds` one process of `pick` gets `sig` and is started again in the background,
    while the others of its kind are up (so one of them always serves); the last restart is awaited
    at the end."""

    async def chaos(stack: Stack, cluster: Cluster, stop: asyncio.Event, done: list[int]) -> int:
        rng = random.Random(7)  # noqa: S311 (which process, not cryptography)
        restarts: list[asyncio.Task[None]] = []

        async def one() -> None:
            group = pick(stack)
            if all(p.ready for p in group):
                restarts.append(
                    asyncio.create_task(kill_and_restart(stack, rng.choice(group), sig))
                )
                done[0] += 1

        await every(stop, seconds, one)
        await asyncio.gather(*restarts)
        return len(restarts)

    return chaos


async def database_restarts(
    stack: Stack, cluster: Cluster, stop: asyncio.Event, done: list[int]
) -> int:
    async def restart() -> None:
        done[0] += 1
        cluster.kill()
        await asyncio.sleep(1.0)
        cluster.start()

    return await every(stop, 4.0, restart)


async def graceful_stops(
    stack: Stack, cluster: Cluster, stop: asyncio.Event, done: list[int]
) -> int:
    """SIGTERM under load, a relay and an API in turn, each started again in the background once it
    has stopped (a relay drains its calls and releases its leases first); one of each kind keeps
    serving."""
    groups = [stack.relay_processes, stack.api_processes]
    rng = random.Random(11)  # noqa: S311 (which process, not cryptography)
    restarts: list[asyncio.Task[None]] = []
    turn = 0

    async def one() -> None:
        nonlocal turn
        group = groups[turn % len(groups)]
        if all(p.ready for p in group):
            turn += 1
            process = rng.choice(group)
            restarts.append(asyncio.create_task(kill_and_restart(stack, process, signal.SIGTERM)))
            done[0] += 1

    await every(stop, 1.5, one)
    await asyncio.gather(*restarts)
    return len(restarts)


async def reset_simulator(stack: Stack) -> None:
    async with httpx.AsyncClient(timeout=10.0) as client:
        (await client.post(f"{stack.simulator_url}/__sim/reset")).raise_for_status()


async def play(
    name: str,
    cluster: Cluster,
    stack: Stack,
    size: Size,
    *,
    faults: list[dict[str, Any]] | None = None,
    chaos: Chaos | None = None,
    min_faults: int = 0,
    count_fault_hits: bool = False,
) -> Result:
    """Stories by retrying callers while `faults` (simulator rules) and `chaos` happen; while
    `chaos` has not done `min_faults` yet, callers go on with more stories (a quarter of the size at
    a time)."""
    result = Result(name)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await reset_simulator(stack)
    if faults:
        await add_faults(stack, faults)
    tally = Tally()
    all_stories = stories(name, size.stories, seed=len(name))
    stop = asyncio.Event()
    done = [0]
    chaos_task = (
        asyncio.create_task(chaos(stack, cluster, stop, done)) if chaos is not None else None
    )
    try:
        await run_callers(stack.api_urls, all_stories, size.callers, tally, seed=len(name))
        rounds = 0
        # More stories until the faults are done, within a bound (a slow machine restarts slowly).
        more_until = loop.time() + MORE_STORIES_SECONDS
        while (
            chaos_task is not None
            and done[0] < min_faults
            and not chaos_task.done()
            and loop.time() < more_until
        ):
            rounds += 1
            more = stories(f"{name}-{rounds}", max(size.stories // 4, 1), seed=rounds)
            all_stories += more
            await run_callers(stack.api_urls, more, size.callers, tally, seed=rounds)
    finally:
        stop.set()
        injected = await chaos_task if chaos_task is not None else 0
    hits = await clear_faults(stack)
    result.faults_injected = hits if count_fault_hits else injected
    await settle(name, stack, all_stories, tally, result)
    result.notes += await listen_status(stack)
    result.seconds = round(loop.time() - started, 1)
    return result


async def settle(
    name: str,
    stack: Stack,
    all_stories: list[Story],
    tally: Tally,
    result: Result,
    *,
    ordered: bool = True,
) -> None:
    """Drain the outbox, replay every key once, and run the end checks."""
    database_url = stack.database_url
    left = await drain(database_url, name)
    findings = checks.Findings(lost=sum(left.values()))
    if left:
        result.notes.append(f"commands left unfinished: {left}")
    async with httpx.AsyncClient() as http:
        caller = Caller(http, stack.api_urls, tally, seed=0)
        for story in all_stories:
            for step in story.steps:
                final = step.answer is not None and step.answer.outcome in ("success", "failure")
                if final and not await caller.replay_matches(story, step):
                    tally.wrong(f"{story.tag}: the key of its {step.kind} replays otherwise")
    upstream = await checks.simulator_invoices(stack.simulator_url)
    stored = await checks.stored_invoices(database_url)
    for story in all_stories:
        checks.check_story(
            story,
            upstream.get(story.tag, []),
            stored.get(story.tag),
            findings,
            result.notes,
            ordered=ordered,
        )
    result.operations += sum(len(story.steps) for story in all_stories)
    result.duplicates += findings.duplicates
    result.lost += findings.lost
    result.mismatched += findings.mismatched
    result.wrong_answers += findings.wrong_answers + tally.wrong_answers
    result.server_errors += tally.server_errors
    result.notes += tally.notes


async def listen_status(stack: Stack) -> list[str]:
    """Every process should be ready, and listening again, shortly after the faults (a database
    restart included): asked for up to 30 s (a pooled connection that died fails one probe, then is
    replaced)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30.0
    while True:
        notes = []
        for name, body in (await stack.readiness()).items():
            listen = body.get("listen") or {}
            if body.get("status") != "ok" or any(v != "listening" for v in listen.values()):
                notes.append(f"{name} not ready after the faults: {body}")
        if not notes or loop.time() > deadline:
            return notes
        await asyncio.sleep(0.5)


async def concurrency(cluster: Cluster, stack: Stack, size: Size) -> Result:
    """200 requests with one Idempotency-Key at once (across both APIs), then sends and cancels
    racing on the same invoices."""
    name = "concurrency"
    result = Result(name)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await reset_simulator(stack)
    tally = Tally()
    async with httpx.AsyncClient(limits=httpx.Limits(max_connections=400)) as http:
        # 1. one key, 200 times at once: one invoice, one answer.
        tag = f"rel-{name}-one-key-{uuid.uuid4().hex[:8]}"
        key = str(uuid.uuid4())
        duplicates = 200
        callers = [Caller(http, stack.api_urls, tally, seed=n) for n in range(duplicates)]
        answers = await asyncio.gather(
            *(c.perform("POST", "/v1/invoices", key, invoice_body(tag)) for c in callers)
        )
        numbers = {a.number for a in answers}
        if {a.outcome for a in answers} != {"success"} or len(numbers) != 1:
            tally.wrong(f"one key, 200 requests: {len(numbers)} invoice numbers in the answers")
        one_key = Story(tag, ("create",), number=answers[0].number)
        one_key.steps.append(Step("create", key, answers[0]))
        result.operations += duplicates
        # 2. send and cancel racing on published invoices.
        races = max(size.stories // 4, 10)
        raced = [
            Story(f"rel-{name}-race-{n:04d}-{uuid.uuid4().hex[:8]}", ("create", "publish"))
            for n in range(races)
        ]
        await asyncio.gather(
            *(Caller(http, stack.api_urls, tally, seed=n).play(s) for n, s in enumerate(raced))
        )

        async def race(story: Story, n: int) -> None:
            send, cancel = Step("send", str(uuid.uuid4())), Step("cancel", str(uuid.uuid4()))
            first, second = (send, cancel) if n % 2 else (cancel, send)
            a, b = await asyncio.gather(
                Caller(http, stack.api_urls, tally, seed=2 * n).perform(
                    "POST", f"/v1/invoices/{story.number}/{first.kind}", first.key, None
                ),
                Caller(http, stack.api_urls, tally, seed=2 * n + 1).perform(
                    "POST", f"/v1/invoices/{story.number}/{second.kind}", second.key, None
                ),
            )
            first.answer, second.answer = a, b
            story.steps += [first, second]

        await asyncio.gather(*(race(story, n) for n, story in enumerate(raced)))
        result.faults_injected = (duplicates - 1) + races
    await settle(name, stack, [one_key], tally, result)
    await settle_races(name, stack, raced, tally, result)
    result.notes += await listen_status(stack)
    result.seconds = round(loop.time() - started, 1)
    return result


async def settle_races(
    name: str, stack: Stack, raced: list[Story], tally: Tally, result: Result
) -> None:
    """A send and a cancel raced: whatever order Cybersource saw, the answers must agree with it."""
    left = await drain(stack.database_url, name)
    result.lost += sum(left.values())
    upstream = await checks.simulator_invoices(stack.simulator_url)
    stored = await checks.stored_invoices(stack.database_url)
    for story in raced:
        invoices = upstream.get(story.tag, [])
        result.operations += len(story.steps)
        if len(invoices) != 1:
            result.duplicates += max(len(invoices) - 1, 0)
            result.lost += 1 if not invoices else 0
            continue
        invoice = invoices[0]
        history = [h["event"] for h in reversed(invoice["invoiceHistory"])]
        answers = {s.kind: s.answer for s in story.steps}
        sent = answers["send"] is not None and answers["send"].outcome == "success"
        canceled = answers["cancel"] is not None and answers["cancel"].outcome == "success"
        if history.count("SEND") + history.count("RESEND") > 1 or history.count("CANCEL") > 1:
            result.duplicates += 1
            result.notes.append(f"{story.tag}: {history}")
        if sent != ("SEND" in history) or canceled != ("CANCEL" in history):
            result.wrong_answers += 1
            result.notes.append(f"{story.tag}: send {sent}, cancel {canceled}, upstream {history}")
        row = stored.get(story.tag)
        if row is None or row["status"] != invoice["status"] or row["sync_state"] != "in_sync":
            result.mismatched += 1
            result.notes.append(
                f"{story.tag}: store {row and dict(row)}, upstream {invoice['status']}"
            )

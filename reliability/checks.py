"""End checks of a scenario: what callers were told, what the store holds and what Cybersource (the
simulator) did must tell the same story.

- duplicates: an invoice created twice for one story, an e-mail or any step applied more often than
  asked;
- lost: a step answered as done (or left without a final answer) that Cybersource never saw, and
  commands still pending, in flight or `unknown` once the outbox should have drained;
- mismatched: an invoice whose stored status or sync state disagrees with the simulator's, or whose
  steps reached Cybersource out of order;
- wrong_answers: an answer that contradicts what happened (a refusal for a step that was applied, a
  key that replays something else than its first answer, a 503 "nothing was applied" for a committed
  request).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx

from reliability.callers import Story


@dataclass
class Findings:
    duplicates: int = 0
    lost: int = 0
    mismatched: int = 0
    wrong_answers: int = 0


def history_of(steps: list[str]) -> list[str]:
    """The simulator's history entries the steps leave, oldest first."""
    events: list[str] = []
    status = None
    for kind in steps:
        if kind == "create":
            events.append("DRAFT")
            status = "DRAFT"
        elif kind == "publish":
            events.append("CREATE")
            status = "CREATED"
        elif kind == "send":
            if status == "DRAFT":
                events.append("CREATE")
            events.append("RESEND" if status == "SENT" else "SEND")
            status = "SENT"
        elif kind == "cancel":
            events.append("CANCEL")
            status = "CANCELED"
    return events


def status_after(steps: list[str]) -> str | None:
    status = None
    for kind in steps:
        status = {"create": "DRAFT", "publish": "CREATED", "send": "SENT", "cancel": "CANCELED"}[
            kind
        ]
    return status


async def simulator_invoices(simulator_url: str) -> dict[str, list[dict[str, Any]]]:
    """Upstream invoices by the story tag their description carries."""
    async with httpx.AsyncClient(timeout=30.0) as client:
        listed = (await client.get(f"{simulator_url}/__sim/invoices")).json()
    by_tag: dict[str, list[dict[str, Any]]] = {}
    for invoice in listed:
        tag = (invoice.get("content") or {}).get("invoiceInformation", {}).get("description")
        by_tag.setdefault(str(tag), []).append(invoice)
    return by_tag


async def unfinished_commands(database_url: str, tag_prefix: str) -> dict[str, int]:
    """Commands of the stories tagged `tag_prefix…` still pending, in flight, or left `unknown`."""
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(
            "SELECT o.state, count(*) AS n "
            "FROM operations o JOIN invoices i ON i.id = o.invoice_id "
            "WHERE o.state IN ('pending', 'in_flight', 'unknown') "
            "AND i.content -> 'invoiceInformation' ->> 'description' LIKE $1 GROUP BY o.state",
            tag_prefix + "%",
        )
    finally:
        await conn.close()
    return {row["state"]: int(row["n"]) for row in rows}


async def stored_invoices(database_url: str) -> dict[str, asyncpg.Record]:
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(
            "SELECT invoice_number, status, sync_state, "
            "content -> 'invoiceInformation' ->> 'description' AS tag FROM invoices"
        )
    finally:
        await conn.close()
    return {str(row["tag"]): row for row in rows}


def check_story(
    story: Story,
    upstream: list[dict[str, Any]],
    stored: asyncpg.Record | None,
    findings: Findings,
    notes: list[str],
    *,
    ordered: bool = True,
) -> None:
    done = [s.kind for s in story.steps if s.answer is not None and s.answer.outcome == "success"]
    refused = [
        s.kind for s in story.steps if s.answer is not None and s.answer.outcome == "failure"
    ]
    unanswered = [
        s.kind for s in story.steps if s.answer is None or s.answer.outcome in ("none", "unknown")
    ]
    if len(upstream) > 1:
        findings.duplicates += len(upstream) - 1
        notes.append(f"{story.tag}: {len(upstream)} invoices upstream")
    actual = [h["event"] for h in reversed(upstream[0]["invoiceHistory"])] if upstream else []
    expected = history_of(done)
    if not ordered:
        actual, expected = sorted(actual), sorted(expected)
    if actual != expected:
        if unanswered and actual in (expected, sorted(history_of(done + unanswered))):
            # a step without a final answer that did (or did not) happen: counted as lost below
            pass
        elif refused and actual == (
            history_of(done + refused) if ordered else sorted(history_of(done + refused))
        ):
            findings.wrong_answers += 1
            notes.append(f"{story.tag}: {refused} answered as refused but applied upstream")
        else:
            extra = Counter(actual) - Counter(expected)
            missing = Counter(expected) - Counter(actual)
            findings.duplicates += sum(extra.values())
            findings.lost += sum(missing.values())
            if not extra and not missing:
                findings.mismatched += 1
            notes.append(f"{story.tag}: upstream {actual}, expected {expected}")
    findings.lost += len(unanswered)
    if unanswered:
        notes.append(f"{story.tag}: no final answer for {unanswered}")
    if upstream and stored is None:
        findings.mismatched += 1
        notes.append(f"{story.tag}: upstream but not in the store")
    if stored is not None and upstream:
        # A refused last step leaves sync `failed` (or `in_sync` when it was superseded by a
        # cancel).
        sync_ok = stored["sync_state"] in (("failed", "in_sync") if refused else ("in_sync",))
        if stored["status"] != upstream[0]["status"] or not sync_ok:
            findings.mismatched += 1
            notes.append(
                f"{story.tag}: store {stored['status']}/{stored['sync_state']}, "
                f"upstream {upstream[0]['status']}"
            )

"""The worker's background loop (app/kit/loops.py): a step that fails because the database is away
is one warning line per pause; any other failure keeps its traceback. A traceback each poll during
an outage buried the logs (issue 15), and rendering them stalled the process for seconds."""

from __future__ import annotations

import asyncio

from structlog.testing import capture_logs

from app.kit.loops import run_until_stopped


async def _run_once_failing(error: Exception) -> list[dict[str, object]]:
    stop = asyncio.Event()

    async def step() -> bool:
        stop.set()  # one turn is enough
        raise error

    with capture_logs() as logs:
        await run_until_stopped("job", step, stop, idle_seconds=0.01)
    return logs


async def test_the_database_away_is_a_warning_without_a_traceback():
    logs = await _run_once_failing(ConnectionRefusedError(111, "Connection refused"))
    assert logs == [
        {
            "event": "job.database_unavailable",
            "error": "ConnectionRefusedError",
            "log_level": "warning",
        }
    ]


async def test_a_bug_keeps_its_traceback():
    logs = await _run_once_failing(KeyError("surprise"))
    assert [(e["event"], e["log_level"], e.get("exc_info")) for e in logs] == [
        ("job.failed", "error", True)
    ]

"""`python -m reliability [--soak] [--only NAME ...]`: the reliability suite (`make reliability`,
`make soak`).

Starts a private PostgreSQL cluster on a port of its own, then for each scenario a fresh database,
the simulator, two APIs and two relays as real processes; retrying callers play stories while the
scenario's faults happen; then the end checks. Prints a table and writes `reliability/results.json`
(one object per scenario with the integer keys operations, faults_injected, duplicates, lost,
mismatched, wrong_answers, server_errors). Exit status 1 when any of the last five is not zero.

`--soak` runs the first three scenarios at ten times the size (results in `reliability/soak.json`).
Process logs are kept under the work directory printed at the end when something went wrong.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from reliability import scenarios
from reliability.cluster import Cluster
from reliability.scenarios import Result, Size
from reliability.stack import Process, Stack, free_port

HERE = Path(__file__).resolve().parent
COLUMNS = (
    "operations",
    "faults_injected",
    "duplicates",
    "lost",
    "mismatched",
    "wrong_answers",
    "server_errors",
)
MUST_BE_ZERO = COLUMNS[2:]
CI_SIZE = Size(stories=80, callers=16)
SOAK_FACTOR = 10

Scenario = Callable[[Cluster, Stack, Size], Awaitable[Result]]


def catalogue() -> dict[str, Scenario]:
    def relays(stack: Stack) -> list[Process]:
        return stack.relay_processes

    def apis(stack: Stack) -> list[Process]:
        return stack.api_processes

    return {
        "upstream_faults": lambda c, w, s: scenarios.play(
            "upstream_faults", c, w, s, faults=scenarios.UPSTREAM_FAULTS, count_fault_hits=True
        ),
        "relay_crashes": lambda c, w, s: scenarios.play(
            "relay_crashes",
            c,
            w,
            s,
            faults=scenarios.SLOW_CALLS,
            chaos=scenarios.kills(relays, signal.SIGKILL, 2.0),
            min_faults=s.stories // 10,
        ),
        "api_crashes": lambda c, w, s: scenarios.play(
            "api_crashes",
            c,
            w,
            s,
            faults=scenarios.SLOW_CALLS,
            chaos=scenarios.kills(apis, signal.SIGKILL, 2.0),
            min_faults=s.stories // 10,
        ),
        "database_restart": lambda c, w, s: scenarios.play(
            "database_restart",
            c,
            w,
            s,
            chaos=scenarios.database_restarts,
            min_faults=max(s.stories // 25, 3),
        ),
        "graceful_shutdown": lambda c, w, s: scenarios.play(
            "graceful_shutdown",
            c,
            w,
            s,
            faults=scenarios.SLOW_CALLS,
            chaos=scenarios.graceful_stops,
            min_faults=s.stories // 10,
        ),
        "concurrency": scenarios.concurrency,
    }


def table(results: list[Result]) -> str:
    header = ["scenario", *COLUMNS, "seconds"]
    rows = [[r.name, *(str(v) for v in r.counts().values()), f"{r.seconds:.0f}"] for r in results]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        first = cells[0].ljust(widths[0])
        rest = [cell.rjust(width) for cell, width in zip(cells[1:], widths[1:], strict=True)]
        return "| " + " | ".join([first, *rest]) + " |"

    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(header), rule, *(line(row) for row in rows)])


async def run(names: list[str], cluster: Cluster, logs: Path, size: Size) -> list[Result]:
    """Start the processes once (on a database of the cluster), play the scenarios, stop them."""
    database_url = await cluster.create_database("reliability")
    stack = Stack(database_url, logs)
    await stack.start()
    results: list[Result] = []
    try:
        for name in names:
            print(f"==> {name}", flush=True)
            result = await catalogue()[name](cluster, stack, size)
            results.append(result)
            print(f"    {result.counts()} in {result.seconds:.0f} s", flush=True)
    finally:
        await stack.stop()
    return results


def main(names: list[str], size: Size, output: Path, keep: bool) -> int:
    work = Path(tempfile.mkdtemp(prefix="igw-reliability-"))
    work.chmod(0o755)  # the cluster's directory inside belongs to postgres, which must reach it
    cluster = Cluster(work / "postgres", free_port())
    started = time.monotonic()
    cluster.init()
    cluster.start()
    try:
        results = asyncio.run(run(names, cluster, work / "logs", size))
    finally:
        cluster.stop()
    print()
    print(table(results))
    print(f"\n{len(results)} scenarios in {time.monotonic() - started:.0f} s")
    failed = [r for r in results if any(r.counts()[key] for key in MUST_BE_ZERO)]
    for result in results:
        for note in result.notes[:20]:
            print(f"  {result.name}: {note}")
    output.write_text(json.dumps({r.name: r.counts() for r in results}, indent=2) + "\n")
    print(f"wrote {output}")
    if failed or keep:
        print(f"process logs kept in {work / 'logs'}")
        cluster.remove()
    else:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if failed else 0


def cli() -> int:
    parser = argparse.ArgumentParser(prog="python -m reliability", description=__doc__)
    parser.add_argument("--soak", action="store_true", help="the first three at ten times the size")
    parser.add_argument("--only", nargs="+", choices=list(catalogue()), help="these scenarios")
    parser.add_argument("--keep", action="store_true", help="keep the process logs")
    args = parser.parse_args()
    names = args.only or list(catalogue())
    size = CI_SIZE
    output = HERE / "results.json"
    if args.soak:
        names = args.only or names[:3]
        size = Size(CI_SIZE.stories * SOAK_FACTOR, CI_SIZE.callers)
        output = HERE / "soak.json"
    return main(names, size, output, args.keep)


if __name__ == "__main__":
    sys.exit(cli())

"""CPU instructions per request of the API process, counted by callgrind: A/B comparisons on a \
busy machine.

    uv run python -m bench.instructions --tree DIR [--tree DIR ...] [--requests 200]
                                        [--scenarios trivial,read,list,replay,create_async]

Wall-clock ratios need a quiet machine; instruction counts do not (valgrind counts what the process
executes, whatever else runs beside it). For each tree (`git archive <rev> | tar -x -C DIR`), its
`invoicing-gateway api` runs under `valgrind --tool=callgrind --instr-atstart=no` beside the usual
database, relay and 0 ms upstream; per scenario: instrumentation on, a warm-up, counters zeroed,
`--requests` requests (one keep-alive connection, or `--concurrency` at once), a dump, and the
instructions of that window divided by the requests. PYTHONHASHSEED is fixed so that the same code
executes the same way. What this leaves out: waiting (latency, queueing for the pool, the tail),
PostgreSQL's own work, and, with one request at a time, whatever only happens under load (garbage
collection of what requests in flight hold: measure with --concurrency 16).
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import re
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import asyncpg

from bench import scale
from bench.compare import Located
from bench.harness import HOST, free_port
from bench.run import AUTH, BODY, POST_HEADERS, QUICK, Bench

RAW_PATHS = {"trivial": "/trivial", "read": "/read/{n}", "list": "/list?limit=50"}


def requests_of(
    scenario: str, numbers: list[str], keys: list[str], count: int, *, raw: bool = False
) -> list[tuple[str, str, bytes | None, dict[str, str]]]:
    out: list[tuple[str, str, bytes | None, dict[str, str]]] = []
    for i in range(count):
        if raw:  # the baseline app of bench/raw_app.py
            path = RAW_PATHS[scenario].format(n=numbers[i % len(numbers)])
            out.append(("GET", path, None, {}))
        elif scenario == "trivial":
            out.append(("GET", "/livez", None, {}))
        elif scenario == "read":
            out.append(("GET", f"/v1/invoices/{numbers[i % len(numbers)]}", None, AUTH))
        elif scenario == "list":
            out.append(("GET", "/v1/invoices?limit=50", None, AUTH))
        elif scenario == "replay":
            headers = {**POST_HEADERS, "Idempotency-Key": keys[i % len(keys)]}
            out.append(("POST", "/v1/invoices", BODY, headers))
        elif scenario == "create_async":
            headers = {
                **POST_HEADERS,
                "Prefer": "respond-async",
                "Idempotency-Key": f"instr-{scenario}-{i}-{free_port()}",
            }
            out.append(("POST", "/v1/invoices", BODY, headers))
    return out


def send(
    port: int, batch: list[tuple[str, str, bytes | None, dict[str, str]]], concurrency: int = 1
) -> None:
    """The requests on `concurrency` keep-alive connections at once (each a thread)."""
    if concurrency > 1:
        with ThreadPoolExecutor(concurrency) as pool:
            for done in [
                pool.submit(send, port, batch[i::concurrency]) for i in range(concurrency)
            ]:
                done.result()
        return
    connection = http.client.HTTPConnection(HOST, port, timeout=300)
    for method, path, body, headers in batch:
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        response.read()
        if response.status >= 300:
            raise RuntimeError(f"{method} {path}: HTTP {response.status}")
    connection.close()


def control(pid: int, *options: str) -> None:
    subprocess.run(["callgrind_control", *options, str(pid)], check=True, capture_output=True)


def collected(out_file: Path, pid: int) -> int:
    """Dump what was collected since the last dump; its instruction count."""
    before = set(out_file.parent.glob(f"{out_file.name}*"))
    subprocess.run(["callgrind_control", "-d", str(pid)], check=True, capture_output=True)
    dumps = set(out_file.parent.glob(f"{out_file.name}*")) - before
    total = 0
    for dump in dumps:
        found = re.search(r"^(?:summary|totals): (\d+)", dump.read_text(), re.MULTILINE)
        total += int(found.group(1)) if found else 0
    return total


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--tree",
        type=Path,
        action="append",
        required=True,
        help="a tree to run the API of, optionally with settings: DIR,LOG_LEVEL=INFO; `raw` runs "
        "bench/raw_app.py (trivial, read, list) instead",
    )
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--scenarios", default="trivial,read,list,replay,create_async")
    parser.add_argument(
        "--concurrency",
        type=int,
        default=1,
        help=(
            "requests in flight (more than 1: what only happens under load, like garbage "
            "collection of what in-flight requests hold, is counted too, and counts vary a little "
            "between runs)"
        ),
    )
    args = parser.parse_args()
    scenarios = args.scenarios.split(",")
    table: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="igw_instr_") as work_dir:
        work = Path(work_dir)
        bench = Bench(QUICK, work)
        try:
            bench.start()
            numbers, keys = asyncio.run(bench.seed())

            async def fill() -> None:
                conn = await asyncpg.connect(bench.dsn)
                await scale.clone_invoices(conn, numbers[0], 10_000 - len(numbers))
                await conn.close()

            asyncio.run(fill())
            for n, tree in enumerate(args.tree):
                port = free_port()
                out_file = work / f"callgrind.{n}.out"
                spec = str(tree).split(",")
                tree = Path(spec[0])
                overrides = dict(item.split("=", 1) for item in spec[1:])
                raw = spec[0] == "raw"
                server = ["bench.raw_app"] if raw else ["app", "api", "--host", HOST]
                child = Located(
                    f"api-{n}",
                    [
                        "valgrind",
                        "--tool=callgrind",
                        "--instr-atstart=no",
                        f"--callgrind-out-file={out_file}",
                        sys.executable,
                        "-m",
                        *server,
                        "--port",
                        str(port),
                    ],
                    {
                        **bench.env,
                        "CYBERSOURCE_BASE_URL": bench.upstream_url(0),
                        "PYTHONHASHSEED": "0",
                        **overrides,
                    },
                    work,
                    Path.cwd() if raw else tree.resolve(),
                )
                bench.children.append(child)
                child.wait_ready(f"http://{HOST}:{port}/{'trivial' if raw else 'readyz'}", 900)
                pid = child.process.pid
                row = table.setdefault(str(args.tree[n]), {})
                for scenario in scenarios:
                    if raw and scenario not in RAW_PATHS:
                        row[scenario] = float("nan")
                        continue
                    control(pid, "-i", "on")
                    warm_up = requests_of(scenario, numbers, keys, 30, raw=raw)
                    send(port, warm_up, args.concurrency)
                    batch = requests_of(scenario, numbers, keys, args.requests, raw=raw)
                    control(pid, "-z")
                    send(port, batch, args.concurrency)
                    row[scenario] = collected(out_file, pid) / args.requests
                    control(pid, "-i", "off")
                    print(
                        f"{tree}: {scenario:<13} {row[scenario]:12,.0f} instructions/request",
                        flush=True,
                    )
                child.stop(60)
        finally:
            bench.stop()
    trees = [str(t) for t in args.tree]
    print(
        f"\n{'scenario':<13} "
        + " ".join(f"{Path(t).name:>14}" for t in trees)
        + "  ratio to the first"
    )
    for scenario in scenarios:
        values = [table[t][scenario] for t in trees]
        ratios = " ".join(f"{v / values[0]:.3f}" for v in values[1:])
        print(f"{scenario:<13} " + " ".join(f"{v:14,.0f}" for v in values) + f"  {ratios}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Throughput of the facade's HTTP API end to end: the real processes, PostgreSQL, the relay and \
the simulator.

    uv run python -m bench.bench_api [--duration 10] [--concurrency 32] [--invoices 200]
                                     [--loop uvloop|asyncio] [--json-out bench/results/api.json]

Setup, every process SEPARATE from this one: a throwaway database (`invoicing-gateway migrate`
creates and migrates it), the simulator (`invoicing-gateway simulator`), and the facade
(`invoicing-gateway api --with-relay`, one API key, LOG_LEVEL=WARNING) pointed at both; `--invoices`
invoices are created through the relay first. Then an aiohttp load generator in this process keeps
`--concurrency` requests in flight for `--duration` seconds per scenario (after an unmeasured
warm-up):

  livez         GET /livez: framework + HTTP only, the baseline every ratio is taken against;
  get           GET /v1/invoices/{number}, round-robin over the pre-created invoices (store read);
  list          GET /v1/invoices?limit=20;
  create-async  POST /v1/invoices, `Prefer: respond-async`, a new Idempotency-Key each (202: key
                claim, number, invoice row, outbox command in one transaction);
  create-sync   POST /v1/invoices waiting for the final answer (201: through the relay to the
                simulator);
  replay        POST with an already-used Idempotency-Key and the same body (the stored answer,
                201).

Before each scenario the outbox is drained, so the relay only works during the scenarios that feed
it; what create-async left behind (and how fast the relay cleared it) is reported on its own line.
The load generator shares the machine with the API, the simulator and PostgreSQL: absolute figures
say as much about the machine as about the code, the ratios to /livez less so. This is a
measurement: nothing is asserted. Everything is torn down at the end (processes stopped, database
dropped).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import datetime as dt
import hashlib
import itertools
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from importlib.metadata import version
from pathlib import Path
from types import FrameType
from typing import Any

import aiohttp
import asyncpg

ROOT = Path(__file__).resolve().parents[1]
SERVER_URL = os.environ.get("BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432")
HOST = "127.0.0.1"
API_KEY = "bench-api-key"
CLIENT = "bench"
BODY = json.dumps(
    {
        "customerInformation": {"name": "Ada Lovelace", "email": "ada@example.com"},
        "invoiceInformation": {
            "description": "Consulting, two hours",
            "dueDate": (dt.date.today() + dt.timedelta(days=30)).isoformat(),
            "deliveryMode": "none",
        },
        "orderInformation": {
            "amountDetails": {"totalAmount": "250.00", "currency": "USD"},
            "lineItems": [{"productName": "Consulting hour", "quantity": 2, "unitPrice": "125.00"}],
        },
    }
).encode()
AUTH = {"Authorization": f"Bearer {API_KEY}"}
POST_HEADERS = {**AUTH, "Content-Type": "application/json"}


class Unexpected(Exception):
    """A response that is not the scenario's answer (its status, or a missing replay header)."""


@dataclass
class Result:
    scenario: str
    what: str
    expect: int
    concurrency: int
    duration_s: float
    requests: int
    errors: int
    req_per_s: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    ratio_vs_livez: float | None = None
    outbox_backlog_before: int = 0
    drain_before_s: float = 0.0
    error_kinds: dict[str, int] = field(default_factory=dict)


# --- processes and the database -------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # our own 127.0.0.1
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


class Child:
    """A child process in its own session (Ctrl-C reaches only us), its output in a log file."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log_dir: Path) -> None:
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                argv,
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def wait_ready(self, url: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not http_ok(url):
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with status {self.process.returncode} before it was "
                    f"ready:\n{self.tail()}"
                )
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"{self.name} not ready within {timeout:.0f} s ({url}):\n{self.tail()}"
                )
            time.sleep(0.2)

    def stop(self, timeout: float = 20.0) -> None:
        if self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            print(f"  {self.name} did not stop within {timeout:.0f} s; killing it", flush=True)
            self.process.kill()
            self.process.wait()


async def _admin(sql: str) -> None:
    conn = await asyncpg.connect(f"{SERVER_URL}/postgres")
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def drop_database(name: str) -> None:
    asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


# --- load -----------------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0] * 1000
    return statistics.quantiles(values, n=1000, method="inclusive")[int(q * 1000) - 1] * 1000


async def drive(
    call: Callable[[], Awaitable[None]], *, concurrency: int, duration: float, warmup: float
) -> tuple[list[float], collections.Counter[str], float]:
    """Keep `concurrency` calls in flight; count the calls that start inside the measured window.

    The rate is those calls over the window's length (not until the last one returns: with
    second-long latencies that tail would understate the rate by a tenth).
    """
    latencies: list[float] = []
    errors: collections.Counter[str] = collections.Counter()
    start_measure = time.perf_counter() + warmup
    stop_at = start_measure + duration

    async def worker() -> None:
        while True:
            began = time.perf_counter()
            if began >= stop_at:
                return
            try:
                await call()
            except Exception as exc:
                if began >= start_measure:
                    errors[str(exc) if isinstance(exc, Unexpected) else type(exc).__name__] += 1
                if not isinstance(exc, Unexpected):
                    await asyncio.sleep(0.01)  # a refused connection must not spin
                continue
            if began >= start_measure:
                latencies.append(time.perf_counter() - began)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies, errors, duration


async def outbox_backlog(conn: Any) -> int:
    count: int = await conn.fetchval(
        "SELECT count(*) FROM operations WHERE state IN ('pending', 'in_flight')"
    )
    return count


async def drain(conn: Any, limit_s: float = 600.0) -> tuple[int, float]:
    """Wait until the relay has delivered every command; (commands waiting at the start,
    seconds)."""
    began = time.perf_counter()
    first = remaining = await outbox_backlog(conn)
    while remaining:
        if time.perf_counter() - began > limit_s:
            raise RuntimeError(
                f"the relay left {remaining} commands undelivered after {limit_s:.0f} s"
            )
        await asyncio.sleep(0.1)
        remaining = await outbox_backlog(conn)
    return first, time.perf_counter() - began


def problem_code(payload: bytes) -> str:
    """The stable `code` of a problem+json answer, so that error counts say which error it was."""
    try:
        code = json.loads(payload).get("code")
    except (ValueError, AttributeError):
        return ""
    return str(code) if code else ""


class Load:
    def __init__(self, session: aiohttp.ClientSession, api: str) -> None:
        self.session = session
        self.api = api
        self.numbers: list[str] = []
        self.used_keys: list[str] = []
        self._turn = itertools.count()

    async def _expect(
        self,
        method: str,
        path: str,
        status: int,
        *,
        headers: dict[str, str],
        data: bytes | None = None,
        replayed: bool = False,
    ) -> dict[str, Any] | None:
        async with self.session.request(
            method, self.api + path, headers=headers, data=data
        ) as response:
            payload = await response.read()
            if response.status != status:
                raise Unexpected(f"HTTP {response.status} {problem_code(payload)}".rstrip())
            if replayed and response.headers.get("Idempotent-Replayed") != "true":
                raise Unexpected("not replayed")
        return json.loads(payload) if status == 201 and not replayed else None

    async def livez(self) -> None:
        await self._expect("GET", "/livez", 200, headers=AUTH)

    async def get(self) -> None:
        number = self.numbers[next(self._turn) % len(self.numbers)]
        await self._expect("GET", f"/v1/invoices/{number}", 200, headers=AUTH)

    async def list_page(self) -> None:
        await self._expect("GET", "/v1/invoices?limit=20", 200, headers=AUTH)

    async def create_async(self) -> None:
        headers = {**POST_HEADERS, "Idempotency-Key": str(uuid.uuid4()), "Prefer": "respond-async"}
        await self._expect("POST", "/v1/invoices", 202, headers=headers, data=BODY)

    async def create_sync(self) -> None:
        await self._create_sync(str(uuid.uuid4()))

    async def _create_sync(self, key: str) -> str:
        headers = {**POST_HEADERS, "Idempotency-Key": key}
        created = await self._expect("POST", "/v1/invoices", 201, headers=headers, data=BODY)
        assert created is not None
        number: str = created["invoiceNumber"]
        return number

    async def replay(self) -> None:
        key = self.used_keys[next(self._turn) % len(self.used_keys)]
        headers = {**POST_HEADERS, "Idempotency-Key": key}
        await self._expect("POST", "/v1/invoices", 201, headers=headers, data=BODY, replayed=True)

    async def seed(self, count: int, concurrency: int) -> None:
        """Invoices created through the relay (201): numbers for `get`, completed keys for
        `replay`."""
        gate = asyncio.Semaphore(concurrency)

        async def one() -> None:
            key = str(uuid.uuid4())
            async with gate:
                number = await self._create_sync(key)
            self.numbers.append(number)
            self.used_keys.append(key)

        await asyncio.gather(*(one() for _ in range(count)))


SCENARIOS: list[tuple[str, str, int, str]] = [
    ("livez", "GET /livez (baseline)", 200, "livez"),
    ("get", "GET /v1/invoices/{number}", 200, "get"),
    ("list", "GET /v1/invoices?limit=20", 200, "list_page"),
    ("create-async", "POST /v1/invoices, respond-async", 202, "create_async"),
    ("create-sync", "POST /v1/invoices, final answer", 201, "create_sync"),
    ("replay", "POST, used Idempotency-Key", 201, "replay"),
]


async def run_load(api: str, database_url: str, args: argparse.Namespace) -> dict[str, Any]:
    connector = aiohttp.TCPConnector(limit=max(100, args.concurrency))
    timeout = aiohttp.ClientTimeout(total=60)
    conn = await asyncpg.connect(database_url)
    try:
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            load = Load(session, api)
            began = time.perf_counter()
            await load.seed(args.invoices, args.concurrency)
            print(
                f"  seeded {len(load.numbers)} invoices through the relay in "
                f"{time.perf_counter() - began:.1f} s",
                flush=True,
            )
            results: list[Result] = []
            relay: dict[str, Any] = {}
            for name, what, expect, method in SCENARIOS:
                if args.only and name not in args.only:
                    continue
                backlog, drained = await drain(conn)
                latencies, errors, elapsed = await drive(
                    getattr(load, method),
                    concurrency=args.concurrency,
                    duration=args.duration,
                    warmup=args.warmup,
                )
                result = Result(
                    scenario=name,
                    what=what,
                    expect=expect,
                    concurrency=args.concurrency,
                    duration_s=round(elapsed, 2),
                    requests=len(latencies),
                    errors=sum(errors.values()),
                    req_per_s=round(len(latencies) / elapsed, 1),
                    p50_ms=round(percentile(latencies, 0.5), 2),
                    p90_ms=round(percentile(latencies, 0.9), 2),
                    p99_ms=round(percentile(latencies, 0.99), 2),
                    outbox_backlog_before=backlog,
                    drain_before_s=round(drained, 2),
                    error_kinds=dict(errors),
                )
                results.append(result)
                print(
                    f"  {name:<13} {result.req_per_s:9.1f} req/s  p50 {result.p50_ms:7.2f} ms  "
                    f"p99 {result.p99_ms:7.2f} ms  errors {result.errors}",
                    flush=True,
                )
                if name == "create-async":
                    left, seconds = await drain(conn)
                    # Whether the relay kept up: a small backlog drains within one 0.1 s poll, so no
                    # rate.
                    relay = {"commands_left_by_create_async": left, "drain_s": round(seconds, 2)}
                    print(
                        f"  relay: create-async left {left} commands, drained in {seconds:.1f} s",
                        flush=True,
                    )
            await drain(conn)
            failed = await conn.fetchval("SELECT count(*) FROM operations WHERE state = 'failed'")
            total = await conn.fetchval("SELECT count(*) FROM operations")
    finally:
        await conn.close()
    baseline = next((r.req_per_s for r in results if r.scenario == "livez"), None)
    for r in results:
        r.ratio_vs_livez = round(r.req_per_s / baseline, 3) if baseline else None
    return {"results": results, "relay": relay, "operations": {"total": total, "failed": failed}}


def table(results: list[Result]) -> str:
    head = (
        f"{'scenario':<13} {'what':<34} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'x livez':>8} "
        f"{'errors':>7}"
    )
    lines = [head, "-" * len(head)]
    for r in results:
        ratio = r.ratio_vs_livez if r.ratio_vs_livez is not None else float("nan")
        lines.append(
            f"{r.scenario:<13} {r.what:<34} {r.req_per_s:>9.1f} {r.p50_ms:>8.2f} {r.p99_ms:>8.2f} "
            f"{ratio:>8.3f} {r.errors:>7}"
        )
    return "\n".join(lines)


# --- main -----------------------------------------------------------------------------------------


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def git_describe() -> str | None:
    try:
        return subprocess.run(
            ["git", "describe", "--always", "--dirty"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--duration", type=float, default=10.0, help="measured seconds per scenario"
    )
    parser.add_argument(
        "--warmup", type=float, default=1.0, help="unmeasured seconds before each scenario"
    )
    parser.add_argument("--concurrency", type=int, default=32, help="requests in flight")
    parser.add_argument(
        "--invoices", type=int, default=200, help="invoices created first (get, replay)"
    )
    parser.add_argument(
        "--loop",
        choices=["asyncio", "uvloop"],
        default="uvloop",
        help="event loop of the load generator (the API runs on uvloop under uvicorn)",
    )
    parser.add_argument(
        "--only",
        type=lambda text: text.split(","),
        default=None,
        help="comma-separated scenarios to run (default: all; livez gives the ratios)",
    )
    parser.add_argument("--json-out", type=Path, default=Path("bench/results/api.json"))
    args = parser.parse_args()

    signal.signal(signal.SIGTERM, _terminate)
    db_name = f"igw_bench_{uuid.uuid4().hex[:12]}"
    database_url = f"{SERVER_URL}/{db_name}"
    sim_port, api_port = free_port(), free_port()
    simulator, api = f"http://{HOST}:{sim_port}", f"http://{HOST}:{api_port}"
    env = {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "APP_ENV": "local",
        "LOG_LEVEL": "WARNING",
        "DATABASE_URL": database_url.replace("postgresql://", "postgresql+asyncpg://", 1),
        "CYBERSOURCE_BASE_URL": simulator,
        "API_KEYS": json.dumps(
            [
                {
                    "client": CLIENT,
                    "sha256": hashlib.sha256(API_KEY.encode()).hexdigest(),
                    "scopes": ["invoices:read", "invoices:write"],
                }
            ]
        ),
    }
    load_before = os.getloadavg()
    print(
        f"bench_api: {args.concurrency} in flight, {args.duration:g}s per scenario, "
        f"load loop {args.loop}, {os.cpu_count()} CPUs, load average {load_before[0]:.2f}",
        flush=True,
    )
    children: list[Child] = []
    with tempfile.TemporaryDirectory(prefix="bench_api_") as log_dir:
        try:
            subprocess.run(
                [sys.executable, "-m", "app", "migrate"],
                cwd=ROOT,
                env=env,
                check=True,
                stdout=subprocess.DEVNULL,
            )
            sim = Child(
                "simulator",
                [
                    sys.executable,
                    "-m",
                    "app",
                    "simulator",
                    "--host",
                    HOST,
                    "--port",
                    str(sim_port),
                    "--no-request-log",
                    "--log-level",
                    "WARNING",
                ],
                env,
                Path(log_dir),
            )
            children.append(sim)
            sim.wait_ready(f"{simulator}/__sim/faults", 30)
            facade = Child(
                "api",
                [
                    sys.executable,
                    "-m",
                    "app",
                    "api",
                    "--host",
                    HOST,
                    "--port",
                    str(api_port),
                    "--with-relay",
                ],
                env,
                Path(log_dir),
            )
            children.append(facade)
            facade.wait_ready(f"{api}/readyz", 60)
            print(f"  simulator {simulator}, api {api}, database {db_name}", flush=True)

            if args.loop == "uvloop":
                import uvloop

                with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
                    outcome = runner.run(run_load(api, database_url, args))
            else:
                outcome = asyncio.run(run_load(api, database_url, args))
            for child in children:
                if child.process.poll() is not None:
                    print(
                        f"  warning: {child.name} exited during the run:\n{child.tail()}",
                        flush=True,
                    )
        except KeyboardInterrupt:
            print("bench_api: interrupted; tearing down", file=sys.stderr, flush=True)
            return 130
        except Exception:
            for child in children:
                print(
                    f"--- last lines of the {child.name} log:\n{child.tail()}",
                    file=sys.stderr,
                    flush=True,
                )
            raise
        finally:
            for child in reversed(children):  # the API (and its relay) first, then the simulator
                child.stop()
            drop_database(db_name)  # IF EXISTS: also after a migrate that failed half-way

    results: list[Result] = outcome["results"]
    print()
    print(table(results))
    relay = outcome["relay"]
    if relay:
        print(
            f"\nrelay after create-async: {relay['commands_left_by_create_async']} commands left, "
            f"drained in {relay['drain_s']} s; operations {outcome['operations']['total']}, "
            f"failed {outcome['operations']['failed']}"
        )
    report = {
        "benchmark": (
            "invoicing-gateway HTTP API end to end: api --with-relay, simulator and PostgreSQL in "
            "separate processes, aiohttp load in this one"
        ),
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "code": git_describe(),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "aiohttp": version("aiohttp"),
            "fastapi": version("fastapi"),
            "uvicorn": version("uvicorn"),
            "load_loop": args.loop,
            # Other work on the machine moves the absolute figures; the ratios to /livez less so.
            "loadavg_1m_before": round(load_before[0], 2),
            "loadavg_1m_after": round(os.getloadavg()[0], 2),
        },
        "config": {
            "concurrency": args.concurrency,
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "seed_invoices": args.invoices,
            "baseline": "livez",
        },
        "results": [asdict(r) for r in results],
        "relay": relay,
        "operations": outcome["operations"],
    }
    args.json_out.parent.mkdir(parents=True, exist_ok=True)
    args.json_out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"\nwrote {args.json_out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

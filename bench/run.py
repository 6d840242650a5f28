"""`make bench`: the facade next to its own limits, every scenario with its baselines in the same \
run.

    uv run python -m bench.run [--quick] [--smoke] [--out bench/results.json]
    BENCH_QUICK=1 make bench      about a minute: one short round per scenario, smaller queues and
                                  tables

Processes, each SEPARATE from this one: a throwaway database (migrated), a 0 ms and a 150 ms fake
Cybersource (bench/fake_upstream.py), `invoicing-gateway api`, `invoicing-gateway relay`, and the
raw ASGI app of the baselines (bench/raw_app.py) under the same uvicorn settings. Load: wrk
(bench/harness.py says why), 32 connections unless a scenario says otherwise. A scenario and its
baseline take turns in rounds, so that whatever else the machine does hits both alike; the rate is
over all rounds, p50 and p99 the median of the rounds'. What each row means, the targets and the
latest table: the README, "Benchmarks of the facade". Nothing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import hashlib
import json
import os
import platform
import signal
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from types import FrameType
from typing import Any

import aiohttp
import asyncpg

from bench import scale
from bench.bench_api import SERVER_URL, drop_database, git_describe
from bench.harness import HOST, ROOT, Child, Figures, Load, Wrk, free_port, peak_rss_mb
from bench.report import print_table

API_KEY = "bench-api-key"
AUTH = {"Authorization": f"Bearer {API_KEY}"}
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
POST_HEADERS = {**AUTH, "Content-Type": "application/json"}


@dataclass(frozen=True)
class Plan:
    rounds: int
    seconds: float
    warmup: float
    seed: int
    rows: int
    large_rows: int
    drain_commands: int
    latency_commands: int
    direct_calls: int
    relay_limit_s: float
    pool_size: int = (
        20  # every process's DATABASE_POOL_SIZE, the raw app's pool and pgbench's clients
    )


FULL = Plan(3, 4.0, 1.0, 50, 10_000, 1_000_000, 20_000, 3_000, 300, 60.0)
QUICK = Plan(1, 2.0, 0.0, 20, 10_000, 50_000, 2_000, 400, 50, 15.0)
# Checks only that everything runs: small pools, so that it fits beside other suites on one server.
SMOKE = Plan(1, 1.0, 0.0, 4, 1_000, 1_200, 40, 20, 5, 30.0, pool_size=5)


class Bench:
    def __init__(self, plan: Plan, work: Path) -> None:
        self.plan = plan
        self.work = work
        self.wrk = Wrk(work)
        self.children: list[Child] = []
        self.relay_peaks: list[float] = []
        self.db_name = f"igw_bench_{uuid.uuid4().hex[:12]}"
        self.dsn = f"{SERVER_URL}/{self.db_name}"
        self.api_port, self.raw_port = free_port(), free_port()
        self.api, self.raw = f"http://{HOST}:{self.api_port}", f"http://{HOST}:{self.raw_port}"
        self.upstream = {0: free_port(), 150: free_port()}
        self.env = {
            **os.environ,
            "PYTHONUNBUFFERED": "1",
            "APP_ENV": "local",
            "LOG_LEVEL": "WARNING",
            "DATABASE_URL": self.dsn.replace("postgresql://", "postgresql+asyncpg://", 1),
            "RELAY_IN_PROCESS": "false",
            "DATABASE_POOL_SIZE": str(plan.pool_size),
            "API_KEYS": json.dumps(
                [
                    {
                        "client": "bench",
                        "sha256": hashlib.sha256(API_KEY.encode()).hexdigest(),
                        "scopes": ["invoices:read", "invoices:write"],
                    }
                ]
            ),
        }
        self.results: dict[str, Any] = {"baselines": {}, "scenarios": {}}

    # --- processes --------------------------------------------------------------------------------

    def _spawn(self, name: str, argv: list[str], ready_url: str, **env: str) -> Child:
        child = Child(name, [sys.executable, *argv], {**self.env, **env}, self.work)
        self.children.append(child)
        child.wait_ready(ready_url, 90)
        return child

    def upstream_url(self, delay_ms: int) -> str:
        return f"http://{HOST}:{self.upstream[delay_ms]}"

    def start(self) -> None:
        import subprocess

        subprocess.run(
            [sys.executable, "-m", "app", "migrate"],
            cwd=ROOT,
            env=self.env,
            check=True,
            stdout=subprocess.DEVNULL,
        )
        for delay, port in self.upstream.items():
            argv = ["-m", "bench.fake_upstream", "--port", str(port), "--delay-ms", str(delay)]
            self._spawn(f"upstream-{delay}ms", argv, f"http://{HOST}:{port}/")
        self.api_child = self._spawn(
            "api",
            ["-m", "app", "api", "--host", HOST, "--port", str(self.api_port)],
            f"{self.api}/readyz",
            CYBERSOURCE_BASE_URL=self.upstream_url(0),
        )
        self.raw_child = self._spawn(
            "raw", ["-m", "bench.raw_app", "--port", str(self.raw_port)], f"{self.raw}/trivial"
        )
        self.relay_child = self.start_relay(0)

    def start_relay(self, delay_ms: int) -> Child:
        port = free_port()
        return self._spawn(
            f"relay-{delay_ms}ms",
            ["-m", "app", "relay"],
            f"http://{HOST}:{port}/readyz",
            CYBERSOURCE_BASE_URL=self.upstream_url(delay_ms),
            RELAY_METRICS_PORT=str(port),
            RELAY_METRICS_HOST=HOST,
        )

    def stop_relay(self) -> None:
        peak = peak_rss_mb(self.relay_child.process.pid)
        if peak is not None:
            self.relay_peaks.append(peak)
        self.relay_child.stop()

    def stop(self) -> None:
        for child in reversed(self.children):
            child.stop()
        drop_database(self.db_name)

    # --- measuring --------------------------------------------------------------------------------

    def measure(
        self, sides: dict[str, tuple[str, Load, int]], connections: int = 32
    ) -> dict[str, Figures]:
        """Each side (base URL, load, server pid) in turn, `rounds` times; a warm-up first."""
        figures: dict[str, Figures] = {name: Figures([]) for name in sides}
        if self.plan.warmup:
            for base, load, pid in sides.values():
                self.wrk.run(
                    base, load, connections=connections, seconds=self.plan.warmup, server_pid=pid
                )
        for _ in range(self.plan.rounds):
            for name, (base, load, pid) in sides.items():
                figures[name].runs.append(
                    self.wrk.run(
                        base,
                        load,
                        connections=connections,
                        seconds=self.plan.seconds,
                        server_pid=pid,
                    )
                )
        return figures

    def api_side(self, load: Load) -> tuple[str, Load, int]:
        return self.api, load, self.api_child.process.pid

    def raw_side(self, load: Load) -> tuple[str, Load, int]:
        return self.raw, load, self.raw_child.process.pid

    def record(self, name: str, figures: Figures, baseline: str | None = None) -> None:
        self.results["scenarios"][name] = figures.summary()
        line = (
            f"  {name:<16} {figures.rps:9.1f} req/s  p50 {figures.p50_ms:7.2f}  "
            f"p99 {figures.p99_ms:7.2f} ms"
        )
        line += f"  server {figures.server_cpu:4.2f} cores, wrk {figures.wrk_cpu:4.2f}"
        print(line + (f"  errors {figures.errors}" if figures.errors else ""), flush=True)

    def baseline(self, name: str, figures: Figures) -> None:
        self.results["baselines"][name] = round(figures.rps, 1)
        self.results.setdefault("baseline_runs", {})[name] = figures.summary()
        print(f"  {name:<16} {figures.rps:9.1f} req/s  (baseline)", flush=True)

    # --- the run ----------------------------------------------------------------------------------

    async def seed(self) -> tuple[list[str], list[str]]:
        """Invoices created through the API, the relay and the 0 ms upstream (201)."""
        numbers: list[str] = []
        keys: list[str] = []
        gate = asyncio.Semaphore(8)
        async with aiohttp.ClientSession() as session:

            async def one(i: int) -> None:
                key = f"seed-{i}"
                for attempt in range(30):
                    async with (
                        gate,
                        session.post(
                            f"{self.api}/v1/invoices",
                            data=BODY,
                            headers={**POST_HEADERS, "Idempotency-Key": key},
                        ) as response,
                    ):
                        payload = await response.json()
                    # 503: the shared server is out of connections for a moment (other test suites);
                    # the same key again is safe.
                    if response.status == 503 and attempt < 29:
                        await asyncio.sleep(1)
                        continue
                    if response.status != 201:
                        raise RuntimeError(f"seeding: HTTP {response.status} {payload}")
                    break
                numbers.append(payload["invoiceNumber"])
                keys.append(key)

            await asyncio.gather(*(one(i) for i in range(self.plan.seed)))
        return numbers, keys

    def reads_and_replay(self, numbers: list[str], keys: list[str]) -> None:
        print("trivial, read, list, replay (32 connections)", flush=True)
        trivial = self.measure(
            {
                "trivial": self.api_side(Load("/livez")),
                "trivial_rps": self.raw_side(Load("/trivial")),
            }
        )
        self.record("trivial", trivial["trivial"])
        self.baseline("trivial_rps", trivial["trivial_rps"])
        read = self.measure(
            {
                "read": self.api_side(
                    Load("/", paths=[f"/v1/invoices/{n}" for n in numbers], headers=AUTH)
                ),
                "asyncpg_read_rps": self.raw_side(Load("/", paths=[f"/read/{n}" for n in numbers])),
            }
        )
        self.record("read", read["read"])
        self.baseline("asyncpg_read_rps", read["asyncpg_read_rps"])
        listing = self.measure(
            {
                "list": self.api_side(Load("/v1/invoices?limit=50", headers=AUTH)),
                "asyncpg_list_rps": self.raw_side(Load("/list?limit=50")),
            }
        )
        self.record("list", listing["list"])
        self.baseline("asyncpg_list_rps", listing["asyncpg_list_rps"])
        replay = Load(
            "/v1/invoices",
            method="POST",
            headers=POST_HEADERS,
            body=BODY,
            keys=keys[: self.plan.seed],
        )
        replays = self.measure(
            {
                "replay": self.api_side(replay),
                "asyncpg_read_rps": self.raw_side(Load("/", paths=[f"/read/{n}" for n in numbers])),
            }
        )
        self.record("replay", replays["replay"])
        self.results["baseline_runs"]["asyncpg_read_rps_beside_replay"] = replays[
            "asyncpg_read_rps"
        ].summary()

    async def creates(self, conn: asyncpg.Connection) -> None:
        print(
            "create_async, raw create, pgbench (32 connections; pgbench: the pool's 20)", flush=True
        )
        await scale.drain(conn)
        create = Load(
            "/v1/invoices",
            method="POST",
            headers={**POST_HEADERS, "Prefer": "respond-async"},
            body=BODY,
            new_keys="async",
        )
        raw = Load("/create", method="POST", headers=POST_HEADERS, body=BODY, new_keys="raw")
        figures = self.measure({"create_async": self.api_side(create), "raw": self.raw_side(raw)})
        self.record("create_async", figures["create_async"])
        self.baseline("raw_create_rps", figures["raw"])
        print(f"  (took {await scale.settle(conn):,} queued commands off the queue)", flush=True)
        payload = await conn.fetchval("SELECT payload::text FROM operations ORDER BY seq LIMIT 1")
        seconds = self.plan.seconds * self.plan.rounds
        tps = scale.pgbench(
            self.dsn, self.work, payload, seconds=seconds, clients=self.plan.pool_size
        )
        self.results["baselines"]["pgbench_create_tps"] = tps
        print(f"  {'pgbench_create_tps':<16} {tps:9.1f} tps  (baseline)", flush=True)
        print(f"  (took {await scale.settle(conn):,} queued commands off the queue)", flush=True)

        print("direct upstream call, create_sync at 1 and 32 connections", flush=True)
        direct = await scale.direct_upstream_p50_ms(self.upstream_url(0), self.plan.direct_calls)
        self.results["baselines"]["direct_upstream_p50_ms"] = direct
        print(f"  {'direct_upstream_p50_ms':<16} {direct:9.2f} ms  (baseline)", flush=True)
        for connections in (1, 32):
            sync = Load(
                "/v1/invoices",
                method="POST",
                headers=POST_HEADERS,
                body=BODY,
                new_keys=f"sync{connections}",
            )
            figures = self.measure({"s": self.api_side(sync)}, connections=connections)
            self.record(f"create_sync_c{connections}", figures["s"])
            await scale.drain(conn)

    async def relay(self, conn: asyncpg.Connection) -> None:
        print("relay: drain to the 0 ms upstream, then at 150 ms", flush=True)
        drained = await scale.relay_rate(conn, self.plan.drain_commands, self.plan.relay_limit_s)
        self.results["relay_drain"] = drained
        print(f"  relay_drain      {drained}", flush=True)
        self.stop_relay()
        self.relay_child = self.start_relay(150)
        concurrency = int(self.env.get("RELAY_CONCURRENCY", "32"))
        bound = round(concurrency / 0.150, 1)
        self.results["baselines"]["bound_per_s"] = bound
        latency = await scale.relay_rate(conn, self.plan.latency_commands, self.plan.relay_limit_s)
        self.results["relay_latency"] = latency
        print(f"  relay_latency    {latency} (bound {bound})", flush=True)
        self.stop_relay()

    async def store_scale(self, conn: asyncpg.Connection, numbers: list[str]) -> None:
        large = self.plan.large_rows
        print(f"store_scale: growing the table to {large:,} invoices", flush=True)
        began = time.perf_counter()
        await scale.grow(conn, large)
        print(f"  grown in {time.perf_counter() - began:.1f} s", flush=True)
        sides = {
            "read": self.api_side(
                Load("/", paths=[f"/v1/invoices/{n}" for n in numbers], headers=AUTH)
            ),
            "raw_read": self.raw_side(Load("/", paths=[f"/read/{n}" for n in numbers])),
            "list": self.api_side(Load("/v1/invoices?limit=50", headers=AUTH)),
            "raw_list": self.raw_side(Load("/list?limit=50")),
        }
        figures = self.measure(sides)
        small = self.results["scenarios"]
        self.results["store_scale"] = {
            "rows_small": self.plan.rows,
            "rows_large": large,
            "read_10k_rps": small["read"]["rps"],
            "read_1m_rps": round(figures["read"].rps, 1),
            "list_10k_rps": small["list"]["rps"],
            "list_1m_rps": round(figures["list"].rps, 1),
            "asyncpg_read_1m_rps": round(figures["raw_read"].rps, 1),
            "asyncpg_list_1m_rps": round(figures["raw_list"].rps, 1),
        }
        for name in ("read", "list"):
            print(f"  {name} at {large:,}: {figures[name].rps:9.1f} req/s", flush=True)

    async def run(self) -> None:
        conn = await asyncpg.connect(self.dsn)
        try:
            began = time.perf_counter()
            numbers, keys = await self.seed()
            await scale.clone_invoices(conn, numbers[0], self.plan.rows - len(numbers))
            sample = await scale.sample_numbers(conn, 200)
            print(
                f"seeded {len(numbers)} invoices through the API and the relay, "
                f"{self.plan.rows:,} in the store ({time.perf_counter() - began:.1f} s)",
                flush=True,
            )
            read_numbers = numbers + [n for n in sample if n not in numbers]
            self.reads_and_replay(read_numbers, keys)
            await self.creates(conn)
            await self.relay(conn)
            await self.store_scale(conn, read_numbers)
        finally:
            await conn.close()
        self.results["memory"] = {
            "api_rss_mb": peak_rss_mb(self.api_child.process.pid),
            "relay_rss_mb": max(self.relay_peaks, default=None),
            "raw_app_rss_mb": peak_rss_mb(self.raw_child.process.pid),
        }


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", default=os.environ.get("BENCH_QUICK") == "1"
    )
    parser.add_argument(
        "--smoke", action="store_true", default=os.environ.get("BENCH_SMOKE") == "1"
    )
    parser.add_argument(
        "--out", type=Path, default=Path(os.environ.get("BENCH_OUT", "bench/results.json"))
    )
    args = parser.parse_args()
    plan = SMOKE if args.smoke else QUICK if args.quick else FULL
    mode = "smoke" if args.smoke else "quick" if args.quick else "full"
    signal.signal(signal.SIGTERM, _terminate)
    load_before = os.getloadavg()
    started = time.perf_counter()
    print(f"bench ({mode}): {os.cpu_count()} CPUs, load average {load_before[0]:.2f}", flush=True)
    with tempfile.TemporaryDirectory(prefix="igw_bench_") as work:
        bench = Bench(plan, Path(work))
        try:
            bench.start()
            asyncio.run(bench.run())
        except KeyboardInterrupt:
            print("bench: interrupted; tearing down", file=sys.stderr, flush=True)
            return 130
        except Exception:
            for child in bench.children:
                print(f"--- {child.name}:\n{child.tail()}", file=sys.stderr, flush=True)
            raise
        finally:
            bench.stop()
    results = bench.results
    results["run"] = {
        "mode": mode,
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "code": git_describe(),
        "seconds": round(time.perf_counter() - started, 1),
        "plan": plan.__dict__,
        "load_generator": "wrk -t1 (bench/wrk/scenario.lua)",
        "loadavg_1m_before": round(load_before[0], 2),
        "loadavg_1m_after": round(os.getloadavg()[0], 2),
    }
    results["machine"] = {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": {
            name: version(name)
            for name in ("fastapi", "starlette", "uvicorn", "asyncpg", "sqlalchemy")
        },
    }
    print()
    print_table(results)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(f"\nwrote {args.out} in {results['run']['seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

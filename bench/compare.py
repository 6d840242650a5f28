"""Two versions of the API back to back in one run: the way every optimisation of issue 14 was \
measured.

    uv run python -m bench.compare --before DIR --after DIR [--rounds 6] [--seconds 3]
                                   [--scenarios trivial,read,list,replay,create_async]

DIR is a copy of the tree (`git archive <rev> | tar -x -C DIR`). One database, one relay and one
0 ms fake upstream serve both; each version runs as its own `invoicing-gateway api` process (from
its DIR), and wrk drives them in turns, before/after/before/after, so that whatever else the machine
does falls on both alike. Reported per scenario: req/s of each, after/before, and the same ratio in
requests per CPU-second of the API process (what a busy machine, where the API does not get a whole
core, moves least). Nothing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import asyncpg

from bench import scale
from bench.harness import HOST, Child, Figures, Load, free_port
from bench.run import AUTH, BODY, POST_HEADERS, QUICK, Bench


class Located(Child):
    """A child process started in another tree (its own `app` package)."""

    def __init__(
        self, name: str, argv: list[str], env: dict[str, str], log_dir: Path, cwd: Path
    ) -> None:
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                argv, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )


def loads(numbers: list[str], keys: list[str]) -> dict[str, Load]:
    return {
        "trivial": Load("/livez"),
        "read": Load("/", paths=[f"/v1/invoices/{n}" for n in numbers], headers=AUTH),
        "list": Load("/v1/invoices?limit=50", headers=AUTH),
        "replay": Load("/v1/invoices", method="POST", headers=POST_HEADERS, body=BODY, keys=keys),
        "create_async": Load(
            "/v1/invoices",
            method="POST",
            headers={**POST_HEADERS, "Prefer": "respond-async"},
            body=BODY,
            new_keys="cmp",
        ),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, required=True)
    parser.add_argument("--after", type=Path, required=True)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--scenarios", default="trivial,read,list,replay,create_async")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="igw_compare_") as work_dir:
        work = Path(work_dir)
        bench = Bench(QUICK, work)
        apis: dict[str, tuple[str, int]] = {}
        try:
            # the database, upstreams, the relay (and an API of this tree for seeding)
            bench.start()
            for name, tree in (("before", args.before), ("after", args.after)):
                port = free_port()
                child = Located(
                    f"api-{name}",
                    [sys.executable, "-m", "app", "api", "--host", HOST, "--port", str(port)],
                    {**bench.env, "CYBERSOURCE_BASE_URL": bench.upstream_url(0)},
                    work,
                    tree.resolve(),
                )
                bench.children.append(child)
                child.wait_ready(f"http://{HOST}:{port}/readyz", 90)
                apis[name] = (f"http://{HOST}:{port}", child.process.pid)
            numbers, keys = asyncio.run(bench.seed())

            async def fill() -> None:
                conn = await asyncpg.connect(bench.dsn)
                await scale.clone_invoices(conn, numbers[0], 10_000 - len(numbers))
                await conn.close()

            asyncio.run(fill())
            print(
                f"{'scenario':<13} {'before':>9} {'after':>9} {'after/before':>13} "
                f"{'per CPU-s':>10}  rounds (after/before each)"
            )
            for scenario in args.scenarios.split(","):
                load = loads(numbers, keys)[scenario]
                figures = {name: Figures([]) for name in apis}
                for base, pid in apis.values():  # warm-up
                    bench.wrk.run(
                        base, load, connections=args.connections, seconds=1, server_pid=pid
                    )
                for turn in range(args.rounds):
                    order = list(apis.items()) if turn % 2 == 0 else list(reversed(apis.items()))
                    for name, (base, pid) in order:
                        figures[name].runs.append(
                            bench.wrk.run(
                                base,
                                load,
                                connections=args.connections,
                                seconds=args.seconds,
                                server_pid=pid,
                            )
                        )
                before, after = figures["before"], figures["after"]
                per_cpu = (after.rps / after.server_cpu) / (before.rps / before.server_cpu)
                pairs = [
                    a.rps / b.rps for a, b in zip(after.runs, before.runs, strict=True) if b.rps
                ]
                print(
                    f"{scenario:<13} {before.rps:9.1f} {after.rps:9.1f} "
                    f"{after.rps / before.rps:13.3f} {per_cpu:10.3f}  median pair "
                    f"{statistics.median(pairs):.3f} [{', '.join(f'{p:.2f}' for p in pairs)}]  "
                    f"p99/p50 before {before.p99_ms / before.p50_ms:.1f} after "
                    f"{after.p99_ms / after.p50_ms:.1f}",
                    flush=True,
                )
                if scenario == "create_async":
                    asyncio.run(_drain(bench.dsn))
        finally:
            bench.stop()
    return 0


async def _drain(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await scale.drain(conn)
    finally:
        await conn.close()


if __name__ == "__main__":
    sys.exit(main())

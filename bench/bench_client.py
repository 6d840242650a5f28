"""Throughput of CybersourceClient.create_invoice against a local fake upstream, with an httpx \
baseline.

    uv run python -m bench.bench_client [--duration 10] [--concurrency 64] [--delays 0,150]
                                        [--loop asyncio|uvloop]
                                        [--json-out bench/results/client.json]

For each upstream delay a fake Cybersource (bench/fake_upstream.py) runs in a SEPARATE process; then
`--concurrency` workers keep that many signed create_invoice calls in flight for `--duration`
seconds, first with our client (aiohttp, pooled session), then with an httpx.AsyncClient doing the
same work per call (serialise the same request model once, HTTP-Signature-sign it, POST, parse into
InvoiceResponse).
The implementations take turns in `--rounds` slices so that load from elsewhere hits them alike.
With a delay the concurrency bound is concurrency / delay (64 / 0.150 s = 426.7 calls/s); the table
shows calls/s, latency percentiles, % of that bound and the ratio to the httpx baseline.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import asdict, dataclass
from decimal import Decimal
from importlib.metadata import version
from pathlib import Path
from typing import Any

import aiohttp
import httpx
from pydantic import SecretStr

from app.cybersource.client import CONTENT_TYPE, CybersourceClient
from app.cybersource.models import InvoiceCreateRequest, InvoiceResponse
from app.cybersource.signing import SigningCredentials, decode_secret, sign_http_signature
from app.cybersource.transport import Timeouts
from app.settings import MerchantProfile

MERCHANT = "acme_invoicing_test"
KEY_ID = "5f0c7a2e-3b1d-4c8e-9a6f-0123456789ab"
SECRET = "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA="
PATH = "/invoicing/v2/invoices"
PROJECT_ROOT = Path(__file__).resolve().parents[1]

REQUEST = InvoiceCreateRequest.model_validate(
    {
        "customerInformation": {"name": "Tanya Lee", "email": "tanya.lee@my-email.world"},
        "invoiceInformation": {
            "description": "Consulting, November",
            "dueDate": "2025-12-31",
            "sendImmediately": False,
            "deliveryMode": "none",
        },
        "orderInformation": {
            "amountDetails": {"totalAmount": Decimal("100.00"), "currency": "USD"},
            "lineItems": [
                {
                    "productSku": "C-1",
                    "productName": "Consulting",
                    "quantity": 1,
                    "unitPrice": Decimal("100.00"),
                    "totalAmount": Decimal("100.00"),
                }
            ],
        },
    }
)


@dataclass
class Cell:
    client: str
    delay_ms: float
    concurrency: int
    duration_s: float
    calls: int
    errors: int
    calls_per_s: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    bound_per_s: float | None
    pct_of_bound: float | None
    ratio_vs_httpx: float | None = None


@contextlib.asynccontextmanager
async def fake_upstream(delay_ms: float, loop: str) -> AsyncIterator[str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.fake_upstream",
        "--delay-ms",
        str(delay_ms),
        "--loop",
        loop,
        stdout=asyncio.subprocess.PIPE,
        cwd=PROJECT_ROOT,
    )
    try:
        assert process.stdout is not None
        line = (await asyncio.wait_for(process.stdout.readline(), 20)).decode().strip()
        if not line.startswith("LISTENING "):
            raise RuntimeError(f"fake upstream did not start: {line!r}")
        yield f"http://127.0.0.1:{int(line.split()[1])}"
    finally:
        if process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), 10)
            except TimeoutError:
                process.kill()
                await process.wait()


async def drive(
    call: Callable[[], Awaitable[Any]], *, concurrency: int, duration: float, warmup: float
) -> tuple[int, int, list[float], float]:
    """Keep `concurrency` calls in flight; count the calls that complete inside the measured window
    [warm-up end, warm-up end + duration], and divide by exactly that window."""
    latencies: list[float] = []
    errors = 0
    start_measure = time.perf_counter() + warmup
    stop_at = start_measure + duration

    async def worker() -> None:
        nonlocal errors
        while True:
            began = time.perf_counter()
            if began >= stop_at:
                return
            try:
                await call()
            except Exception:
                if start_measure <= time.perf_counter() <= stop_at:
                    errors += 1
                continue
            ended = time.perf_counter()
            if start_measure <= ended <= stop_at:
                latencies.append(ended - began)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return len(latencies), errors, latencies, duration


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0] * 1000
    return statistics.quantiles(values, n=1000, method="inclusive")[int(q * 1000) - 1] * 1000


def make_cell(
    name: str, delay_ms: float, concurrency: int, result: tuple[int, int, list[float], float]
) -> Cell:
    calls, errors, latencies, elapsed = result
    rate = calls / elapsed
    bound = concurrency / (delay_ms / 1000) if delay_ms > 0 else None
    return Cell(
        client=name,
        delay_ms=delay_ms,
        concurrency=concurrency,
        duration_s=round(elapsed, 2),
        calls=calls,
        errors=errors,
        calls_per_s=round(rate, 1),
        p50_ms=round(percentile(latencies, 0.5), 2),
        p90_ms=round(percentile(latencies, 0.9), 2),
        p99_ms=round(percentile(latencies, 0.99), 2),
        bound_per_s=round(bound, 1) if bound else None,
        pct_of_bound=round(100 * rate / bound, 1) if bound else None,
    )


Call = Callable[[], Awaitable[Any]]
Result = tuple[int, int, list[float], float]


@contextlib.asynccontextmanager
async def ours_client(base_url: str, args: argparse.Namespace) -> AsyncIterator[Call]:
    profile = MerchantProfile(
        merchant_id=MERCHANT, key_id=KEY_ID, shared_secret=SecretStr(SECRET), base_url=base_url
    )
    async with CybersourceClient(
        profile,
        timeouts=Timeouts(connect=5, read=30, total=45),
        max_connections=max(100, args.concurrency),
    ) as client:

        async def call() -> None:
            result = await client.create_invoice(REQUEST)
            assert result.id == "98753"

        yield call


@contextlib.asynccontextmanager
async def httpx_client(base_url: str, args: argparse.Namespace) -> AsyncIterator[Call]:
    """The baseline: the same work per call (serialise, sign, POST, parse into InvoiceResponse) on
    httpx."""
    credentials = SigningCredentials(
        merchant_id=MERCHANT, key_id=KEY_ID, secret=decode_secret(SECRET)
    )
    limits = httpx.Limits(
        max_connections=max(100, args.concurrency),
        max_keepalive_connections=max(100, args.concurrency),
    )
    async with httpx.AsyncClient(
        limits=limits, timeout=httpx.Timeout(45, connect=5, read=30)
    ) as client:
        url = base_url + PATH

        async def call() -> None:
            body = REQUEST.to_wire()
            headers = sign_http_signature(
                credentials, method="POST", host="127.0.0.1", target=PATH, body=body
            )
            headers["Content-Type"] = CONTENT_TYPE
            response = await client.post(url, content=body, headers=headers)
            if response.status_code != 201:
                raise RuntimeError(response.status_code)
            result = InvoiceResponse.from_upstream(
                response.json(),
                http_status=response.status_code,
                correlation_id=response.headers.get("v-c-correlation-id"),
            )
            assert result.id == "98753"

        yield call


@contextlib.asynccontextmanager
async def bare_aiohttp_client(base_url: str, args: argparse.Namespace) -> AsyncIterator[Call]:
    """The floor under our client: the same signed POST straight through aiohttp, body encoded once,
    JSON parsed, no model."""
    credentials = SigningCredentials(
        merchant_id=MERCHANT, key_id=KEY_ID, secret=decode_secret(SECRET)
    )
    connector = aiohttp.TCPConnector(limit=max(100, args.concurrency))
    async with aiohttp.ClientSession(connector=connector) as session:
        url = base_url + PATH
        body = REQUEST.to_wire()

        async def call() -> None:
            headers = sign_http_signature(
                credentials, method="POST", host="127.0.0.1", target=PATH, body=body
            )
            headers["Content-Type"] = CONTENT_TYPE
            async with session.post(url, data=body, headers=headers) as response:
                payload = await response.read()
            if response.status != 201:
                raise RuntimeError(response.status)
            json.loads(payload)

        yield call


async def run(args: argparse.Namespace) -> list[Cell]:
    """Per delay: the implementations take turns in `--rounds` slices of `duration / rounds` seconds
    each, so a burst of load from elsewhere on the machine hits all of them alike; the slices are
    summed."""
    implementations: list[tuple[str, Any]] = [("ours (aiohttp)", ours_client)]
    if args.bare_aiohttp:
        implementations.append(("bare aiohttp", bare_aiohttp_client))
    if not args.skip_httpx:
        implementations.append(("httpx baseline", httpx_client))
    cells: list[Cell] = []
    for delay in args.delays:
        async with (
            fake_upstream(delay, args.upstream_loop) as base_url,
            contextlib.AsyncExitStack() as stack,
        ):
            calls = {
                name: await stack.enter_async_context(factory(base_url, args))
                for name, factory in implementations
            }
            totals: dict[str, list[Any]] = {name: [0, 0, [], 0.0] for name in calls}
            for round_no in range(args.rounds):
                warmup = args.warmup if round_no == 0 else min(args.warmup, 0.3)
                for name, call in calls.items():
                    done, errors, latencies, elapsed = await drive(
                        call,
                        concurrency=args.concurrency,
                        duration=args.duration / args.rounds,
                        warmup=warmup,
                    )
                    total = totals[name]
                    total[0] += done
                    total[1] += errors
                    total[2] += latencies
                    total[3] += elapsed
            by_name = {
                name: make_cell(name, delay, args.concurrency, (t[0], t[1], t[2], t[3]))
                for name, t in totals.items()
            }
            baseline = by_name.get("httpx baseline")
            for cell in by_name.values():
                if baseline is not None and cell is not baseline and baseline.calls_per_s:
                    cell.ratio_vs_httpx = round(cell.calls_per_s / baseline.calls_per_s, 1)
                print(
                    f"  delay {delay:g} ms  {cell.client:<16}: {cell.calls_per_s:8.1f} calls/s",
                    flush=True,
                )
            cells.extend(by_name.values())
    return cells


def table(cells: list[Cell]) -> str:
    head = (
        f"{'client':<16} {'delay':>6} {'in flight':>9} {'calls':>7} {'err':>4} {'calls/s':>9} "
        f"{'p50 ms':>8} {'p99 ms':>8} {'bound/s':>8} {'% bound':>8} {'x httpx':>8}"
    )
    lines = [head, "-" * len(head)]
    for c in cells:
        lines.append(
            f"{c.client:<16} {c.delay_ms:>4g}ms {c.concurrency:>9} {c.calls:>7} {c.errors:>4} "
            f"{c.calls_per_s:>9.1f} {c.p50_ms:>8.2f} {c.p99_ms:>8.2f} "
            f"{c.bound_per_s or float('nan'):>8.1f} "
            f"{c.pct_of_bound if c.pct_of_bound is not None else float('nan'):>8.1f} "
            f"{c.ratio_vs_httpx if c.ratio_vs_httpx is not None else float('nan'):>8.1f}"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds per cell")
    parser.add_argument(
        "--warmup",
        type=float,
        default=1.0,
        help="unmeasured seconds before the first slice (0.3 s before the others)",
    )
    parser.add_argument(
        "--rounds", type=int, default=4, help="slices per implementation, taken in turns"
    )
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument(
        "--delays",
        type=lambda text: [float(x) for x in text.split(",")],
        default=[0.0, 150.0],
        help="upstream delays in ms, comma-separated",
    )
    parser.add_argument(
        "--loop",
        choices=["asyncio", "uvloop"],
        default="asyncio",
        help="event loop of the client side (uvicorn[standard] runs the app on uvloop)",
    )
    parser.add_argument("--upstream-loop", choices=["asyncio", "uvloop"], default="uvloop")
    parser.add_argument("--skip-httpx", action="store_true")
    parser.add_argument(
        "--bare-aiohttp",
        action="store_true",
        help="also time a hand-rolled signed aiohttp POST (no models): the transport's floor",
    )
    parser.add_argument("--json-out", type=Path, default=Path("bench/results/client.json"))
    args = parser.parse_args()

    print(
        f"bench_client: {args.concurrency} in flight, {args.duration:g}s per cell, "
        f"client loop {args.loop}, {os.cpu_count()} CPUs",
        flush=True,
    )
    if args.loop == "uvloop":
        import uvloop

        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            cells = runner.run(run(args))
    else:
        cells = asyncio.run(run(args))
    print()
    print(table(cells))
    report = {
        "benchmark": (
            "CybersourceClient.create_invoice, signed, against a fake upstream in another process"
        ),
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "aiohttp": version("aiohttp"),
            "httpx": version("httpx"),
            "client_loop": args.loop,
            "upstream_loop": args.upstream_loop,
        },
        "config": {
            "concurrency": args.concurrency,
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "rounds": args.rounds,
            "delays_ms": args.delays,
        },
        "targets": {"calls_per_s_at_0ms": 2000, "pct_of_bound_at_150ms": 90},
        "results": [asdict(cell) for cell in cells],
    }
    args.json_out.parent.mkdir(parents=True, exist_ok=True)
    args.json_out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"\nwrote {args.json_out}")


if __name__ == "__main__":
    main()

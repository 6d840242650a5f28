"""Throughput of the simulator on one core: signed GETs and creates per second, and the 401 path.

    uv run python bench/bench_simulator.py [--seconds 10] [--connections 50]
                                           [--out bench/results/simulator.json]

The simulator runs as its real command (uvloop + httptools, request log off) pinned to CPU 0 with
`taskset` when available; the load comes from `wrk` pinned to CPU 1 (apt-get install wrk), or,
without wrk, from an aiohttp load generator in a second process (which then may be the bottleneck:
the table says which driver ran). Signed headers are computed once per scenario: a Date stays valid
for the simulator's 300 s tolerance and Cybersource's signature has no nonce, so replaying them is
legitimate.
This is a measurement, not a test: nothing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.cybersource.signing import (  # noqa: E402
    SigningCredentials,
    decode_secret,
    sign_http_signature,
)
from app.settings import LOCAL_KEY_ID, LOCAL_MERCHANT_ID, LOCAL_SHARED_SECRET  # noqa: E402

CREDS = SigningCredentials(
    merchant_id=LOCAL_MERCHANT_ID, key_id=LOCAL_KEY_ID, secret=decode_secret(LOCAL_SHARED_SECRET)
)
HOST = "127.0.0.1"
CREATE_BODY = json.dumps(
    {
        "customerInformation": {"name": "Bench", "email": "bench@example.com"},
        "invoiceInformation": {
            "description": "bench",
            "dueDate": "2030-01-01",
            "deliveryMode": "none",
        },
        "orderInformation": {"amountDetails": {"totalAmount": "10.00", "currency": "USD"}},
    }
).encode()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def _request(
    method: str, target: str, body: bytes | None, *, signed: bool = True, bad: bool = False
) -> dict[str, Any]:
    headers = (
        sign_http_signature(CREDS, method=method, host=HOST, target=target, body=body)
        if signed
        else {}
    )
    if bad:
        headers["Signature"] = headers["Signature"].replace('signature="', 'signature="AA')
    if body is not None:
        headers["Content-Type"] = "application/json;charset=utf-8"
    return {"method": method, "target": target, "body": body, "headers": headers}


def _lua(request: dict[str, Any]) -> str:
    lines = [f'wrk.method = "{request["method"]}"', f'wrk.path = "{request["target"]}"']
    for name, value in request["headers"].items():
        lines.append(f'wrk.headers["{name}"] = {json.dumps(value)}')
    if request["body"] is not None:
        lines.append(f"wrk.body = {json.dumps(request['body'].decode())}")
    return "\n".join(lines) + "\n"


def _run_wrk(
    base: str, request: dict[str, Any], seconds: int, connections: int, pin: list[str]
) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(_lua(request))
    try:
        out = subprocess.run(
            [
                *pin,
                "wrk",
                "-t1",
                f"-c{connections}",
                f"-d{seconds}s",
                "--latency",
                "-s",
                script.name,
                base + request["target"],
            ],
            capture_output=True,
            text=True,
            check=True,
        )
    finally:
        os.unlink(script.name)
    text = out.stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))  # type: ignore[union-attr]
    p50 = re.search(r"50%\s+([\d.]+\w+)", text)
    p99 = re.search(r"99%\s+([\d.]+\w+)", text)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    return {
        "rps": rps,
        "p50": p50.group(1) if p50 else None,
        "p99": p99.group(1) if p99 else None,
        "non_2xx": int(non2xx.group(1)) if non2xx else 0,
    }


async def _aiohttp_load(
    base: str, request: dict[str, Any], seconds: int, connections: int
) -> dict[str, Any]:
    import aiohttp

    done, statuses = 0, {}
    deadline = time.perf_counter() + seconds

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            async with session.request(
                request["method"],
                base + request["target"],
                data=request["body"],
                headers=request["headers"],
            ) as resp:
                await resp.read()
                statuses[resp.status] = statuses.get(resp.status, 0) + 1
                done += 1

    connector = aiohttp.TCPConnector(limit=connections)
    async with aiohttp.ClientSession(connector=connector) as session:
        started = time.perf_counter()
        await asyncio.gather(*(worker(session) for _ in range(connections)))
        elapsed = time.perf_counter() - started
    ok = sum(v for k, v in statuses.items() if k < 400)
    return {"rps": round(done / elapsed, 1), "p50": None, "p99": None, "non_2xx": done - ok}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "simulator.json"))
    args = parser.parse_args()

    taskset = shutil.which("taskset") and (os.cpu_count() or 1) >= 2
    pin_server = ["taskset", "-c", "0"] if taskset else []
    pin_load = ["taskset", "-c", "1"] if taskset else []
    port = _free_port()
    base = f"http://{HOST}:{port}"
    server = subprocess.Popen(
        [
            *pin_server,
            sys.executable,
            "-m",
            "app.simulator.cli",
            "--port",
            str(port),
            "--no-request-log",
            "--log-level",
            "WARNING",
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(200):
            try:
                with urllib.request.urlopen(f"{base}/__sim/health", timeout=1):
                    break
            except OSError:
                time.sleep(0.05)
        # One invoice to read back.
        created = _request("POST", "/invoicing/v2/invoices", CREATE_BODY)
        req = urllib.request.Request(
            base + created["target"], data=CREATE_BODY, headers=created["headers"], method="POST"
        )
        with urllib.request.urlopen(req) as resp:
            invoice_id = json.loads(resp.read())["id"]
        scenarios = {
            "unsigned GET /__sim/health (framework floor)": _request(
                "GET", "/__sim/health", None, signed=False
            ),
            "signed GET invoiceSettings": _request("GET", "/invoicing/v2/invoiceSettings", None),
            "signed GET invoice by id": _request(
                "GET", f"/invoicing/v2/invoices/{invoice_id}", None
            ),
            "signed GET list offset=0&limit=10": _request(
                "GET", "/invoicing/v2/invoices?offset=0&limit=10", None
            ),
            "signed POST create invoice": created,
            "bad signature -> 401": _request(
                "GET", "/invoicing/v2/invoiceSettings", None, bad=True
            ),
        }
        driver = "wrk" if shutil.which("wrk") else "aiohttp"
        results = []
        for name, request in scenarios.items():
            if driver == "wrk":
                figures = _run_wrk(base, request, args.seconds, args.connections, pin_load)
            else:
                figures = asyncio.run(_aiohttp_load(base, request, args.seconds, args.connections))
            results.append({"scenario": name, **figures})
            print(
                f"{name:<48} {figures['rps']:>10.0f} req/s  p50 {figures['p50'] or '-':>8}  "
                f"p99 {figures['p99'] or '-':>8}  non-2xx {figures['non_2xx']}",
                flush=True,
            )
    finally:
        server.terminate()
        server.wait(10)
    report = {
        "driver": driver,
        "connections": args.connections,
        "seconds": args.seconds,
        "server_pinned_to_one_core": bool(taskset),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "results": results,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()

"""The `simulator` command line: flags and files become a config; the real process serves signed
calls."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import aiohttp

from app.settings import LOCAL_KEY_ID, LOCAL_MERCHANT_ID, LOCAL_SHARED_SECRET, LOCAL_WEBHOOK_SECRET
from app.simulator import MerchantConfig, SimulatorConfig
from app.simulator.cli import build_parser, config_from_args
from tests.simulator.helpers import RawClient


def _config(*argv: str) -> SimulatorConfig:
    return config_from_args(build_parser().parse_args(list(argv)))


def test_defaults_are_the_facades_local_credentials() -> None:
    config = _config()
    [merchant] = config.merchants
    assert (merchant.merchant_id, merchant.key_id, merchant.shared_secret) == (
        LOCAL_MERCHANT_ID,
        LOCAL_KEY_ID,
        LOCAL_SHARED_SECRET,
    )
    assert config.webhook is None and config.host_name is None and config.clock_tolerance_s == 300


def test_flags(tmp_path: Path) -> None:
    faults = tmp_path / "faults.json"
    faults.write_text(json.dumps([{"path": "*", "status": 503, "times": 1}]))
    config = _config(
        "--merchant-id",
        "m1",
        "--key-id",
        "k1",
        "--shared-secret",
        LOCAL_SHARED_SECRET,
        "--webhook-url",
        "http://127.0.0.1:9/hook",
        "--webhook-key-id",
        "wk",
        "--webhook-secret",
        LOCAL_WEBHOOK_SECRET,
        "--webhook-retry-delays",
        "0.2,0.5,1",
        "--host-name",
        "apitest.cybersource.com",
        "--faults",
        str(faults),
        "--clock-tolerance",
        "60",
    )
    assert config.merchants[0].merchant_id == "m1" and config.host_name == "apitest.cybersource.com"
    assert config.webhook is not None and config.webhook.retry_delays == (0.2, 0.5, 1.0)
    assert config.clock_tolerance_s == 60 and config.faults[0]["status"] == 503
    inline = _config("--faults", '{"path": "/invoicing/*", "action": "latency", "latency_ms": 5}')
    assert inline.faults[0]["action"] == "latency"


def test_merchants_file(tmp_path: Path) -> None:
    path = tmp_path / "merchants.json"
    path.write_text(
        json.dumps(
            {
                "merchants": [
                    {"merchant_id": "m1", "key_id": "k1", "shared_secret": LOCAL_SHARED_SECRET},
                    {
                        "merchant_id": "m2",
                        "key_id": "k2",
                        "shared_secret": LOCAL_SHARED_SECRET,
                        "portfolio_id": "p",
                    },
                ],
                "webhook": {
                    "url": "http://127.0.0.1:9/hook",
                    "key_id": "wk",
                    "secret": LOCAL_WEBHOOK_SECRET,
                    "retry_delays": [1, 2],
                },
                "host_name": "apitest.cybersource.com",
            }
        )
    )
    config = _config("--merchants", str(path), "--webhook-retry-delays", "0.1")
    assert [m.merchant_id for m in config.merchants] == ["m1", "m2"]
    assert config.webhook is not None and config.webhook.retry_delays == (0.1,)
    as_list = tmp_path / "list.json"
    as_list.write_text(
        json.dumps([{"merchant_id": "m3", "key_id": "k3", "shared_secret": LOCAL_SHARED_SECRET}])
    )
    assert [m.merchant_id for m in _config("--merchants", str(as_list)).merchants] == ["m3"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def test_the_real_command_serves_signed_requests_and_logs_without_secrets(
    tmp_path: Path,
) -> None:
    port = _free_port()
    log_path = tmp_path / "sim.log"
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen(
            [sys.executable, "-m", "app", "simulator", "--port", str(port)],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        try:
            base = f"http://127.0.0.1:{port}"
            async with aiohttp.ClientSession() as session:
                deadline = time.monotonic() + 20
                while True:
                    try:
                        async with session.get(f"{base}/__sim/health") as resp:
                            if resp.status == 200:
                                break
                    except aiohttp.ClientConnectionError:
                        pass
                    assert time.monotonic() < deadline, log_path.read_text()
                    await asyncio.sleep(0.1)
                local = MerchantConfig(
                    merchant_id=LOCAL_MERCHANT_ID,
                    key_id=LOCAL_KEY_ID,
                    shared_secret=LOCAL_SHARED_SECRET,
                )
                client = RawClient(base, session, local)
                assert (await client.call("GET", "/invoicing/v2/invoiceSettings")).status == 200
                bad = client.sign("GET", "/invoicing/v2/invoiceSettings", None)
                bad["Signature"] = bad["Signature"].replace('signature="', 'signature="AA')
                assert (
                    await client.send("GET", "/invoicing/v2/invoiceSettings", None, bad)
                ).status == 401
        finally:
            proc.terminate()
            proc.wait(10)
    lines = [json.loads(line) for line in log_path.read_text().splitlines() if line.startswith("{")]
    assert any(line["event"] == "request" and line["status"] == 200 for line in lines)
    assert any(
        line["event"] == "authentication failed" and line["reason"] == "signature does not match"
        for line in lines
    )
    assert LOCAL_SHARED_SECRET not in log_path.read_text()

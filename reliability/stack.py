"""The real processes of one scenario: the simulator, two APIs and two relays, as
`invoicing-gateway` commands in processes of their own, each with its log file. Killed for real
(SIGKILL, SIGTERM)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
API_KEY = "reliability-caller-key"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def api_keys() -> str:
    digest = hashlib.sha256(API_KEY.encode()).hexdigest()
    scopes = ["invoices:read", "invoices:write", "invoices:admin"]
    return json.dumps([{"client": "reliability", "sha256": digest, "scopes": scopes}])


@dataclass
class Process:
    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    ready_url: str
    popen: subprocess.Popen[bytes] | None = None
    starts: int = 0
    ready: bool = False  # answered its readiness probe since it was last started

    def start(self) -> None:
        self.ready = False
        log = self.log_path.open("ab")
        self.popen = subprocess.Popen(  # noqa: S603 (our own command line)
            self.argv, env=self.env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT
        )
        log.close()
        self.starts += 1

    @property
    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def signal(self, sig: signal.Signals) -> None:
        self.ready = False
        if self.running:
            assert self.popen is not None
            self.popen.send_signal(sig)

    async def wait_exit(self, seconds: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while self.running:
            if loop.time() > deadline:
                self.signal(signal.SIGKILL)
            await asyncio.sleep(0.05)

    async def wait_ready(self, seconds: float = 60.0) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        async with httpx.AsyncClient(timeout=2.0) as client:
            while True:
                if not self.running:
                    raise RuntimeError(f"{self.name} exited; see {self.log_path}")
                try:
                    if (await client.get(self.ready_url)).status_code == 200:
                        self.ready = True
                        return
                except httpx.HTTPError:
                    pass
                if loop.time() > deadline:
                    raise RuntimeError(
                        f"{self.name} not ready after {seconds}s; see {self.log_path}"
                    )
                await asyncio.sleep(0.1)


@dataclass
class Stack:
    database_url: str
    workdir: Path
    apis: int = 2
    relays: int = 2
    settings: dict[str, str] = field(default_factory=dict)
    simulator: Process = field(init=False)
    api_processes: list[Process] = field(init=False, default_factory=list)
    relay_processes: list[Process] = field(init=False, default_factory=list)

    def __post_init__(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        python = [sys.executable, "-m", "app"]
        sim_port = free_port()
        self.simulator_url = f"http://127.0.0.1:{sim_port}"
        base_env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.simulator = Process(
            "simulator",
            [
                *python,
                "simulator",
                "--port",
                str(sim_port),
                "--no-request-log",
                "--hang-seconds",
                "10",
                "--fault-seed",
                "15",
                "--log-level",
                "WARNING",
            ],
            base_env,
            self.workdir / "simulator.log",
            f"{self.simulator_url}/__sim/faults",
        )
        env = {
            **base_env,
            "APP_ENV": "test",
            "LOG_LEVEL": "WARNING",
            "DATABASE_URL": self.database_url,
            "DATABASE_POOL_SIZE": "10",
            "CYBERSOURCE_BASE_URL": self.simulator_url,
            "CYBERSOURCE_READ_TIMEOUT": "2",
            "CYBERSOURCE_TOTAL_TIMEOUT": "5",
            "API_KEYS": api_keys(),
            "REQUEST_WAIT_SECONDS": "5",
            "RELAY_BACKOFF_BASE_SECONDS": "0.1",
            "RELAY_BACKOFF_CAP_SECONDS": "2",
            "RELAY_POLL_INTERVAL_SECONDS": "0.5",
            **self.settings,
        }
        for n in range(self.apis):
            port = free_port()
            self.api_processes.append(
                Process(
                    f"api-{n + 1}",
                    [*python, "api", "--host", "127.0.0.1", "--port", str(port)],
                    env,
                    self.workdir / f"api-{n + 1}.log",
                    f"http://127.0.0.1:{port}/readyz",
                )
            )
        for n in range(self.relays):
            port = free_port()
            self.relay_processes.append(
                Process(
                    f"relay-{n + 1}",
                    [*python, "relay"],
                    {**env, "RELAY_METRICS_HOST": "127.0.0.1", "RELAY_METRICS_PORT": str(port)},
                    self.workdir / f"relay-{n + 1}.log",
                    f"http://127.0.0.1:{port}/readyz",
                )
            )
        self.migrate_env = env

    @property
    def api_urls(self) -> list[str]:
        return [p.ready_url.removesuffix("/readyz") for p in self.api_processes]

    @property
    def processes(self) -> list[Process]:
        return [self.simulator, *self.api_processes, *self.relay_processes]

    async def start(self) -> None:
        migrate = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "app",
            "migrate",
            env=self.migrate_env,
            cwd=ROOT,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        _, stderr = await migrate.communicate()
        if migrate.returncode:
            raise RuntimeError(f"migrate failed: {stderr.decode()[-2000:]}")
        for process in self.processes:
            process.start()
        await asyncio.gather(*(p.wait_ready() for p in self.processes))

    async def restart(self, process: Process) -> None:
        process.start()
        await process.wait_ready()

    async def stop(self) -> None:
        for process in [*self.api_processes, *self.relay_processes, self.simulator]:
            process.signal(signal.SIGTERM)
        await asyncio.gather(*(p.wait_exit(30) for p in self.processes))

    async def readiness(self) -> dict[str, Any]:
        """Each API's and relay's /readyz body (the LISTEN connections it reports)."""
        answers: dict[str, Any] = {}
        async with httpx.AsyncClient(timeout=5.0) as client:
            for process in [*self.api_processes, *self.relay_processes]:
                try:
                    answers[process.name] = (await client.get(process.ready_url)).json()
                except httpx.HTTPError as exc:
                    answers[process.name] = {"status": type(exc).__name__}
        return answers

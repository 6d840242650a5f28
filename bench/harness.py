"""What `make bench` (bench/run.py) is built from: processes, the wrk load generator, CPU and memory
readings.

Load comes from wrk (C, one thread, Lua scripts in bench/wrk/) in its own process: an aiohttp
generator in Python needs most of a core for 5,000 requests per second, which on a 2-CPU machine is
the core the server would need. Each measurement also reads how much CPU wrk and the measured server
used in its window, so the table shows which of them was the bottleneck.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.bench_api import HOST, ROOT, Child, free_port, http_ok

__all__ = ["HOST", "ROOT", "Child", "free_port", "http_ok"]

WRK_SCRIPT = ROOT / "bench" / "wrk" / "scenario.lua"
CLK_TCK = os.sysconf("SC_CLK_TCK")


def require_wrk() -> str:
    wrk = shutil.which("wrk")
    if wrk is None:
        raise SystemExit("bench: wrk is missing (make bench installs it: apt-get install wrk)")
    return wrk


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process (and its threads) so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def peak_rss_mb(pid: int) -> float | None:
    """The process's peak resident set (VmHWM) in MB, or None when it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


@dataclass
class Run:
    """One wrk run: what it measured and the CPU its parts used (in cores: 1.0 = one core busy)."""

    requests: int
    seconds: float
    errors: int
    p50_ms: float
    p99_ms: float
    wrk_cpu: float
    server_cpu: float
    raw: dict[str, Any] = field(default_factory=dict)

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


@dataclass
class Load:
    """A scenario's requests: method, paths, headers, body, keys (see bench/wrk/scenario.lua)."""

    path: str
    method: str = "GET"
    paths: list[str] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None
    keys: list[str] | None = None
    new_keys: str | None = None


class Wrk:
    def __init__(self, work_dir: Path) -> None:
        self.binary = require_wrk()
        self.work_dir = work_dir
        self._files = 0

    def _file(self, content: bytes) -> str:
        self._files += 1
        path = self.work_dir / f"wrk-{self._files}"
        path.write_bytes(content)
        return str(path)

    def _env(self, load: Load, run_id: str) -> dict[str, str]:
        env = {**os.environ, "WRK_METHOD": load.method}
        if load.paths:
            env["WRK_PATHS"] = self._file("\n".join(load.paths).encode())
        if load.headers:
            lines = "\n".join(f"{name}: {value}" for name, value in load.headers.items())
            env["WRK_HEADERS"] = self._file(lines.encode())
        if load.body is not None:
            env["WRK_BODY"] = self._file(load.body)
        if load.keys:
            env["WRK_KEYS"] = self._file("\n".join(load.keys).encode())
        if load.new_keys:
            env["WRK_NEW_KEYS"] = f"{load.new_keys}-{run_id}"
        return env

    def run(
        self, base_url: str, load: Load, *, connections: int, seconds: float, server_pid: int
    ) -> Run:
        run_id = f"{time.monotonic_ns():x}"
        argv = [
            self.binary,
            "-t1",
            f"-c{connections}",
            f"-d{max(1, round(seconds))}s",  # whole seconds only
            "--timeout",
            "30s",
            "-s",
            str(WRK_SCRIPT),
            base_url + load.path,
        ]
        before_children = resource.getrusage(resource.RUSAGE_CHILDREN)
        server_before = cpu_seconds(server_pid)
        began = time.perf_counter()
        done = subprocess.run(
            argv, env=self._env(load, run_id), capture_output=True, text=True, check=False
        )
        wall = time.perf_counter() - began
        server_used = cpu_seconds(server_pid) - server_before
        after_children = resource.getrusage(resource.RUSAGE_CHILDREN)
        wrk_used = (after_children.ru_utime - before_children.ru_utime) + (
            after_children.ru_stime - before_children.ru_stime
        )
        line = next((x for x in done.stdout.splitlines() if x.startswith("WRK_RESULT ")), None)
        if done.returncode != 0 or line is None:
            raise RuntimeError(f"wrk failed ({done.returncode}): {done.stdout}\n{done.stderr}")
        raw = json.loads(line[len("WRK_RESULT ") :])
        errors = sum(
            raw[k]
            for k in ("connect_errors", "read_errors", "write_errors", "status_errors", "timeouts")
        )
        return Run(
            requests=raw["requests"],
            seconds=raw["duration_us"] / 1e6,
            errors=errors,
            p50_ms=raw["p50_us"] / 1000,
            p99_ms=raw["p99_us"] / 1000,
            wrk_cpu=wrk_used / wall,
            server_cpu=server_used / wall,
            raw=raw,
        )


@dataclass
class Figures:
    """Several runs of one scenario taken together: the rate over all, the median of each
    percentile."""

    runs: list[Run]

    @property
    def rps(self) -> float:
        seconds = sum(r.seconds for r in self.runs)
        return sum(r.requests for r in self.runs) / seconds if seconds else 0.0

    def _median(self, values: list[float]) -> float:
        ordered = sorted(values)
        return ordered[len(ordered) // 2] if ordered else float("nan")

    @property
    def p50_ms(self) -> float:
        return self._median([r.p50_ms for r in self.runs])

    @property
    def p99_ms(self) -> float:
        return self._median([r.p99_ms for r in self.runs])

    @property
    def errors(self) -> int:
        return sum(r.errors for r in self.runs)

    @property
    def wrk_cpu(self) -> float:
        return max(r.wrk_cpu for r in self.runs)

    @property
    def server_cpu(self) -> float:
        return self._median([r.server_cpu for r in self.runs])

    def summary(self) -> dict[str, Any]:
        return {
            "rps": round(self.rps, 1),
            "p50_ms": round(self.p50_ms, 2),
            "p99_ms": round(self.p99_ms, 2),
            "errors": self.errors,
            "server_cpu_cores": round(self.server_cpu, 2),
            "wrk_cpu_cores": round(self.wrk_cpu, 2),
            "rounds": [round(r.rps, 1) for r in self.runs],
        }


def start_process(
    name: str, argv: list[str], env: dict[str, str], log_dir: Path, ready_url: str
) -> Child:
    child = Child(name, argv, env, log_dir)
    child.wait_ready(ready_url, 60)
    return child


def ready(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not http_ok(url):
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url} did not answer within {timeout:.0f} s")
        time.sleep(0.1)

"""`make bench` still runs: the harness in its smallest mode (BENCH_SMOKE) writes a complete results
file.

A benchmark is not a test: nothing here looks at a figure, only that every scenario ran and was
written.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.integration


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is installed by make test-deps")
def test_bench_harness_writes_every_scenario(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench.run", "--smoke", "--out", str(out)],
        cwd=ROOT,
        env={**os.environ, "BENCH_SMOKE": "1"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    results = json.loads(out.read_text())
    assert set(results["baselines"]) == {
        "trivial_rps",
        "asyncpg_read_rps",
        "asyncpg_list_rps",
        "raw_create_rps",
        "pgbench_create_tps",
        "direct_upstream_p50_ms",
        "bound_per_s",
    }
    assert set(results["scenarios"]) == {
        "trivial",
        "read",
        "list",
        "create_async",
        "create_sync_c1",
        "create_sync_c32",
        "replay",
    }
    for name, figures in results["scenarios"].items():
        assert figures["errors"] == 0, name
        assert figures["rps"] > 0 and figures["p50_ms"] > 0 and figures["p99_ms"] > 0, name
    assert results["relay_drain"]["commands_per_s"] > 0
    assert results["relay_latency"]["commands_per_s"] > 0
    assert set(results["store_scale"]) >= {
        "read_10k_rps",
        "read_1m_rps",
        "list_10k_rps",
        "list_1m_rps",
    }
    assert results["memory"]["api_rss_mb"] > 0 and results["memory"]["relay_rss_mb"] > 0
    assert results["machine"]["cpus"] and results["run"]["when"]

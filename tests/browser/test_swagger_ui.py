"""Swagger UI at /docs, rendered by a real browser (Debian chromium, headless) against the real app.

FastAPI's default page loads Swagger UI from a CDN that our machines cannot reach, and renders
blank; this test proves the vendored assets load and Swagger UI draws the facade's operations. It
never skips: without chromium it fails and says how to install it.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest
import uvicorn
from sqlalchemy.engine import make_url

from app.db import plain_url
from app.main import create_app
from app.settings import Settings

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--virtual-time-budget=15000",
]
INSTALL_HINT = "Debian chromium is required: run `make test-deps` (apt-get install -y chromium)"


def chromium() -> str:
    path = shutil.which("chromium") or (
        "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None
    )
    if path is None:
        pytest.fail(f"chromium not found. {INSTALL_HINT}. This test does not skip.", pytrace=False)
    return path


def run_chromium(args: list[str], workdir: Path) -> str:
    profile = workdir / f"profile-{uuid.uuid4().hex[:8]}"
    result = subprocess.run(
        [chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, (
        f"chromium failed ({result.returncode}):\n{result.stderr[-3000:]}"
    )
    return result.stdout


async def _drop_database(url: str) -> None:
    name = make_url(url).database
    maintenance = make_url(url).set(database="postgres").render_as_string(hide_password=False)
    connection = await asyncpg.connect(plain_url(maintenance))
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await connection.close()


@pytest.fixture(scope="module")
async def database_url() -> AsyncIterator[str]:
    """A throwaway database, created and migrated by the real `migrate` command, dropped
    afterwards."""
    base = make_url(Settings().database_url)
    url = base.set(database=f"ig_test_docs_{uuid.uuid4().hex[:12]}").render_as_string(
        hide_password=False
    )
    try:
        result = subprocess.run(
            [sys.executable, "-m", "app", "migrate"],
            env={**os.environ, "DATABASE_URL": url},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stderr
        yield url
    finally:
        await _drop_database(url)


@pytest.fixture(scope="module")
def server(database_url: str) -> Iterator[str]:
    """The real app under uvicorn on a free port, in a background thread."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    app = create_app(Settings(database_url=database_url))
    server = uvicorn.Server(uvicorn.Config(app, log_config=None, lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive(), "uvicorn stopped during startup (see the log above)"
        assert time.monotonic() < deadline, "uvicorn did not start within 30 s"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()


def test_docs_page_loads_swagger_ui_from_this_server(server: str) -> None:
    with urllib.request.urlopen(f"{server}/docs", timeout=10) as response:
        html = response.read().decode()
        policy = response.headers["Content-Security-Policy"]
    # A strict policy: the page's one inline start-up script is allowed by its hash, nothing inline
    # else.
    assert "script-src 'self' 'sha256-" in policy
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
    assert "frame-ancestors 'none'" in policy
    assert '"/static/swagger-ui/swagger-ui-bundle.js"' in html
    assert '"/static/swagger-ui/swagger-ui.css"' in html
    assert "cdn.jsdelivr.net" not in html
    for asset in ("swagger-ui-bundle.js", "swagger-ui.css", "favicon-32x32.png"):
        with urllib.request.urlopen(f"{server}/static/swagger-ui/{asset}", timeout=10) as response:
            assert response.status == 200
            assert len(response.read()) > 100


def test_swagger_ui_renders_the_operations(server: str, tmp_path: Path) -> None:
    """Under the page's Content-Security-Policy (the browser enforces it): a blocked script or style
    would leave the page without operations."""
    dom = run_chromium(["--dump-dom", f"{server}/docs"], tmp_path)
    assert 'id="swagger-ui"' in dom, dom[:2000]
    assert "Failed to load API definition" not in dom
    operations = re.findall(r'class="opblock opblock-(?:get|post|put|patch|delete)\b', dom)
    assert len(operations) >= 5, f"Swagger UI rendered {len(operations)} operations:\n{dom[:3000]}"
    assert 'data-path="/v1/invoices"' in dom
    assert 'data-path="/v1/invoices/{invoiceNumber}"' in dom


def test_swagger_ui_screenshot_is_not_blank(server: str, tmp_path: Path) -> None:
    shot = tmp_path / "docs.png"
    run_chromium(["--window-size=1280,900", f"--screenshot={shot}", f"{server}/docs"], tmp_path)
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert int.from_bytes(data[16:20], "big") == 1280  # IHDR width
    # An empty 1280x900 page is about 5 KB; Swagger UI with its operations is several times that.
    assert len(data) > 20_000, f"screenshot is only {len(data)} bytes: the page looks blank"
    # `SAVE_SCREENSHOT=docs/swagger-ui.png uv run pytest tests/browser` refreshes the README's
    # picture (a path relative to the repository), only from a screenshot that passed the checks
    # above.
    if target := os.environ.get("SAVE_SCREENSHOT"):
        saved = Path(__file__).resolve().parents[2] / target
        saved.parent.mkdir(parents=True, exist_ok=True)
        saved.write_bytes(data)

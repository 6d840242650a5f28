#!/usr/bin/env python3
"""`make run`: the facade, its outbox relay and the Cybersource simulator on this machine.

Steps: start PostgreSQL if it is down, `uv sync`, create and migrate the database, start the
simulator (webhooks pointed at the facade), start `invoicing-gateway api --with-relay` against the
simulator, wait for /readyz, print the URLs and a curl to try. Ctrl-C stops both children.

Standard library only: it runs before `uv sync` has built the environment.
"""
# A launcher: starting local tools (pg_isready, uv, our own python) is its whole job.
# ruff: noqa: S603, S607

from __future__ import annotations

import argparse
import ast
import datetime as dt
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATABASE_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/invoicing_gateway"
LOCAL_DEV_KEY = "local-dev-key"


def say(message: str) -> None:
    print(f"==> {message}", flush=True)


def fail(message: str) -> None:
    print(f"run_local: {message}", file=sys.stderr, flush=True)
    raise SystemExit(1)


# Where the LOCAL_* constants live: the simulator's public credentials, and the facade's local key.
LOCAL_CONSTANT_FILES = ("app/cybersource/profiles.py", "app/settings.py")


def local_constants() -> dict[str, str]:
    """The LOCAL_* credentials, read from the sources without importing the app (it is not installed
    yet when this starts)."""
    found: dict[str, str] = {}
    for name in LOCAL_CONSTANT_FILES:
        tree = ast.parse((ROOT / name).read_text(encoding="utf-8"))
        for node in tree.body:
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant):
                for target in node.targets:
                    if isinstance(target, ast.Name) and target.id.startswith("LOCAL_"):
                        found[target.id] = str(node.value.value)
    return found


def postgres_ready(host: str, port: int) -> bool:
    result = subprocess.run(["pg_isready", "-q", "-h", host, "-p", str(port)], check=False)
    return result.returncode == 0


def ensure_postgres(database_url: str) -> None:
    parts = urlsplit(database_url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 5432
    if shutil.which("pg_isready") is None:
        say("pg_isready not found: assuming PostgreSQL is reachable at DATABASE_URL")
        return
    if postgres_ready(host, port):
        return
    if host not in ("127.0.0.1", "localhost", "::1") or not Path("/etc/postgresql").is_dir():
        fail(f"PostgreSQL at {host}:{port} is not accepting connections")
    for version in sorted(os.listdir("/etc/postgresql")):
        say(f"starting PostgreSQL {version}")
        subprocess.run(
            ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "start"], check=False
        )
    deadline = time.monotonic() + 30
    while not postgres_ready(host, port):
        if time.monotonic() > deadline:
            fail(f"PostgreSQL at {host}:{port} did not come up within 30 s")
        time.sleep(0.5)


def find_uv() -> str:
    uv = shutil.which("uv")
    if uv is None:
        say("installing uv (pip install uv)")
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "uv"], check=True)
        uv = shutil.which("uv") or str(Path(sys.executable).parent / "uv")
    return uv


def port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 (our own 127.0.0.1)
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


class Child:
    """One child process; its output lines are prefixed with its name."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str]) -> None:
        self.name = name
        # A new session: Ctrl-C reaches only this script, which then stops the children in order.
        self.process = subprocess.Popen(
            argv,
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.process.stdout is not None
        for raw in self.process.stdout:
            sys.stdout.write(f"[{self.name}] {raw.decode(errors='replace')}")
            sys.stdout.flush()

    def exited(self) -> int | None:
        return self.process.poll()

    def stop(self, timeout: float = 15.0) -> None:
        if self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            say(f"{self.name} did not stop within {timeout:.0f} s; killing it")
            self.process.kill()
            self.process.wait()


def wait_for(child: Child, check: str, ready: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        code = child.exited()
        if code is not None:
            fail(f"{child.name} exited with status {code} before it was ready ({check})")
        if time.monotonic() > deadline:
            fail(f"{child.name} was not ready within {timeout:.0f} s ({check})")
        time.sleep(0.3)


def curl_example(api: str) -> str:
    due = (dt.date.today() + dt.timedelta(days=30)).isoformat()
    body = {
        "customerInformation": {"name": "Ada Lovelace", "email": "ada@example.com"},
        "invoiceInformation": {
            "description": "Consulting, two hours",
            "dueDate": due,
            "sendImmediately": True,
            "deliveryMode": "email",
        },
        "orderInformation": {
            "amountDetails": {"totalAmount": "250.00", "currency": "USD"},
            "lineItems": [{"productName": "Consulting hour", "quantity": 2, "unitPrice": "125.00"}],
        },
    }
    return (
        f"curl -sS -X POST {api}/v1/invoices \\\n"
        f"  -H 'Authorization: Bearer {LOCAL_DEV_KEY}' \\\n"
        f"  -H 'Idempotency-Key: {uuid.uuid4()}' \\\n"
        f"  -H 'Content-Type: application/json' \\\n"
        f"  -d '{json.dumps(body)}'"
    )


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--api-port", type=int, default=8080)
    parser.add_argument("--simulator-port", type=int, default=8081)
    args = parser.parse_args()
    api = f"http://127.0.0.1:{args.api_port}"
    simulator = f"http://127.0.0.1:{args.simulator_port}"

    env = dict(os.environ)
    env.setdefault("APP_ENV", "local")
    env.setdefault("DATABASE_URL", DEFAULT_DATABASE_URL)
    env["PYTHONUNBUFFERED"] = "1"
    local = local_constants()

    for port in (args.api_port, args.simulator_port):
        if not port_free(port):
            fail(f"port {port} on 127.0.0.1 is already in use (another `make run`?)")

    ensure_postgres(env["DATABASE_URL"])
    uv = find_uv()
    say("uv sync")
    subprocess.run([uv, "sync"], cwd=ROOT, check=True)
    python = subprocess.run(
        [uv, "run", "--no-sync", "python", "-c", "import sys; print(sys.executable)"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    say("creating and migrating the database")
    subprocess.run([python, "-m", "app", "migrate"], cwd=ROOT, env=env, check=True)

    # Explicit handlers: a shell that starts us in the background leaves SIGINT ignored otherwise.
    signal.signal(signal.SIGINT, _terminate)
    signal.signal(signal.SIGTERM, _terminate)
    children: list[Child] = []
    try:
        say(f"starting the simulator on {simulator}")
        sim = Child(
            "simulator",
            [
                python,
                "-m",
                "app",
                "simulator",
                "--host",
                "127.0.0.1",
                "--port",
                str(args.simulator_port),
                "--webhook-url",
                f"{api}/v1/webhooks/cybersource",
                "--webhook-key-id",
                local["LOCAL_WEBHOOK_KEY_ID"],
                "--webhook-secret",
                local["LOCAL_WEBHOOK_SECRET"],
            ],
            env,
        )
        children.append(sim)
        wait_for(sim, f"port {args.simulator_port}", lambda: port_open(args.simulator_port), 30)

        say(f"starting the API and the relay on {api}")
        api_env = {**env, "CYBERSOURCE_BASE_URL": simulator}
        facade = Child(
            "api",
            [
                python,
                "-m",
                "app",
                "api",
                "--host",
                "127.0.0.1",
                "--port",
                str(args.api_port),
                "--with-relay",
            ],
            api_env,
        )
        children.append(facade)
        wait_for(facade, f"{api}/readyz", lambda: http_ok(f"{api}/readyz"), 60)

        print(
            f"""
invoicing-gateway is running (Ctrl-C stops it)
  API          {api}
  Swagger UI   {api}/docs   (Authorize with the local key: {LOCAL_DEV_KEY})
  OpenAPI      {api}/openapi.json
  simulator    {simulator}   (admin routes under {simulator}/__sim/)

Create and send an invoice (run it twice: the second answer replays the first):

{curl_example(api)}
""",
            flush=True,
        )
        while True:
            for child in children:
                code = child.exited()
                if code is not None:
                    fail(f"{child.name} exited with status {code}")
            time.sleep(0.5)
    except KeyboardInterrupt:
        say("stopping")
    finally:
        signal.signal(
            signal.SIGINT, signal.SIG_IGN
        )  # a second Ctrl-C must not abandon the children
        for child in reversed(children):  # the API (and its relay) first, then the simulator
            child.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

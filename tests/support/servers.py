"""Real HTTP servers for integration tests: uvicorn in a background thread on a free port."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import uvicorn


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def serve(
    app: Any,
    *,
    ready_path: str = "/livez",
    timeout: float = 20.0,
    port: int | None = None,
    **options: Any,
) -> Iterator[str]:
    """Run an ASGI app on 127.0.0.1 until the block ends; yields its base URL. `options` go to
    uvicorn.Config (e.g. `date_header=False` for a simulator with a clock offset)."""
    port = port or free_port()
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        log_config=None,
        log_level="warning",
        lifespan="on",
        timeout_graceful_shutdown=5,
        **options,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base_url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while True:
        if server.started:
            try:
                httpx.get(base_url + ready_path, timeout=1.0)
                break
            except httpx.HTTPError:
                pass
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError(f"server on {base_url} did not start")
        time.sleep(0.05)
    try:
        yield base_url
    finally:
        server.should_exit = True
        thread.join(timeout=15)

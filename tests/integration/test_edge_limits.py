"""Limits at the edge, against the real `invoicing-gateway api` process (uvicorn as __main__ runs
it).

Each test talks raw HTTP over a socket, as an attacker or a careless client would: oversized or too
many headers (431), bodies over the limit before anything reads them or authenticates (413), clients
that send too slowly or not at all (408, then the connection is closed), idle keep-alive connections
(closed), and the security headers on every answer.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.support.postgres import fresh_database
from tests.support.servers import free_port

LIMITS = {
    "HTTP_MAX_HEADER_BYTES": "8192",
    "HTTP_MAX_HEADERS": "50",
    "HTTP_MAX_BODY_BYTES": "65536",
    "WEBHOOK_MAX_BODY_BYTES": "4096",
    "HTTP_HEADER_TIMEOUT_SECONDS": "1",
    "HTTP_BODY_TIMEOUT_SECONDS": "1",
    "HTTP_KEEP_ALIVE_SECONDS": "1",
}


@pytest.fixture(scope="module")
def api() -> Iterator[tuple[str, int]]:
    port = free_port()
    with fresh_database(migrate=False) as database_url:
        env = {
            **os.environ,
            "APP_ENV": "test",
            "DATABASE_URL": database_url,
            "LOG_LEVEL": "WARNING",
            "RELAY_IN_PROCESS": "false",
            **LIMITS,
        }
        process = subprocess.Popen(
            [sys.executable, "-m", "app", "api", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 30
            while True:
                assert process.poll() is None, "the api process stopped during startup"
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/livez", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert time.monotonic() < deadline, "the api did not answer /livez within 30 s"
                time.sleep(0.1)
            yield "127.0.0.1", port
        finally:
            process.terminate()
            process.wait(timeout=20)


def connect(api: tuple[str, int]) -> socket.socket:
    sock = socket.create_connection(api, timeout=20)
    return sock


def send_all(sock: socket.socket, data: bytes) -> None:
    """Send what the server takes; it may close the connection before we are through."""
    try:
        for start in range(0, len(data), 65536):
            sock.sendall(data[start : start + 65536])
    except (BrokenPipeError, ConnectionResetError):
        pass


def read_answer(sock: socket.socket) -> bytes:
    """Everything until the server closes the connection (the limits always close it)."""
    chunks = []
    try:
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    except ConnectionResetError:
        pass
    return b"".join(chunks)


def status_of(answer: bytes) -> int:
    assert answer.startswith(b"HTTP/1.1 "), answer[:200]
    return int(answer.split(b" ", 2)[1])


def still_serving(api: tuple[str, int]) -> None:
    response = httpx.get(f"http://{api[0]}:{api[1]}/livez", timeout=5)
    assert response.status_code == 200


def test_an_oversized_header_is_431_and_nothing_large_is_buffered(api):
    with connect(api) as sock:
        send_all(
            sock, b"GET /livez HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 4_000_000 + b"\r\n\r\n"
        )
        answer = read_answer(sock)
    assert status_of(answer) == 431
    still_serving(api)


def test_a_long_request_line_is_431(api):
    with connect(api) as sock:
        send_all(sock, b"GET /livez?" + b"q" * 20_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        assert status_of(read_answer(sock)) == 431


def test_too_many_headers_is_431(api):
    headers = b"".join(b"X-H%d: 1\r\n" % i for i in range(60))
    with connect(api) as sock:
        send_all(sock, b"GET /livez HTTP/1.1\r\nHost: x\r\n" + headers + b"\r\n")
        assert status_of(read_answer(sock)) == 431
    with connect(api) as sock:  # within the limit: served
        send_all(
            sock,
            b"GET /livez HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" + headers[:200] + b"\r\n",
        )
        assert status_of(read_answer(sock)) == 200


@pytest.mark.parametrize(
    ("path", "size"),
    [("/v1/webhooks/cybersource", 5000), ("/v1/invoices", 70_000)],
)
def test_a_body_over_the_limit_is_413_before_authentication_or_parsing(api, path, size):
    """No signature, no API key: the size is refused first (the old code read and parsed it, then
    401)."""
    with connect(api) as sock:
        head = b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" % path.encode()
        send_all(sock, head + b"Content-Length: %d\r\n\r\n" % size + b"[" * size)
        answer = read_answer(sock)
    assert status_of(answer) == 413, answer[:300]
    assert b'"code":"body_too_large"' in answer.replace(b" ", b"")


def test_a_chunked_body_is_cut_off_at_the_limit(api):
    with connect(api) as sock:
        head = (
            b"POST /v1/webhooks/cybersource HTTP/1.1\r\nHost: x\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )
        chunk = b"a" * 1000
        body = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(10)) + b"0\r\n\r\n"
        send_all(sock, head + body)
        answer = read_answer(sock)
    assert status_of(answer) == 413, answer[:300]


def test_a_client_that_sends_nothing_is_closed(api):
    with connect(api) as sock:
        answer = read_answer(sock)  # returns once the server closes the connection
    assert status_of(answer) == 408


def test_a_slow_head_is_408(api):
    with connect(api) as sock:
        send_all(sock, b"GET /livez HTTP/1.1\r\nHost: x\r\n")  # the blank line never comes
        assert status_of(read_answer(sock)) == 408


def test_a_body_that_does_not_arrive_is_408(api):
    with connect(api) as sock:
        head = b"POST /v1/webhooks/cybersource HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n"
        send_all(sock, head + b"{" * 10)
        assert status_of(read_answer(sock)) == 408
    still_serving(api)


def test_an_idle_keep_alive_connection_is_closed(api):
    with connect(api) as sock:
        send_all(sock, b"GET /livez HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = read_answer(sock)  # the answer, then nothing until the server closes
    assert status_of(answer) == 200
    assert answer.count(b"HTTP/1.1 ") == 1


@pytest.mark.parametrize("path", ["/livez", "/v1/invoices", "/no-such-route"])
def test_security_headers_on_every_answer(api, path):
    response = httpx.get(f"http://{api[0]}:{api[1]}{path}", timeout=5)
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert "default-src 'none'" in response.headers["content-security-policy"]
    assert "server" not in response.headers

"""A private PostgreSQL cluster the suite starts, kills (-9) and restarts itself, on a port of its
own.

The binaries are the machine's (`/usr/lib/postgresql/15/bin`); PostgreSQL refuses to run as root, so
as root every command runs through `runuser -u postgres`. fsync is off (the machine does not crash,
only PostgreSQL is killed), but synchronous_commit stays on: a commit acknowledged before a kill -9
must survive it, as on any production server, through PostgreSQL's own crash recovery.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import asyncpg

PG_BIN = Path(os.environ.get("RELIABILITY_PG_BIN", "/usr/lib/postgresql/15/bin"))


def _as_postgres() -> list[str]:
    return ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []


def _children(pid: int) -> list[int]:
    """Processes whose parent is `pid` (the postmaster's backends and helpers)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("PPid:") and int(line.split()[1]) == pid:
                found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


class Cluster:
    def __init__(self, base: Path, port: int) -> None:
        self.base = base
        self.port = port
        self.data = base / "data"
        self.log = base / "postgresql.log"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def _run(self, *argv: str) -> None:
        command = [*_as_postgres(), *argv]
        subprocess.run(command, check=True, capture_output=True, cwd=self.base)  # noqa: S603

    def init(self) -> None:
        self.base.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(self.base, "postgres", "postgres")
        self._run(
            str(PG_BIN / "initdb"),
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
        )

    def start(self) -> None:
        options = " ".join(
            [
                f"-p {self.port}",
                "-c listen_addresses=127.0.0.1",
                f"-c unix_socket_directories={self.base}",
                "-c max_connections=300",
                "-c shared_buffers=64MB",
                "-c fsync=off",
                "-c full_page_writes=off",
            ]
        )
        self._run(
            str(PG_BIN / "pg_ctl"),
            "-D",
            str(self.data),
            "-l",
            str(self.log),
            "-w",
            "-t",
            "60",
            "-o",
            options,
            "start",
        )

    def postmaster_pid(self) -> int:
        return int((self.data / "postmaster.pid").read_text().splitlines()[0])

    def kill(self) -> None:
        """kill -9 the server (the postmaster), and wait until its backends have gone too."""
        pid = self.postmaster_pid()
        family = [pid, *_children(pid)]
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while any(_alive(p) for p in family):
            if time.monotonic() > deadline:
                raise RuntimeError("PostgreSQL's backends outlived the postmaster for 30 s")
            time.sleep(0.05)

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            subprocess.run(  # noqa: S603 (the machine's pg_ctl on our own data directory)
                [
                    *_as_postgres(),
                    str(PG_BIN / "pg_ctl"),
                    "-D",
                    str(self.data),
                    "-m",
                    "immediate",
                    "-w",
                    "stop",
                ],
                capture_output=True,
                cwd=self.base,
                check=False,
            )

    def remove(self) -> None:
        shutil.rmtree(self.base, ignore_errors=True)

    async def create_database(self, name: str) -> str:
        conn = await asyncpg.connect(self.url())
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()
        return self.url(name)

"""A real PgBouncer in transaction mode in front of the local PostgreSQL, for the PgBouncer tests.

Needs Debian's `pgbouncer` (`make test` installs it); PgBouncer refuses to run as root, so it runs
as the `postgres` user when the tests run as root.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.support.servers import free_port

PGBOUNCER = "/usr/sbin/pgbouncer"


@contextmanager
def pgbouncer(database: str) -> Iterator[str]:
    """Yield a postgresql:// URL that reaches `database` through PgBouncer
    (pool_mode=transaction)."""
    if not Path(PGBOUNCER).exists():
        raise RuntimeError(
            "PgBouncer is not installed: run `make test-deps` (apt-get install pgbouncer)"
        )
    port = free_port()
    workdir = Path(tempfile.mkdtemp(prefix="igw-pgbouncer-"))
    (workdir / "pgbouncer.ini").write_text(
        "[databases]\n"
        f"{database} = host=127.0.0.1 port=5432 dbname={database}\n"
        "[pgbouncer]\n"
        f"listen_addr = 127.0.0.1\nlisten_port = {port}\n"
        "auth_type = trust\n"
        f"auth_file = {workdir / 'users.txt'}\n"
        "pool_mode = transaction\n"
        "max_client_conn = 200\ndefault_pool_size = 10\n"
        f"unix_socket_dir =\nlogfile = {workdir / 'pgbouncer.log'}\n"
    )
    (workdir / "users.txt").write_text('"postgres" ""\n')
    command = [PGBOUNCER, str(workdir / "pgbouncer.ini")]
    if os.geteuid() == 0:
        shutil.chown(workdir, "postgres")
        for item in workdir.iterdir():
            shutil.chown(item, "postgres")
        command = ["runuser", "-u", "postgres", "--", *command]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while subprocess.run(
            ["pg_isready", "-q", "-h", "127.0.0.1", "-p", str(port)], check=False
        ).returncode:
            if process.poll() is not None or time.monotonic() > deadline:
                log = (
                    (workdir / "pgbouncer.log").read_text()
                    if (workdir / "pgbouncer.log").exists()
                    else ""
                )
                raise RuntimeError(f"PgBouncer did not start: {log[-2000:]}")
            time.sleep(0.1)
        yield f"postgresql://postgres@127.0.0.1:{port}/{database}"
    finally:
        process.terminate()
        process.wait(timeout=10)
        shutil.rmtree(workdir, ignore_errors=True)

"""The `invoicing-gateway` command: every subcommand parses, `migrate` creates and migrates a
database, `openapi` prints the facade's document without needing one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import asyncpg
import pytest
from alembic.script import ScriptDirectory
from sqlalchemy.engine import make_url

from app.__main__ import ALEMBIC_INI, main
from app.db import plain_url
from app.settings import Settings

COMMANDS = ["api", "relay", "migrate", "simulator", "openapi"]


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app", *args],
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("command", COMMANDS)
def test_every_subcommand_has_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main([command, "--help"])
    assert exited.value.code == 0
    assert "usage:" in capsys.readouterr().out


def test_simulator_flags_are_the_simulators_own(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["simulator", "--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    for flag in ("--port", "--merchant-id", "--webhook-url", "--webhook-secret"):
        assert flag in out


def test_api_flags(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["api", "--help"])
    out = capsys.readouterr().out
    for flag in ("--host", "--port", "--with-relay"):
        assert flag in out


@pytest.mark.parametrize("argv", [[], ["nonsense"], ["api", "--port", "eighty"]])
def test_bad_command_lines_exit_2(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2


def test_console_script_and_python_dash_m_list_the_commands() -> None:
    script = Path(sys.executable).parent / "invoicing-gateway"
    for argv in ([str(script), "--help"], [sys.executable, "-m", "app", "--help"]):
        result = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        for command in COMMANDS:
            assert command in result.stdout


async def _drop_database(url: str) -> None:
    name = make_url(url).database
    maintenance = make_url(url).set(database="postgres").render_as_string(hide_password=False)
    connection = await asyncpg.connect(plain_url(maintenance))
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await connection.close()


async def test_migrate_creates_and_migrates_a_fresh_database() -> None:
    name = f"ig_test_cli_{uuid.uuid4().hex[:12]}"
    url = make_url(Settings().database_url).set(database=name).render_as_string(hide_password=False)
    head = ScriptDirectory(str(ALEMBIC_INI.parent / "migrations")).get_current_head()
    try:
        first = run_cli("migrate", env={"DATABASE_URL": url})
        assert first.returncode == 0, first.stderr
        assert "database created" in first.stderr
        # Again: the database exists and is at head; nothing to create, nothing to apply.
        second = run_cli("migrate", env={"DATABASE_URL": url})
        assert second.returncode == 0, second.stderr
        assert "database created" not in second.stderr
        assert "Running upgrade" not in second.stderr

        connection = await asyncpg.connect(plain_url(url))
        try:
            version = await connection.fetchval("SELECT version_num FROM alembic_version")
            tables = {
                row["tablename"]
                for row in await connection.fetch(
                    "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
                )
            }
        finally:
            await connection.close()
        assert version == head
        assert "invoices" in tables
    finally:
        await _drop_database(url)


def test_invalid_configuration_exits_2_with_a_message() -> None:
    result = run_cli("migrate", env={"APP_ENV": "production", "API_KEYS": ""})
    assert result.returncode == 2
    assert "refusing to start in production" in result.stderr
    assert "Traceback" not in result.stderr


def test_openapi_prints_a_stable_document_without_a_database(tmp_path: Path) -> None:
    # An unreachable database: exporting the document must not connect anywhere.
    env = {"DATABASE_URL": "postgresql://postgres@127.0.0.1:1/unreachable"}
    result = run_cli("openapi", env=env)
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert "/v1/invoices" in document["paths"]
    assert document["openapi"].startswith("3.")
    assert (
        result.stdout == json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    )

    output = tmp_path / "openapi.json"
    written = run_cli("openapi", "--output", str(output), env=env)
    assert written.returncode == 0, written.stderr
    assert written.stdout == ""
    assert output.read_text(encoding="utf-8") == result.stdout

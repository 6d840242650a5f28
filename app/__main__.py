"""The `invoicing-gateway` command (also `python -m app`): api | relay | migrate | simulator |
openapi.

Configuration comes from environment variables (see `app.settings` and the README); the flags here
only choose what runs and where it listens. Heavy modules are imported by the subcommand that needs
them, so `--help` and `migrate` stay fast and do not build the web app.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import uuid
from collections.abc import Sequence
from pathlib import Path

from pydantic import ValidationError

from app.observability.logging import configure_logging
from app.settings import Settings
from app.upstream_sync import cli as upstream_cli
from app.webhook_setup import cli as webhook_setup

ALEMBIC_INI = Path(__file__).resolve().parent.parent / "alembic.ini"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="invoicing-gateway",
        description="Internal REST facade in front of the Cybersource Invoicing API.",
        epilog="Configuration comes from environment variables; see the README.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    api = commands.add_parser("api", help="run the HTTP API (uvicorn)")
    api.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default: %(default)s)"
    )
    api.add_argument(
        "--port", type=int, default=8080, help="port to listen on (default: %(default)s)"
    )
    api.add_argument(
        "--with-relay",
        action="store_true",
        help="also run the outbox relay in this process (local use; sets RELAY_IN_PROCESS=true)",
    )

    commands.add_parser("relay", help="run the outbox relay until SIGTERM/SIGINT")
    commands.add_parser(
        "migrate", help="create the database if it is missing, then alembic upgrade head"
    )
    # The simulator owns its flags; everything after `simulator` is handed to it (see main()).
    commands.add_parser(
        "simulator",
        add_help=False,
        help="run the local Cybersource invoicing simulator (see `simulator --help`)",
    )

    operations = commands.add_parser(
        "operations", help="operators: list outbox commands, retry failed ones"
    )
    actions = operations.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="print commands as JSON lines, oldest first")
    listing.add_argument(
        "--state",
        choices=["pending", "in_flight", "succeeded", "failed"],
        default="failed",
        help="which commands (default: %(default)s)",
    )
    listing.add_argument(
        "--limit", type=int, default=100, help="at most this many (default: %(default)s)"
    )
    retry = actions.add_parser("retry", help="put a failed command back in the outbox")
    retry.add_argument("operation_id", type=uuid.UUID, help="the operation's id")

    webhook_setup.add_parser(commands)
    upstream_cli.add_parsers(commands)

    openapi = commands.add_parser("openapi", help="print the facade's OpenAPI document as JSON")
    openapi.add_argument("--output", type=Path, help="write to this file instead of stdout")
    return parser


def _run_api(settings: Settings, host: str, port: int) -> None:
    import uvicorn

    from app.http.server import uvicorn_options
    from app.main import create_app

    # log_config=None keeps our JSON logging for uvicorn's own loggers; the limits:
    # app/http/server.py.
    uvicorn.run(
        create_app(settings), host=host, port=port, log_config=None, **uvicorn_options(settings)
    )


def _run_relay(settings: Settings) -> None:
    from app.outbox.worker import run_worker

    asyncio.run(run_worker(settings))


async def ensure_database(database_url: str) -> bool:
    """Create the database named in `database_url` unless it exists; True when it was created."""
    import asyncpg
    from sqlalchemy.engine import make_url

    from app.db import plain_url

    try:
        connection = await asyncpg.connect(plain_url(database_url))
    except asyncpg.InvalidCatalogNameError:
        pass
    else:
        await connection.close()
        return False
    target = make_url(database_url)
    name = target.database
    if not name:
        raise ValueError("DATABASE_URL names no database")
    maintenance_url = target.set(database="postgres").render_as_string(hide_password=False)
    maintenance = await asyncpg.connect(plain_url(maintenance_url))
    try:
        quoted = '"' + name.replace('"', '""') + '"'
        await maintenance.execute(f"CREATE DATABASE {quoted}")
    except asyncpg.DuplicateDatabaseError:  # another migrate won the race
        return False
    finally:
        await maintenance.close()
    return True


def migrate(database_url: str) -> None:
    """Create the database when missing, then upgrade it to the newest Alembic revision."""
    logging.getLogger("alembic.runtime.plugins").setLevel(
        logging.WARNING
    )  # one line per plugin otherwise
    from alembic import command
    from alembic.config import Config

    log = logging.getLogger("app.migrate")
    if asyncio.run(ensure_database(database_url)):
        log.info("database created")
    config = Config(str(ALEMBIC_INI))
    # ConfigParser interpolation: a literal % in a password must be doubled.
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    command.upgrade(config, "head")
    log.info("database migrated to head")


def _run_operations(settings: Settings, args: argparse.Namespace) -> int:
    from app.outbox.cli import list_operations, retry_operation

    if args.action == "list":
        for line in asyncio.run(list_operations(settings, state=args.state, limit=args.limit)):
            print(line)
        return 0
    done, message = asyncio.run(retry_operation(settings, args.operation_id))
    print(message, file=sys.stdout if done else sys.stderr)
    return 0 if done else 1


def openapi_json(settings: Settings) -> str:
    """The OpenAPI document exactly as `openapi/openapi.json` keeps it (sorted keys, stable)."""
    from app.main import create_app

    document = create_app(settings).openapi()
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list[:1] == ["simulator"]:
        from app.simulator.cli import run_simulator

        return run_simulator(args_list[1:], configure_logging=configure_logging) or 0

    args = _parser().parse_args(args_list)
    if args.command == "api" and args.with_relay:
        os.environ["RELAY_IN_PROCESS"] = "true"
    try:
        settings = Settings()
    except ValidationError as exc:
        # The messages only: pydantic's own text repeats the input, secrets included.
        problems = "\n".join(
            f"  {'.'.join(str(part) for part in error['loc']) or 'settings'}: {error['msg']}"
            for error in exc.errors(include_url=False, include_input=False)
        )
        print(f"invoicing-gateway: invalid configuration:\n{problems}", file=sys.stderr)
        return 2

    if args.command == "openapi":
        text = openapi_json(settings)
        if args.output:
            args.output.write_text(text, encoding="utf-8")
        else:
            sys.stdout.write(text)
        return 0

    configure_logging(settings.log_level)
    if args.command == "api":
        _run_api(settings, args.host, args.port)
    elif args.command == "relay":
        _run_relay(settings)
    elif args.command == "migrate":
        migrate(settings.database_url)
    elif args.command == "operations":
        return _run_operations(settings, args)
    elif args.command == "cybersource-webhooks":
        return webhook_setup.run(settings, args)
    elif args.command == "invoices":
        return upstream_cli.run_invoices(settings, args)
    elif args.command == "cybersource":
        return upstream_cli.run_cybersource(settings, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())

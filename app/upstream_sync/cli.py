"""`invoicing-gateway invoices import` and `invoicing-gateway cybersource check`: the command line
around `importer.py` and `credentials.py`. Progress and findings go to stderr, the result (JSON) to
stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from datetime import date

from app.settings import Settings


def _date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError("a date as YYYY-MM-DD") from None


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError("a positive integer") from None
    if value <= 0:
        raise argparse.ArgumentTypeError("a positive integer")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError("a positive number") from None
    if not value > 0:
        raise argparse.ArgumentTypeError("a positive number")
    return value


def add_parsers(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    invoices = commands.add_parser(
        "invoices", help="invoices made outside the facade: import them from Cybersource"
    )
    actions = invoices.add_subparsers(dest="action", required=True, metavar="ACTION")
    run = actions.add_parser(
        "import",
        help="adopt, in bulk, the invoices Cybersource lists (resumable, rate-bounded)",
        description="Pages through Cybersource's list and adopts every invoice the store does not "
        "have. Progress goes to stderr, the summary (JSON) to stdout. Run the same command again "
        "to resume an import that stopped; exit status 1 if an invoice could not be adopted or "
        "the list could not be read.",
    )
    run.add_argument("--status", help="only invoices in this Cybersource status (e.g. SENT)")
    run.add_argument(
        "--since", type=_date, help="only invoices created on or after this date (YYYY-MM-DD)"
    )
    run.add_argument("--profile", default="default", help="merchant profile (default: %(default)s)")
    run.add_argument("--owner", help="the client the invoices belong to (default: ADOPT_OWNER)")
    run.add_argument(
        "--page-size",
        type=_positive_int,
        default=100,
        help="invoices per list call, at most 1000 (default: %(default)s)",
    )
    run.add_argument(
        "--rate",
        type=_positive_float,
        default=5.0,
        help="Cybersource calls per second, at most (default: %(default)s)",
    )
    run.add_argument(
        "--max-invoices",
        type=_positive_int,
        help="stop after adopting about this many (the next run resumes)",
    )
    run.add_argument("--name", help="the import's name (default: profile:status:since)")
    run.add_argument(
        "--restart", action="store_true", help="start from the beginning instead of resuming"
    )

    cybersource = commands.add_parser(
        "cybersource", help="Cybersource credentials: one cheap signed call per merchant profile"
    )
    checks = cybersource.add_subparsers(dest="action", required=True, metavar="ACTION")
    check = checks.add_parser(
        "check",
        help="sign one cheap call per profile and name the likely cause of a refusal",
        description="Reads the invoice settings of every merchant profile (or one) with its "
        "credentials. A refusal (401) is explained: key id and merchant id swapped, a sandbox key "
        "on the production host, the clocks apart, or a key Cybersource does not know. Prints "
        "one JSON object per profile; exit status 1 if any profile failed.",
    )
    check.add_argument("--profile", help="only this merchant profile (default: every one)")


def run_invoices(settings: Settings, args: argparse.Namespace) -> int:
    from app.upstream_sync.importer import ImportFailed, ImportOptions, run_import, summary

    if args.page_size > 1000:
        print("invoicing-gateway: --page-size is at most 1000", file=sys.stderr)
        return 2
    if args.profile not in settings.merchant_profiles:
        print(f"invoicing-gateway: unknown merchant profile {args.profile!r}", file=sys.stderr)
        return 2
    options = ImportOptions(
        profile=args.profile,
        status=args.status.upper() if args.status else None,
        since=args.since,
        owner=args.owner,
        page_size=args.page_size,
        rate=args.rate,
        name=args.name,
        restart=args.restart,
        max_invoices=args.max_invoices,
    )

    def progress(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    try:
        row = asyncio.run(run_import(settings, options, progress))
    except ImportFailed as exc:
        print(f"invoicing-gateway: import stopped: {exc}; run it again to resume", file=sys.stderr)
        return 1
    print(json.dumps(summary(row)))
    return 1 if row.failed else 0


def run_cybersource(settings: Settings, args: argparse.Namespace) -> int:
    from app.upstream_sync.credentials import check_profiles

    if args.profile is not None and args.profile not in settings.merchant_profiles:
        print(f"invoicing-gateway: unknown merchant profile {args.profile!r}", file=sys.stderr)
        return 2
    names = [args.profile] if args.profile else list(settings.merchant_profiles)
    results = asyncio.run(check_profiles(settings, names))
    for result in results:
        print(json.dumps(result.as_dict()))
        if not result.ok:
            print(f"{result.profile}: {result.summary}", file=sys.stderr)
    return 0 if all(result.ok for result in results) else 1

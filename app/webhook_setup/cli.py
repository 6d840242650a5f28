"""`invoicing-gateway cybersource-webhooks setup|list|test|rotate|delete`: the command line around
`service.py`. What the settings need goes to stdout and nothing else does (`--output env`: the
variables as an env file; `--output secret`: a Kubernetes Secret manifest); what happened goes to
stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TextIO

from app.settings import Settings

if TYPE_CHECKING:
    from app.webhook_setup.service import WebhookKeySettings

DEFAULT_SECRET_NAME = "invoicing-gateway-cybersource-webhook"  # noqa: S105 (a name)


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "cybersource-webhooks",
        help="Cybersource's invoicing webhook: signature key and subscription (setup, rotate, ...)",
    )
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")

    def with_profile(sub: argparse.ArgumentParser) -> argparse.ArgumentParser:
        sub.add_argument(
            "--profile", default="default", help="merchant profile (default: %(default)s)"
        )
        return sub

    def with_output(sub: argparse.ArgumentParser) -> None:
        sub.add_argument(
            "--output",
            choices=["env", "secret"],
            default="env",
            help="env: the variables as an env file; secret: a Kubernetes Secret manifest",
        )
        sub.add_argument(
            "--secret-name",
            default=DEFAULT_SECRET_NAME,
            help="name of the Secret (--output secret)",
        )
        sub.add_argument("--namespace", help="namespace of the Secret (--output secret)")
        sub.add_argument(
            "--expiry-days", type=int, default=365, help="key lifetime (default: %(default)s)"
        )

    def with_target(sub: argparse.ArgumentParser) -> None:
        target = sub.add_mutually_exclusive_group(required=True)
        target.add_argument("--url", help="the subscription's webhook URL")
        target.add_argument("--id", dest="webhook_id", help="the subscription's webhookId")

    setup_parser = with_profile(
        actions.add_parser("setup", help="create the key and the subscription (reused for the URL)")
    )
    setup_parser.add_argument(
        "--url", required=True, help="the facade's https://…/v1/webhooks/cybersource"
    )
    with_output(setup_parser)
    with_profile(actions.add_parser("list", help="the invoicing subscriptions, as JSON lines"))
    with_target(with_profile(actions.add_parser("test", help="ask for a test notification")))
    with_output(
        with_profile(actions.add_parser("rotate", help="a new key; the current one stays accepted"))
    )
    with_target(with_profile(actions.add_parser("delete", help="delete a subscription")))


def render(key: WebhookKeySettings, args: argparse.Namespace) -> str:
    variables = key.variables()
    if args.output == "env":
        return "".join(f"{name}={value}\n" for name, value in variables.items())
    metadata = [f"  name: {args.secret_name}"]
    if args.namespace:
        metadata.append(f"  namespace: {args.namespace}")
    data = [f"  {name}: {json.dumps(value)}" for name, value in variables.items()]
    head = ["apiVersion: v1", "kind: Secret", "metadata:", *metadata, "type: Opaque"]
    return "\n".join([*head, "stringData:", *data]) + "\n"


async def _run(settings: Settings, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    # Imported here: `invoicing-gateway --help` builds this parser and should stay fast.
    from app.cybersource.client import CybersourceClients
    from app.cybersource.errors import CybersourceError
    from app.cybersource.webhook_admin import WebhookAdmin
    from app.webhook_setup.service import resolve, rotate, setup

    clients = CybersourceClients.from_settings(settings)
    try:
        admin = WebhookAdmin(clients.get(args.profile))
        action: Callable[[], Awaitable[None]]

        async def do_setup() -> None:
            done = await setup(admin, args.url, expiry_days=args.expiry_days)
            what = "reused" if done.reused else "created"
            print(
                f"subscription {done.subscription.webhook_id} {what} for {args.url}, status "
                f"{done.subscription.status}; key {done.key.key_id} expires "
                f"{done.key.expires_at or 'never'} (a re-run creates a new key: apply its output)",
                file=err,
            )
            out.write(render(done.key, args))

        async def do_rotate() -> None:
            key = await rotate(admin, settings, expiry_days=args.expiry_days)
            print(
                f"key {key.key_id} created; {settings.cybersource_webhook_key_id} stays accepted "
                "(CYBERSOURCE_WEBHOOK_PREVIOUS_KEYS) until you remove it",
                file=err,
            )
            out.write(render(key, args))

        async def do_list() -> None:
            for sub in (await admin.subscriptions()).subscriptions:
                line = {
                    "webhookId": sub.webhook_id,
                    "status": sub.status,
                    "webhookUrl": sub.webhook_url,
                    "eventTypes": sub.event_types,
                    "createdOn": sub.created_on,
                }
                out.write(json.dumps(line) + "\n")

        async def do_test() -> None:
            webhook_id = await resolve(admin, url=args.url, webhook_id=args.webhook_id)
            sample = await admin.send_test(webhook_id)
            print(f"test notification requested for {webhook_id}", file=err)
            out.write(json.dumps(sample.raw, default=str) + "\n")  # Decimals as text

        async def do_delete() -> None:
            webhook_id = await resolve(admin, url=args.url, webhook_id=args.webhook_id)
            await admin.delete_subscription(webhook_id)
            print(f"subscription {webhook_id} deleted", file=err)

        action = {
            "setup": do_setup,
            "rotate": do_rotate,
            "list": do_list,
            "test": do_test,
            "delete": do_delete,
        }[args.action]
        await action()
    except (CybersourceError, LookupError, ValueError) as exc:
        print(f"cybersource-webhooks {args.action}: {exc}", file=err)
        return 1
    finally:
        await clients.aclose()
    return 0


def run(settings: Settings, args: argparse.Namespace) -> int:
    from app.cybersource.client import UnknownMerchantProfileError

    try:
        return asyncio.run(_run(settings, args, sys.stdout, sys.stderr))
    except UnknownMerchantProfileError as exc:
        print(f"cybersource-webhooks: {exc}", file=sys.stderr)
        return 2

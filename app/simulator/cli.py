"""`invoicing-gateway simulator ...`: parse flags, build the config, serve with uvicorn.

The project's CLI calls `run_simulator(argv)`; `python -m app.simulator.cli` works as well. Defaults
are the facade's local credentials (app.cybersource.profiles LOCAL_*), so
`invoicing-gateway simulator` and `invoicing-gateway api` talk to each other out of the box.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from app.cybersource.profiles import LOCAL_KEY_ID, LOCAL_MERCHANT_ID, LOCAL_SHARED_SECRET
from app.simulator.config import (
    SimulatorConfig,
    config_from_mapping,
    load_config_file,
    parse_delays,
)
from app.simulator.logs import log


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="invoicing-gateway simulator",
        description="Local Cybersource Invoicing v2 simulator (signed API, faults, webhooks).",
    )
    p.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
    p.add_argument(
        "--port", type=int, default=8081, help="port to listen on (default 8081; 0 = any free)"
    )
    p.add_argument("--merchant-id", default=None, help=f"merchant id (default {LOCAL_MERCHANT_ID})")
    p.add_argument("--key-id", default=None, help="shared-secret key id (default: the local key)")
    p.add_argument(
        "--shared-secret", default=None, help="base64 shared secret (default: the local secret)"
    )
    p.add_argument("--portfolio-id", default=None, help="portfolio id when --key-id is a meta key")
    p.add_argument(
        "--merchants",
        metavar="FILE",
        default=None,
        help="JSON file: a list of merchants, or {merchants, webhook, faults, ...}",
    )
    p.add_argument("--webhook-url", default=None, help="where invoicing notifications are POSTed")
    p.add_argument(
        "--webhook-key-id", default=None, help="digital signature key id for notifications"
    )
    p.add_argument("--webhook-secret", default=None, help="base64 digital signature key")
    p.add_argument(
        "--webhook-retry-delays",
        default=None,
        help="seconds between attempts, e.g. 0.2,0.5,1 (default 60,60,60)",
    )
    p.add_argument(
        "--webhook-timeout", type=float, default=None, help="per-attempt timeout in s (default 10)"
    )
    p.add_argument(
        "--webhook-body-shape",
        choices=["payload", "payloads"],
        default=None,
        help="payload = v3 envelope (default), payloads = the 2023 invoicing example",
    )
    p.add_argument(
        "--webhook-sign",
        choices=["member", "raw-body"],
        default=None,
        help="sign the compact payload member (default) or the raw body",
    )
    p.add_argument(
        "--host-name",
        default=None,
        help="the Host the signature must name, e.g. apitest.cybersource.com (default: any)",
    )
    p.add_argument(
        "--faults", default=None, help="fault rules: a JSON file or inline JSON (object or list)"
    )
    p.add_argument("--fault-seed", type=int, default=None, help="seed for probability faults")
    p.add_argument(
        "--hang-seconds", type=float, default=None, help="how long a hang fault holds (default 300)"
    )
    p.add_argument(
        "--clock-tolerance",
        type=float,
        default=None,
        help="allowed Date/iat skew in s (default 300)",
    )
    p.add_argument(
        "--clock-offset",
        type=float,
        default=None,
        help=(
            "seconds the simulator's clock is ahead of this machine's (negative: behind; default 0)"
        ),
    )
    p.add_argument(
        "--no-request-log", action="store_true", help="do not log every request (benchmarks)"
    )
    p.add_argument("--log-level", default="INFO")
    return p


def _load_faults(value: str) -> list[Any]:
    text = value.strip()
    if not text.startswith(("[", "{")):
        text = Path(value).read_text(encoding="utf-8")
    data = json.loads(text)
    return data if isinstance(data, list) else [data]


def config_from_args(args: argparse.Namespace) -> SimulatorConfig:
    data: dict[str, Any] = load_config_file(args.merchants) if args.merchants else {}
    if not data.get("merchants") or args.merchant_id:
        data["merchants"] = [
            {
                "merchant_id": args.merchant_id or LOCAL_MERCHANT_ID,
                "key_id": args.key_id or LOCAL_KEY_ID,
                "shared_secret": args.shared_secret or LOCAL_SHARED_SECRET,
                "portfolio_id": args.portfolio_id,
            },
            *(data.get("merchants") or []),
        ]
    if args.webhook_url:
        if not (args.webhook_key_id and args.webhook_secret):
            raise SystemExit("--webhook-url needs --webhook-key-id and --webhook-secret")
        data["webhook"] = {
            **(data.get("webhook") or {}),
            "url": args.webhook_url,
            "key_id": args.webhook_key_id,
            "secret": args.webhook_secret,
        }
    webhook = data.get("webhook")
    if webhook:
        if args.webhook_retry_delays is not None:
            webhook["retry_delays"] = list(parse_delays(args.webhook_retry_delays))
        for flag, key in (
            (args.webhook_timeout, "timeout_s"),
            (args.webhook_body_shape, "body_shape"),
            (args.webhook_sign, "sign"),
        ):
            if flag is not None:
                webhook[key] = flag
    for flag, key in (
        (args.host_name, "host_name"),
        (args.clock_tolerance, "clock_tolerance_s"),
        (args.clock_offset, "clock_offset_s"),
        (args.fault_seed, "fault_seed"),
        (args.hang_seconds, "hang_s"),
    ):
        if flag is not None:
            data[key] = flag
    if args.faults:
        data["faults"] = [*(data.get("faults") or []), *_load_faults(args.faults)]
    if args.no_request_log:
        data["log_requests"] = False
    return config_from_mapping(data)


def run_simulator(
    argv: Sequence[str] | None = None, *, configure_logging: Callable[[str], None] | None = None
) -> int:
    """Run the simulator; `configure_logging(level)` is the caller's log set-up (the facade's JSON
    logs)."""
    import uvicorn  # imported here so that `--help` stays fast

    args = build_parser().parse_args(argv)
    if configure_logging is None:
        logging.basicConfig(level=args.log_level.upper())
    else:
        configure_logging(args.log_level)
    try:
        config = config_from_args(args)
    except (ValueError, KeyError, OSError) as exc:
        print(f"simulator: bad configuration: {exc}", file=sys.stderr)
        return 2
    from app.simulator.app import create_simulator_app

    app = create_simulator_app(config)
    log.info(
        "simulator starting",
        host=args.host,
        port=args.port,
        merchants=[m.merchant_id for m in config.merchants],
        host_name=config.host_name,
        webhook_url=config.webhook.url if config.webhook else None,
        faults=len(config.faults),
    )
    fast = (
        importlib.util.find_spec("uvloop") is not None
        and importlib.util.find_spec("httptools") is not None
    )
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        log_config=None,
        access_log=False,
        loop="uvloop" if fast else "asyncio",
        http="httptools" if fast else "h11",
        timeout_graceful_shutdown=5,
        server_header=False,  # Cybersource does not say `server: uvicorn`
        date_header=not config.clock_offset_s,  # with an offset the app sends its own Date
    )
    return 0


def main() -> None:
    raise SystemExit(run_simulator(sys.argv[1:]))


if __name__ == "__main__":
    main()

"""A minimal stand-in for Cybersource for benchmarks, meant to run in its own process.

    uv run python -m bench.fake_upstream --delay-ms 150 [--port 0]

Prints `LISTENING <port>` on stdout once it accepts connections, then answers every request with a
small pre-encoded invoice JSON (201 for POST, 200 otherwise) after `--delay-ms`. No signature check:
the point is to measure the client, and the unit tests already verify every signature the client
makes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import uuid

from aiohttp import web

INVOICE = {
    "_links": {"self": {"href": "/v2/invoices/98753", "method": "GET"}},
    "id": "98753",
    "submitTimeUtc": "2025-11-25T10:00:00Z",
    "status": "DRAFT",
    "customerInformation": {"name": "Tanya Lee", "email": "tanya.lee@my-email.world"},
    "invoiceInformation": {
        "invoiceNumber": "98753",
        "description": "Consulting, November",
        "dueDate": "2025-12-31",
        "allowPartialPayments": False,
        "deliveryMode": "None",
    },
    "orderInformation": {
        "amountDetails": {"totalAmount": 100.00, "currency": "USD", "balanceAmount": 100.00},
        "lineItems": [
            {
                "productSku": "C-1",
                "productName": "Consulting",
                "quantity": 1,
                "unitPrice": 100.00,
                "totalAmount": 100.00,
            }
        ],
    },
}
BODY = json.dumps(INVOICE).encode()


def make_app(delay_s: float) -> web.Application:
    correlation_prefix = str(uuid.uuid4())[:24]
    counter = 0

    async def handle(request: web.Request) -> web.Response:
        nonlocal counter
        await request.read()
        if delay_s > 0:
            await asyncio.sleep(delay_s)
        counter += 1
        return web.Response(
            status=201 if request.method == "POST" else 200,
            body=BODY,
            content_type="application/hal+json",
            headers={"v-c-correlation-id": f"{correlation_prefix}{counter:012d}"},
        )

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    return app


async def serve(port: int, delay_s: float) -> None:
    runner = web.AppRunner(make_app(delay_s), access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port, backlog=1024)
    await site.start()
    bound = runner.addresses[0][1]
    print(f"LISTENING {bound}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--delay-ms", type=float, default=0.0)
    parser.add_argument("--loop", choices=["uvloop", "asyncio"], default="uvloop")
    args = parser.parse_args()
    runner: contextlib.AbstractContextManager[asyncio.Runner] = asyncio.Runner()
    if args.loop == "uvloop":
        with contextlib.suppress(ImportError):
            import uvloop

            runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)
    with runner as r:
        r.run(serve(args.port, args.delay_ms / 1000))


if __name__ == "__main__":
    main()

"""A slow subscriber does not slow invoice commands: push delivery has its own relay budget.

Two facades run side by side on their own databases with the same settings; one has subscribers that
take 10 s to answer every delivery (more of them than its push budget), the other none. Commands go
to the two in turns, so whatever else the machine is doing slows both alike, and their latencies are
compared with each other (never with a fixed time).
"""

from __future__ import annotations

import statistics
import time
from contextlib import ExitStack

from tests.integration.conftest import invoice_body, key
from tests.integration.test_subscriptions import client, facade, receiving, subscribe
from tests.integration.waiting import until
from tests.support.receivers import Receiver

SLOW_SECONDS = 10.0
ROUNDS = 8


async def test_a_slow_subscriber_does_not_slow_invoice_commands(simulator_url):
    budget = dict(
        relay_concurrency=2,
        subscription_delivery_concurrency=2,
        subscription_timeout_seconds=SLOW_SECONDS + 5,
    )
    slow = [Receiver(delay=SLOW_SECONDS) for _ in range(3)]
    with ExitStack() as stack:
        urls = [stack.enter_context(receiving(receiver)) for receiver in slow]
        quiet_url = stack.enter_context(facade(simulator_url, **budget))
        busy_url = stack.enter_context(facade(simulator_url, **budget))
        async with client(quiet_url, "hooks") as quiet, client(busy_url, "hooks") as busy:
            for url in urls:
                await subscribe(busy, url)
            # Fill the push budget before measuring: every slow subscriber has a delivery waiting.
            await busy.post("/v1/invoices", headers=key(), json=invoice_body())
            await until(lambda: sum(r.arrived for r in slow) >= 2, what="slow deliveries started")

            latencies: dict[str, list[float]] = {"quiet": [], "busy": []}
            for _ in range(ROUNDS):
                for name, api in (("quiet", quiet), ("busy", busy)):
                    started = time.perf_counter()
                    created = await api.post("/v1/invoices", headers=key(), json=invoice_body())
                    latencies[name].append(time.perf_counter() - started)
                    assert created.status_code == 201, created.text
            # The slow subscribers were still being delivered to: one is waiting for an answer.
            assert sum(r.arrived for r in slow) > sum(len(r.snapshot()) for r in slow)

    quiet_median = statistics.median(latencies["quiet"])
    busy_median = statistics.median(latencies["busy"])
    print(f"command latency median: quiet {quiet_median:.3f}s, busy {busy_median:.3f}s")
    # Held up by a slow subscriber, a command would wait seconds; alike, the two stay close.
    assert busy_median < 3 * quiet_median, latencies

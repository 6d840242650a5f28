"""Rate limits (the `limits` library, moving window, in process memory): 429 with `Retry-After`.

The window is per process: with N API replicas a caller gets up to N times the limit in all, which
bounds what one caller can make Cybersource do without shared state.
"""

from __future__ import annotations

import math
import time

from limits import RateLimitItem, parse_many
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter

from app.errors import ApiError


class RateLimited(ApiError):
    status_code = 429
    code = "rate_limited"
    title = "Too many requests"


class RateLimit:
    """One limit, e.g. "30/minute", counted per identifier (a caller, an invoice)."""

    def __init__(self, spec: str, *, name: str) -> None:
        self.items: list[RateLimitItem] = parse_many(spec)
        self.name = name
        self._limiter = MovingWindowRateLimiter(MemoryStorage())

    def hit(self, *identifiers: str) -> None:
        """Count one; raise RateLimited (429, Retry-After) when the window is full."""
        for item in self.items:
            if not self._limiter.hit(item, self.name, *identifiers):
                reset = self._limiter.get_window_stats(item, self.name, *identifiers).reset_time
                retry_after = max(1, math.ceil(reset - time.time()))
                raise RateLimited(
                    f"Too many {self.name} ({item}); retry in {retry_after} s.",
                    headers={"Retry-After": str(retry_after)},
                )

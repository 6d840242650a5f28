"""When a failed delivery is tried again, and when the outbox gives up on it (procrastinate's retry
object)."""

from __future__ import annotations

import random
from dataclasses import dataclass

from app.settings import Settings


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    base_seconds: float
    cap_seconds: float
    max_attempts: int
    max_age_seconds: float

    @classmethod
    def from_settings(cls, settings: Settings) -> RetryPolicy:
        return cls(
            base_seconds=settings.relay_backoff_base_seconds,
            cap_seconds=settings.relay_backoff_cap_seconds,
            max_attempts=settings.relay_max_attempts,
            max_age_seconds=settings.relay_max_age_seconds,
        )

    def delay(self, attempts: int, retry_after: float | None = None) -> float:
        """Capped exponential backoff with jitter, never sooner than the upstream's Retry-After."""
        capped = min(self.cap_seconds, self.base_seconds * 2 ** max(attempts - 1, 0))
        jittered: float = capped * random.uniform(0.5, 1.0)  # noqa: S311 (jitter, not security)
        return max(jittered, float(retry_after or 0.0))

    def gives_up(
        self,
        *,
        attempts: int,
        class_attempts: int,
        age_seconds: float,
        class_limit: int | None = None,
        outcome_known: bool = True,
    ) -> bool:
        """Past the age limit; or, when the outcome is known, past the attempt limit or its class's
        own.

        Work that may have been applied (`outcome_known` False) is never given up on a count: the
        next attempt checks again, with backoff, until the age limit says it cannot be known.
        """
        if age_seconds >= self.max_age_seconds:
            return True
        if not outcome_known:
            return False
        if class_limit is not None and class_attempts >= class_limit:
            return True
        return attempts >= self.max_attempts

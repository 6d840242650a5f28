"""The outbox's retry policy (issue 15): a class limit counts that class's failures only, and work
whose outcome is unknown is given up on by age alone."""

from __future__ import annotations

import pytest

from app.outbox.retry import RetryPolicy

POLICY = RetryPolicy(base_seconds=0.5, cap_seconds=300, max_attempts=12, max_age_seconds=86400)


def test_a_class_limit_counts_the_class_not_all_attempts() -> None:
    # Two 503s, then the first 502: the third attempt, the first of its class.
    assert not POLICY.gives_up(attempts=3, class_attempts=1, age_seconds=5, class_limit=3)
    assert POLICY.gives_up(attempts=3, class_attempts=3, age_seconds=5, class_limit=3)


def test_known_outcomes_stop_at_the_attempt_or_age_limit() -> None:
    assert not POLICY.gives_up(attempts=11, class_attempts=11, age_seconds=5)
    assert POLICY.gives_up(attempts=12, class_attempts=12, age_seconds=5)
    assert POLICY.gives_up(attempts=1, class_attempts=1, age_seconds=86400)


@pytest.mark.parametrize("attempts", [12, 100, 1000])
def test_an_unknown_outcome_is_never_given_up_on_a_count(attempts: int) -> None:
    assert not POLICY.gives_up(
        attempts=attempts,
        class_attempts=attempts,
        age_seconds=60,
        class_limit=3,
        outcome_known=False,
    )
    assert POLICY.gives_up(
        attempts=attempts, class_attempts=attempts, age_seconds=86400, outcome_known=False
    )


def test_backoff_is_capped_and_respects_retry_after() -> None:
    assert all(0.25 <= POLICY.delay(1) <= 0.5 for _ in range(50))
    assert all(150 <= POLICY.delay(30) <= 300 for _ in range(50))
    assert POLICY.delay(1, retry_after=7) == 7

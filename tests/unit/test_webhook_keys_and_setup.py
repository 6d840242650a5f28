"""Webhook key expiry warnings, and what `cybersource-webhooks setup|rotate` print."""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime, timedelta

import pytest
import structlog
import yaml

from app.settings import Settings
from app.upstream_sync.key_expiry import KEY_DAYS_LEFT, WebhookKeyMonitor, key_expiries
from app.webhook_setup.cli import render
from app.webhook_setup.service import WebhookKeySettings

SECRET = "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LTEyMzQ="


def settings_with(current: datetime | None, previous: datetime | None = None) -> Settings:
    previous_keys = []
    if previous is not None:
        previous_keys = [{"key_id": "old", "secret": SECRET, "expires_at": previous.isoformat()}]
    return Settings(
        cybersource_webhook_key_id="current",
        cybersource_webhook_key_expires_at=current,
        cybersource_webhook_previous_keys=json.dumps(previous_keys),
    )


def test_no_expiry_set_means_nothing_to_say():
    assert key_expiries(settings_with(None)) == []
    assert WebhookKeyMonitor(settings_with(None)).readiness_detail() == []


def test_a_key_within_30_days_warns_in_readyz_the_gauge_and_the_log():
    now = datetime.now(UTC)
    monitor = WebhookKeyMonitor(
        settings_with(now + timedelta(days=12, hours=1), now - timedelta(1))
    )
    with structlog.testing.capture_logs() as logs:
        detail = monitor.readiness_detail()
        monitor.readiness_detail()  # asked again: the log says it once a day, not per probe
    by_key = {d["keyId"]: d for d in detail}
    assert by_key["current"]["daysLeft"] == 12 and "rotate" in by_key["current"]["warning"]
    assert by_key["old"]["warning"].startswith("expired")
    assert KEY_DAYS_LEFT.labels("current")._value.get() == pytest.approx(12.04, abs=0.05)
    warnings = [entry for entry in logs if entry["event"] == "cybersource.webhook_key_expiring"]
    assert sorted(w["key_id"] for w in warnings) == ["current", "old"]  # once per key
    assert all(w["log_level"] == "warning" and SECRET not in str(w) for w in warnings)


def test_a_key_with_more_than_30_days_left_is_only_a_gauge():
    monitor = WebhookKeyMonitor(settings_with(datetime.now(UTC) + timedelta(days=31)))
    assert monitor.readiness_detail() == []
    assert KEY_DAYS_LEFT.labels("current")._value.get() > 30


def test_a_naive_expiry_is_read_as_utc():
    [expiry] = key_expiries(
        settings_with(datetime(2030, 1, 1)), now=datetime(2029, 12, 31, tzinfo=UTC)
    )
    assert expiry.days_left == 1


KEY = WebhookKeySettings("key-1", datetime(2027, 12, 1, 9, 0, tzinfo=UTC), SECRET)


def args(output: str, **more: str) -> argparse.Namespace:
    return argparse.Namespace(output=output, secret_name="igw-webhook", namespace=None, **more)


def test_env_output_is_exactly_the_three_settings():
    assert render(KEY, args("env")).splitlines() == [
        "CYBERSOURCE_WEBHOOK_KEY_ID=key-1",
        f"CYBERSOURCE_WEBHOOK_SECRET={SECRET}",
        "CYBERSOURCE_WEBHOOK_KEY_EXPIRES_AT=2027-12-01T09:00:00Z",
    ]
    loaded = Settings(
        **{
            line.split("=", 1)[0].lower(): line.split("=", 1)[1]
            for line in render(KEY, args("env")).splitlines()
        }
    )
    assert loaded.webhook_keys == {"key-1": b"secret-secret-secret-secret-1234"}
    assert loaded.cybersource_webhook_key_expires_at == KEY.expires_at


def test_secret_output_is_a_kubernetes_secret_of_the_same_settings():
    manifest = yaml.safe_load(render(KEY, args("secret")))
    assert manifest["kind"] == "Secret" and manifest["metadata"] == {"name": "igw-webhook"}
    assert manifest["stringData"] == {
        "CYBERSOURCE_WEBHOOK_KEY_ID": "key-1",
        "CYBERSOURCE_WEBHOOK_SECRET": SECRET,
        "CYBERSOURCE_WEBHOOK_KEY_EXPIRES_AT": "2027-12-01T09:00:00Z",
    }


def test_rotation_output_keeps_the_old_key_accepted():
    rotated = WebhookKeySettings(
        "key-2", None, SECRET, previous_keys=[{"key_id": "key-1", "secret": SECRET}]
    )
    lines = dict(line.split("=", 1) for line in render(rotated, args("env")).splitlines())
    loaded = Settings(**{name.lower(): value for name, value in lines.items()})
    assert set(loaded.webhook_keys) == {"key-1", "key-2"}

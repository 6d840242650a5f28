"""Push delivery: POST events to subscribers, signed per Standard Webhooks; the relay's second
handler.

The body is the event exactly as `GET /v1/events` shows it; `webhook-id` is `evt_<event id>` on
every attempt (receivers de-duplicate on it: delivery is at least once). Any 2xx is delivered;
anything else, a timeout, a refused connection or a redirect (never followed) is a failed attempt,
retried with backoff for `SUBSCRIPTION_RETRY_WINDOW_SECONDS` from the first attempt. An event
delivery that fails for the whole window fails for good and disables its subscription, and a
`subscription.disabled` event says so; an address the policy forbids (checked at every delivery)
does the same at once. Only the first bytes of an answer are read and kept.

The push relay has its own concurrency budget, HTTP session and queue, so a slow or dead subscriber
never holds up invoice commands; per subscription one event is in flight at a time (in order), so
one slow subscriber holds one slot.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiohttp
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app.auth.principal import ADMIN, READ
from app.cybersource.client import parse_retry_after
from app.events.repository import PUSH_CHANNEL, EventRepository, EventRow, NewEvent
from app.events.service import event_out
from app.events.types import EventType
from app.outbox.lease import Lease
from app.outbox.relay import Delivery, Done, Failed, Limits, Relay, Succeeded, TryAgain
from app.outbox.retry import RetryPolicy
from app.settings import Settings
from app.subscriptions.repository import ClaimedDelivery, DeliveryRepository, SubscriptionRepository
from app.subscriptions.signing import message_id, signature_headers
from app.subscriptions.targets import ForbiddenTarget, GuardedResolver, target_policy

RESPONSE_PREFIX_BYTES = 256
USER_AGENT = "invoicing-gateway-webhooks/1"
NEVER_BY_COUNT = 1_000_000  # the window decides, not the number of attempts


@dataclass(frozen=True, slots=True)
class PushEffects:
    """Set when the subscription must be switched off (and an event written about it)."""

    disable_reason: str | None = None


PushRelay = Relay[ClaimedDelivery, PushEffects]


def push_relay(
    engine: AsyncEngine,
    settings: Settings,
    handler: PushDelivery,
    *,
    owner: str | None = None,
    listen_dsn: str | None = None,
) -> PushRelay:
    """The relay of push deliveries: its own queue, handler and budget beside the invoice relay."""
    return Relay(
        engine,
        DeliveryRepository,
        handler,
        retry=RetryPolicy(
            base_seconds=settings.subscription_backoff_base_seconds,
            cap_seconds=settings.subscription_backoff_cap_seconds,
            max_attempts=NEVER_BY_COUNT,
            max_age_seconds=settings.subscription_retry_window_seconds,
        ),
        limits=Limits(
            concurrency=settings.subscription_delivery_concurrency,
            batch_size=settings.subscription_delivery_concurrency,
            lease_seconds=max(
                settings.relay_lease_seconds, settings.subscription_timeout_seconds * 2
            ),
            poll_interval_seconds=settings.relay_poll_interval_seconds,
        ),
        channel=PUSH_CHANNEL,
        owner=owner,
        listen_dsn=listen_dsn,
        name="push-relay",
    )


def message_of(job: ClaimedDelivery) -> tuple[str, str]:
    """(webhook-id, body) of a delivery: the feed's view of the event, or the ping."""
    if job.event_id is None:
        return message_id(job.id, None), _compact(job.payload or {})
    assert job.event_txid is not None and job.event_type is not None
    assert job.event_merchant_profile is not None and job.event_created_at is not None
    row = EventRow(
        id=job.event_id,
        txid=job.event_txid,
        type=job.event_type,
        invoice_number=job.event_invoice_number,
        merchant_profile=job.event_merchant_profile,
        owner="",  # not shown
        operation_id=job.event_operation_id,
        data=job.event_data or {},
        created_at=job.event_created_at,
    )
    return message_id(job.id, job.event_id), event_out(row).model_dump_json()


def _compact(value: dict[str, Any]) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True, slots=True)
class Attempt:
    """One POST: what the log keeps (never a header, never more than a prefix of the answer)."""

    at: datetime
    status: int | None
    latency_ms: float
    error: str | None
    body_prefix: str | None
    retry_after: float | None = None
    forbidden: bool = False

    @property
    def delivered(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    def record(self) -> dict[str, Any]:
        return {
            "at": self.at.isoformat(),
            "statusCode": self.status,
            "latencyMs": self.latency_ms,
            "error": self.error,
            "responseBodyPrefix": self.body_prefix,
        }


class PushSender:
    """One pooled HTTP session for push delivery; the policy's resolver checks every address."""

    def __init__(self, settings: Settings) -> None:
        self.policy = target_policy(settings)
        self.timeout = aiohttp.ClientTimeout(
            total=settings.subscription_timeout_seconds,
            connect=min(5.0, settings.subscription_timeout_seconds),
        )
        self.limit = settings.subscription_delivery_concurrency
        self._session: aiohttp.ClientSession | None = None

    def _get(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(
                limit=self.limit, resolver=GuardedResolver(self.policy), force_close=False
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                cookie_jar=aiohttp.DummyCookieJar(),
                headers={"User-Agent": USER_AGENT},
                trust_env=False,  # no proxy from the environment: the address check is ours
            )
        return self._session

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def post(self, url: str, body: str, headers: dict[str, str]) -> Attempt:
        at = datetime.now(UTC)
        started = time.perf_counter()

        def elapsed() -> float:
            return round((time.perf_counter() - started) * 1000, 1)

        try:
            self.policy.check_url(url)
            async with self._get().post(
                url,
                data=body.encode("utf-8"),
                headers={**headers, "Content-Type": "application/json"},
                allow_redirects=False,
                timeout=self.timeout,
            ) as response:
                prefix = await response.content.read(RESPONSE_PREFIX_BYTES)
                retry_after = parse_retry_after(response.headers.get("Retry-After"))
                status = response.status
        except ForbiddenTarget as exc:
            return Attempt(at, None, elapsed(), str(exc), None, forbidden=True)
        except aiohttp.ClientConnectorError as exc:
            forbidden = isinstance(exc.os_error, ForbiddenTarget)
            reason = str(exc.os_error) if forbidden else f"could not connect ({type(exc).__name__})"
            return Attempt(at, None, elapsed(), reason, None, forbidden=forbidden)
        except TimeoutError:
            return Attempt(at, None, elapsed(), "timed out", None)
        except (aiohttp.ClientError, OSError) as exc:
            return Attempt(at, None, elapsed(), f"no answer ({type(exc).__name__})", None)
        error = None if 200 <= status < 300 else f"answered {status}"
        if 300 <= status < 400:
            error = f"answered {status} (redirects are not followed)"
        text = prefix.decode("utf-8", errors="replace") if prefix else None
        return Attempt(at, status, elapsed(), error, text, retry_after=retry_after)


def callers_scopes(settings: Settings) -> dict[str, frozenset[str]]:
    """Every configured caller (API keys and workload identities) and its scopes, by client."""
    scopes: dict[str, set[str]] = {}
    for key in settings.effective_api_keys:
        scopes.setdefault(key.client, set()).update(key.scopes)
    for provider in settings.oidc_providers:
        for caller in provider.callers:
            scopes.setdefault(caller.client, set()).update(caller.scopes)
    return {client: frozenset(granted) for client, granted in scopes.items()}


class PushDelivery:
    """The relay's handler for push deliveries."""

    def __init__(self, settings: Settings, sender: PushSender) -> None:
        self.settings = settings
        self.sender = sender
        self.callers = callers_scopes(settings)

    def revoked(self, operation: ClaimedDelivery) -> str | None:
        """Why the subscription's creator may no longer read what it was given, or None: a key taken
        out of the settings (or its read or admin scope) stops its subscriptions."""
        scopes = self.callers.get(operation.subscription_owner)
        if scopes is None:
            return f"its owner {operation.subscription_owner!r} is no longer a configured caller"
        if READ not in scopes or (operation.sees_all_owners and ADMIN not in scopes):
            return f"its owner {operation.subscription_owner!r} may no longer read these events"
        return None

    async def deliver(self, operation: ClaimedDelivery, lease: Lease) -> Delivery[PushEffects]:
        if reason := self.revoked(operation):
            now = datetime.now(UTC).isoformat()
            revoked: dict[str, Any] = {"kind": "owner_revoked", "message": reason, "at": now}
            return Failed(revoked, PushEffects(reason))
        message_id, body = message_of(operation)
        secrets = [operation.secret]
        if operation.previous_secret:
            secrets.append(operation.previous_secret)
        headers = signature_headers(message_id, body, secrets)
        await lease.fence()
        attempt = await self.sender.post(operation.url, body, headers)
        record = attempt.record()
        if attempt.delivered:
            return Succeeded(record, PushEffects())
        if attempt.forbidden:
            error = {**record, "kind": "forbidden_target", "message": attempt.error}
            reason = f"its address is not allowed: {attempt.error}"
            return Failed(error, PushEffects(reason if operation.is_event else None))
        if not operation.is_event:  # a ping is one attempt: the answer is the test's result
            return Failed({**record, "kind": "rejected", "message": attempt.error}, PushEffects())
        cap = self.settings.subscription_backoff_cap_seconds
        return TryAgain(
            {**record, "kind": "transient", "message": attempt.error},
            "transient",
            retry_after=None if attempt.retry_after is None else min(attempt.retry_after, cap),
            reconcile=False,
            message=attempt.error or "failed",
        )

    def failure_effects(self, operation: ClaimedDelivery, error: dict[str, Any]) -> PushEffects:
        """The retry window ran out: the endpoint failed all along."""
        if not operation.is_event:
            return PushEffects()
        window = self.settings.subscription_retry_window_seconds
        return PushEffects(f"its endpoint failed every delivery attempt for {window:g} s")

    async def record(
        self, conn: AsyncConnection, done: Sequence[Done[ClaimedDelivery, PushEffects]]
    ) -> None:
        reasons = {
            d.operation.subscription_id: d.effects.disable_reason
            for d in done
            if d.effects.disable_reason is not None
        }
        if not reasons:
            return
        disabled = await SubscriptionRepository(conn).disable(reasons)
        jobs = {d.operation.subscription_id: d.operation for d in done if d.effects.disable_reason}
        events = []
        for row in disabled:
            job = jobs[row.id]
            data = {
                "subscriptionId": str(row.id),
                "url": row.url,
                "reason": reasons[row.id],
                "deliveryId": str(job.id),
                "eventId": job.event_id,
            }
            events.append(
                NewEvent(
                    EventType.SUBSCRIPTION_DISABLED,
                    None,
                    None,
                    data,
                    owner=row.owner,
                    merchant_profile=job.event_merchant_profile or "default",
                )
            )
        await EventRepository(conn).insert(events)

"""Checking a merchant profile's credentials with one cheap signed call, and naming why Cybersource
refuses them.

The call reads the invoice settings (`GET /invoicing/v2/invoiceSettings`: no side effect, always
there for an invoicing merchant). Cybersource's 401 says nothing of its cause, so a refusal is
explained by what can be observed, most certain first:

1. `clock_skew`: the answer's `Date` is far from this machine's clock (a signature's Date, or a
   JWT's `iat`, more than about five minutes off is refused).
2. `ids_swapped`: the key id and the merchant id look exchanged (a key id is a UUID, a merchant id
   is not), and the same call signed with the two exchanged is accepted.
3. `sandbox_key_on_production`: the profile talks to a production host, and the same call sent to
   the sandbox is accepted: the key was made in the sandbox's Business Center.
4. `key_refused`: none of these; the key id is unknown or revoked, the shared secret (or the P12
   certificate) is not the key's, or the key belongs to another merchant.

Probes (2, 3) are made only after a refusal, at most two more calls. This module belongs to the
client package: it imports nothing of the facade.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from app.cybersource.client import CybersourceClient
from app.cybersource.errors import (
    AuthenticationError,
    CybersourceError,
    RejectedError,
    TransientError,
)
from app.cybersource.profiles import CYBERSOURCE_HOSTS, MerchantProfile
from app.cybersource.transport import SessionProvider, Timeouts

UUID_TEXT = re.compile(
    r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
)
PRODUCTION_ENVIRONMENTS = frozenset({"production", "india-production"})

CAUSES = {
    "ok": "Cybersource accepted the credentials.",
    "clock_skew": "The clocks are apart: Cybersource refuses a request dated more than about five "
    "minutes from its own clock. Synchronise this machine's clock (NTP).",
    "ids_swapped": "The key id and the merchant id are swapped: the call is accepted with the two "
    "exchanged. Put the key's serial number (a UUID) in the key id and the organisation id in the "
    "merchant id.",
    "ids_look_swapped": (
        "The merchant id looks like a key id (a UUID) and the key id does not: they "
        "are probably swapped."
    ),
    "sandbox_key_on_production": "A sandbox key on the production host: the sandbox "
    "(apitest.cybersource.com) accepts this key, production does not. Make a key in the production "
    "Business Center, or set CYBERSOURCE_ENVIRONMENT=test.",
    "key_refused": (
        "Cybersource refuses the key: its id is unknown or revoked, the shared secret (or "
        "P12 certificate) is not the key's, the key belongs to another merchant, or it was made "
        "for the other environment (sandbox or production)."
    ),
    "unreachable": "Cybersource could not be reached (network, proxy, DNS or TLS).",
    "rejected": "Cybersource answered the credentials check with an error (invoicing may not be "
    "enabled for this merchant).",
}


@dataclass(frozen=True, slots=True)
class CheckResult:
    profile: str
    merchant_id: str
    host: str
    auth: str
    ok: bool
    cause: str
    summary: str
    status: int | None = None
    correlation_id: str | None = None
    clock_skew_seconds: float | None = None
    elapsed_ms: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "profile": self.profile,
            "merchantId": self.merchant_id,
            "host": self.host,
            "auth": self.auth,
            "ok": self.ok,
            "cause": self.cause,
            "summary": self.summary,
            "status": self.status,
            "correlationId": self.correlation_id,
            "clockSkewSeconds": self.clock_skew_seconds,
            "elapsedMs": self.elapsed_ms,
        }


class CredentialChecker:
    """Checks profiles over a shared session; `sandbox_base_url` is where a production refusal is
    tried again (Cybersource's sandbox unless a test or a mirror says otherwise)."""

    def __init__(
        self,
        sessions: SessionProvider,
        timeouts: Timeouts,
        *,
        sandbox_base_url: str = CYBERSOURCE_HOSTS["test"],
        proxy_for: Callable[[MerchantProfile], str | None] = lambda _profile: None,
    ) -> None:
        self.sessions = sessions
        self.timeouts = timeouts
        self.sandbox_base_url = sandbox_base_url
        self.proxy_for = proxy_for

    def _client(self, profile: MerchantProfile) -> CybersourceClient:
        return CybersourceClient(
            profile, session=self.sessions, timeouts=self.timeouts, proxy=self.proxy_for(profile)
        )

    async def _accepted(self, profile: MerchantProfile) -> bool:
        try:
            await self._client(profile).get_invoice_settings()
        except CybersourceError:
            return False
        return True

    async def check(self, profile: MerchantProfile) -> CheckResult:
        client = self._client(profile)
        started = time.perf_counter()
        common: dict[str, Any] = {
            "profile": profile.name,
            "merchant_id": profile.merchant_id,
            "host": client.host,
            "auth": profile.auth,
        }
        try:
            result = await client.get_invoice_settings()
        except AuthenticationError as exc:
            cause = await self._refusal_cause(profile, exc)
            return self._result(common, started, False, cause, exc)
        except TransientError as exc:
            return self._result(common, started, False, "unreachable", exc)
        except RejectedError as exc:
            return self._result(common, started, False, "rejected", exc)
        except CybersourceError as exc:
            return self._result(common, started, False, "unreachable", exc)
        elapsed = round((time.perf_counter() - started) * 1000, 1)
        return CheckResult(
            **common,
            ok=True,
            cause="ok",
            summary=CAUSES["ok"],
            status=result.http_status,
            correlation_id=result.correlation_id,
            elapsed_ms=elapsed,
        )

    @staticmethod
    def _result(
        common: dict[str, Any], started: float, ok: bool, cause: str, exc: CybersourceError
    ) -> CheckResult:
        summary = CAUSES[cause]
        if cause in ("unreachable", "rejected"):
            summary = f"{summary} ({exc.message})"
        skew = exc.clock_skew_seconds if isinstance(exc, AuthenticationError) else None
        return CheckResult(
            **common,
            ok=ok,
            cause=cause,
            summary=summary,
            status=exc.status,
            correlation_id=exc.correlation_id,
            clock_skew_seconds=None if skew is None else round(skew, 1),
            elapsed_ms=round((time.perf_counter() - started) * 1000, 1),
        )

    async def _refusal_cause(self, profile: MerchantProfile, exc: AuthenticationError) -> str:
        if exc.clock_skew_seconds is not None:
            return "clock_skew"
        looks_swapped = bool(UUID_TEXT.match(profile.merchant_id)) and not UUID_TEXT.match(
            profile.key_id
        )
        if looks_swapped:
            exchanged = profile.model_copy(
                update={"merchant_id": profile.key_id, "key_id": profile.merchant_id}
            )
            return "ids_swapped" if await self._accepted(exchanged) else "ids_look_swapped"
        if profile.environment in PRODUCTION_ENVIRONMENTS:
            sandbox = profile.model_copy(
                update={"environment": "test", "base_url": self.sandbox_base_url}
            )
            if await self._accepted(sandbox):
                return "sandbox_key_on_production"
        return "key_refused"

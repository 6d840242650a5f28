"""Are the merchant profiles' credentials accepted? `invoicing-gateway cybersource check` and
`/readyz?deep=1` ask Cybersource once per profile (`app/cybersource/diagnosis.py` names the cause of
a refusal)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from app.cybersource.client import CybersourceClients, proxy_from_settings
from app.cybersource.diagnosis import CheckResult, CredentialChecker
from app.cybersource.profiles import MerchantProfile
from app.cybersource.transport import SessionProvider, Timeouts
from app.settings import Settings


def checker(settings: Settings, sessions: SessionProvider) -> CredentialChecker:
    def proxy_for(profile: MerchantProfile) -> str | None:
        return proxy_from_settings(settings, profile)

    return CredentialChecker(
        sessions,
        Timeouts.from_settings(settings),
        sandbox_base_url=settings.cybersource_check_sandbox_url,
        proxy_for=proxy_for,
    )


async def check_profiles(settings: Settings, names: Sequence[str]) -> list[CheckResult]:
    """The command line's check: its own session, closed afterwards."""
    sessions = SessionProvider(max_connections=max(4, len(names) * 3))
    try:
        probe = checker(settings, sessions)
        profiles = settings.merchant_profiles
        return list(await asyncio.gather(*(probe.check(profiles[name]) for name in names)))
    finally:
        await sessions.aclose()


class CredentialCheckService:
    """`/readyz?deep=1`: every profile checked on the API's own connection pool."""

    def __init__(self, *, settings: Settings, clients: CybersourceClients) -> None:
        self.settings = settings
        self.probe = checker(settings, clients.sessions)

    async def check_all(self) -> list[CheckResult]:
        profiles = self.settings.merchant_profiles.values()
        return list(await asyncio.gather(*(self.probe.check(profile) for profile in profiles)))

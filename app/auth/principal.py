"""Who is calling: the client an API key or a workload token belongs to, its scopes and merchant
profiles."""

from __future__ import annotations

from dataclasses import dataclass

READ = "invoices:read"
WRITE = "invoices:write"
ADMIN = "invoices:admin"


@dataclass(frozen=True, slots=True)
class Caller:
    client: str
    scopes: frozenset[str]
    # The merchant profiles (X-Merchant-Profile) this caller may act for; admins too are bound to
    # them.
    profiles: frozenset[str] = frozenset({"default"})

    @property
    def is_admin(self) -> bool:
        return ADMIN in self.scopes

    def may_act_for(self, profile: str) -> bool:
        return profile in self.profiles

    def may_see(self, owner: str, profile: str) -> bool:
        """The one owner-or-admin check: callers see their own invoices and commands, admins see
        all, and nobody sees anything of a merchant profile it may not act for."""
        return self.may_act_for(profile) and (owner == self.client or self.is_admin)

    def owner_filter(self, requested: str | None = None) -> str | None:
        """The owner a list is limited to: the caller's own, unless an admin asks for any (or
        all)."""
        return requested if self.is_admin else self.client

"""Who is calling: the client an API key belongs to, and what its scopes let it do."""

from __future__ import annotations

from dataclasses import dataclass

READ = "invoices:read"
WRITE = "invoices:write"
ADMIN = "invoices:admin"


@dataclass(frozen=True, slots=True)
class Caller:
    client: str
    scopes: frozenset[str]

    @property
    def is_admin(self) -> bool:
        return ADMIN in self.scopes

    def may_see(self, owner: str) -> bool:
        """The one owner-or-admin check: callers see their own invoices and commands, admins see all."""
        return owner == self.client or self.is_admin

    def owner_filter(self, requested: str | None = None) -> str | None:
        """The owner a list is limited to: the caller's own, unless an admin asks for any (or all)."""
        return requested if self.is_admin else self.client

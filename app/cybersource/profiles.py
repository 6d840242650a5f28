"""Cybersource merchant profiles: who the facade signs as, and where Cybersource answers.

Also what the client needs of the service's settings (`ClientSettings`, structural), so this package
imports nothing of the rest of the facade.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Protocol

from pydantic import BaseModel, SecretStr, model_validator

CybersourceEnvironment = Literal["test", "production", "india-production"]
AuthScheme = Literal["http-signature", "jwt"]
# Message-level encryption of request bodies and/or answers (JWT only; AUTH.md "MLE").
MleMode = Literal["off", "requests", "responses", "both"]

CYBERSOURCE_HOSTS: dict[str, str] = {
    "test": "https://apitest.cybersource.com",
    "production": "https://api.cybersource.com",
    "india-production": "https://api.in.cybersource.com",
}

# The simulator's well-known local credentials (README); fine locally, never in production.
LOCAL_MERCHANT_ID = "local_merchant"
LOCAL_KEY_ID = "00000000-0000-4000-8000-00000000000a"
# A public local simulator credential (hence the noqa: S105); base64 of a 32-byte local text.
LOCAL_SHARED_SECRET = "bG9jYWwtc2ltdWxhdG9yLXNoYXJlZC1zZWNyZXQtMDE="  # noqa: S105
LOCAL_WEBHOOK_KEY_ID = "00000000-0000-4000-8000-00000000000b"
# A public local simulator credential (hence the noqa: S105).
LOCAL_WEBHOOK_SECRET = "bG9jYWwtc2ltdWxhdG9yLXdlYmhvb2stc2VjcmV0LTAx"  # noqa: S105


class MerchantProfile(BaseModel):
    """One Cybersource merchant the facade may act for, with its credentials."""

    model_config = {"frozen": True, "extra": "forbid"}

    name: str = "default"
    merchant_id: str
    key_id: str
    shared_secret: SecretStr | None = None
    auth: AuthScheme = "http-signature"
    # JWT: "shared-secret" signs HS256 with the shared secret; "p12" signs RS256 with the
    # certificate.
    jwt_key_type: Literal["shared-secret", "p12"] = "shared-secret"
    p12_path: Path | None = None
    p12_password: SecretStr | None = None
    # Meta key: the key belongs to this portfolio; the transacting merchant stays merchant_id.
    portfolio_id: str | None = None
    environment: CybersourceEnvironment = "test"
    base_url: str | None = None
    # MLE: requests are encrypted to Cybersource's MLE certificate (PEM; its serial number is the
    # kid), answers to the merchant's key registered with Cybersource (its private half, PEM, and
    # its kid).
    mle: MleMode = "off"
    mle_certificate: str | None = None
    mle_response_private_key: SecretStr | None = None
    mle_response_key_id: str | None = None

    @property
    def mle_requests(self) -> bool:
        return self.mle in ("requests", "both")

    @property
    def mle_responses(self) -> bool:
        return self.mle in ("responses", "both")

    @property
    def resolved_base_url(self) -> str:
        return (self.base_url or CYBERSOURCE_HOSTS[self.environment]).rstrip("/")

    @model_validator(mode="after")
    def _credentials_present(self) -> MerchantProfile:
        needs_secret = self.auth == "http-signature" or self.jwt_key_type == "shared-secret"
        if needs_secret and self.shared_secret is None:
            raise ValueError(f"merchant profile {self.name!r} needs a shared secret")
        if self.auth == "jwt" and self.jwt_key_type == "p12" and self.p12_path is None:
            raise ValueError(
                f"merchant profile {self.name!r} uses a P12 JWT key but has no p12_path"
            )
        if self.mle != "off" and self.auth != "jwt":
            raise ValueError(
                f"merchant profile {self.name!r}: message-level encryption works only with JWT "
                "authentication (Cybersource's SDK would send plaintext with HTTP Signature)"
            )
        if self.mle_requests and not self.mle_certificate:
            raise ValueError(
                f"merchant profile {self.name!r}: MLE of requests needs Cybersource's MLE "
                "certificate"
            )
        if self.mle_responses and not (self.mle_response_private_key and self.mle_response_key_id):
            raise ValueError(
                f"merchant profile {self.name!r}: MLE of answers needs the response key and its id"
            )
        return self


class ClientSettings(Protocol):
    """The settings a set of Cybersource clients is built from (the facade's `Settings` has
    them)."""

    @property
    def merchant_profiles(self) -> dict[str, MerchantProfile]: ...

    cybersource_max_connections: int
    # Egress (README "Egress"): an explicit proxy for every call, or the standard *_PROXY variables.
    cybersource_proxy_url: SecretStr | None
    cybersource_proxy_from_env: bool
    cybersource_connect_timeout: float
    cybersource_read_timeout: float
    cybersource_total_timeout: float

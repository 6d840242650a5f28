"""Service configuration from environment variables (pydantic-settings).

Every variable is documented in the README. Secrets are `SecretStr` so they never end up in a log
line or a repr. In production the settings refuse to load with a missing or placeholder secret.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from datetime import datetime
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from app.cybersource.profiles import (
    CYBERSOURCE_HOSTS as CYBERSOURCE_HOSTS,
)
from app.cybersource.profiles import (
    LOCAL_KEY_ID as LOCAL_KEY_ID,
)
from app.cybersource.profiles import (
    LOCAL_MERCHANT_ID as LOCAL_MERCHANT_ID,
)
from app.cybersource.profiles import (
    LOCAL_SHARED_SECRET as LOCAL_SHARED_SECRET,
)
from app.cybersource.profiles import (
    LOCAL_WEBHOOK_KEY_ID as LOCAL_WEBHOOK_KEY_ID,
)
from app.cybersource.profiles import (
    LOCAL_WEBHOOK_SECRET as LOCAL_WEBHOOK_SECRET,
)
from app.cybersource.profiles import (
    AuthScheme as AuthScheme,
)
from app.cybersource.profiles import (
    CybersourceEnvironment as CybersourceEnvironment,
)
from app.cybersource.profiles import (
    MerchantProfile as MerchantProfile,
)
from app.cybersource.profiles import (
    MleMode as MleMode,
)

LOCAL_DEV_API_KEY = (
    "local-dev-key"  # accepted only outside production, and only when API_KEYS is empty
)

# Values that mean "nobody configured this": refused outside local and test use.
PLACEHOLDER_SECRETS = frozenset(
    {"", "changeme", "change-me", "placeholder", "secret", "xxx", "todo"}
)


class WebhookKey(BaseModel):
    """A Cybersource digital signature key that incoming webhooks may still be signed with."""

    model_config = {"frozen": True, "extra": "forbid"}

    key_id: str = Field(min_length=1)
    secret: SecretStr
    # When Cybersource lets the key expire (the facade warns from 30 days before).
    expires_at: datetime | None = None


class ApiKey(BaseModel):
    """A caller of the facade: its name, the SHA-256 of its key, what it may do and for which
    merchants."""

    model_config = {"frozen": True, "extra": "forbid"}

    client: str = Field(min_length=1, max_length=64)
    sha256: str = Field(pattern=r"^[0-9a-fA-F]{64}$")
    scopes: tuple[str, ...] = ("invoices:read", "invoices:write")
    # The merchant profiles (X-Merchant-Profile) this caller may act for.
    profiles: tuple[str, ...] = ("default",)


class OidcCaller(BaseModel):
    """A workload that proves itself with a JWT: its token's `sub`, and the client it is known
    as."""

    model_config = {"frozen": True, "extra": "forbid"}

    subject: str = Field(min_length=1)
    client: str = Field(min_length=1, max_length=64)
    scopes: tuple[str, ...] = ("invoices:read",)
    profiles: tuple[str, ...] = ("default",)


class OidcProvider(BaseModel):
    """An issuer of JWTs (a Kubernetes cluster's service-account issuer, any OIDC provider)."""

    model_config = {"frozen": True, "extra": "forbid"}

    issuer: str = Field(min_length=1)
    audience: str = Field(min_length=1)
    jwks_url: str = Field(pattern=r"^https?://")
    callers: tuple[OidcCaller, ...] = ()


MIN_SECRET_BYTES = 16
MIN_DISTINCT_SECRET_BYTES = 12


def _is_base64(value: str) -> bool:
    try:
        base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return False
    return True


def _weak_secret(value: str) -> str | None:
    """Why a base64 secret is too weak for production (never the value itself), or None."""
    decoded = base64.b64decode(value, validate=True)
    if len(decoded) < MIN_SECRET_BYTES:
        return f"fewer than {MIN_SECRET_BYTES} bytes"
    if len(set(decoded)) < MIN_DISTINCT_SECRET_BYTES:
        return "too little entropy (a repeated or dictionary-like value)"
    if decoded.decode("latin-1").lower().strip() in PLACEHOLDER_SECRETS:
        return "a placeholder"
    return None


def _parse_json_list(value: Any) -> Any:
    if isinstance(value, str):
        return json.loads(value) if value.strip() else []
    return value


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=None, extra="ignore", case_sensitive=False)

    app_env: Literal["local", "test", "production"] = "local"
    log_level: str = "INFO"

    database_url: str = "postgresql+asyncpg://postgres@127.0.0.1:5432/invoicing_gateway"
    # PgBouncer in transaction mode: no prepared-statement cache; LISTEN needs a direct connection.
    database_pgbouncer: bool = False
    database_listen_url: str | None = None
    database_pool_size: int = Field(default=20, ge=1)
    # How long a request waits for a free pooled connection before it answers 503.
    database_pool_timeout_seconds: float = Field(default=10.0, gt=0)

    cybersource_environment: CybersourceEnvironment = "test"
    cybersource_base_url: str | None = None
    cybersource_merchant_id: str = LOCAL_MERCHANT_ID
    cybersource_key_id: str = LOCAL_KEY_ID
    cybersource_shared_secret: SecretStr = SecretStr(LOCAL_SHARED_SECRET)
    cybersource_auth: AuthScheme = "http-signature"
    cybersource_jwt_key_type: Literal["shared-secret", "p12"] = "shared-secret"
    cybersource_p12_path: Path | None = None
    cybersource_p12_password: SecretStr | None = None
    cybersource_portfolio_id: str | None = None
    # Message-level encryption (README "Authentication"), JWT only: off, requests, responses or
    # both.
    cybersource_mle: MleMode = "off"
    # Cybersource's MLE certificate (PEM text; its serial number is the JWE's kid): requests are
    # encrypted to it.
    cybersource_mle_certificate: str | None = None
    # The merchant's key registered with Cybersource for encrypted answers: its private half (PEM
    # text, a secret) and its id.
    cybersource_mle_response_private_key: SecretStr | None = None
    cybersource_mle_response_key_id: str | None = None
    # More merchants: a JSON list of MerchantProfile objects (each with its own "name").
    cybersource_profiles: Annotated[list[MerchantProfile], NoDecode] = Field(default_factory=list)
    cybersource_connect_timeout: float = 5.0
    cybersource_read_timeout: float = 30.0
    cybersource_total_timeout: float = 45.0
    cybersource_max_connections: int = 100
    # Egress (README "Egress"): every Cybersource call through this proxy
    # (http://user:password@host:port; secret: it may carry credentials); without it,
    # HTTPS_PROXY/HTTP_PROXY/NO_PROXY decide unless CYBERSOURCE_PROXY_FROM_ENV=false.
    cybersource_proxy_url: SecretStr | None = None
    cybersource_proxy_from_env: bool = True
    # Where `cybersource check` tries a key that production refused (a sandbox key on production?).
    cybersource_check_sandbox_url: str = CYBERSOURCE_HOSTS["test"]
    cybersource_partner_solution_id: str | None = Field(default=None, max_length=8)

    cybersource_webhook_key_id: str = LOCAL_WEBHOOK_KEY_ID
    cybersource_webhook_secret: SecretStr = SecretStr(LOCAL_WEBHOOK_SECRET)
    # During a key rotation, the keys notifications may still be signed with: [{"key_id",
    # "secret"}].
    cybersource_webhook_previous_keys: Annotated[list[WebhookKey], NoDecode] = Field(
        default_factory=list
    )
    # When the current webhook key expires (`cybersource-webhooks setup` prints it); warnings from
    # 30 days.
    cybersource_webhook_key_expires_at: datetime | None = None

    api_keys: Annotated[list[ApiKey], NoDecode] = Field(default_factory=list)
    # Callers with workload identity (projected service-account tokens, OIDC JWTs); README
    # "Security".
    oidc_providers: Annotated[list[OidcProvider], NoDecode] = Field(default_factory=list)
    oidc_jwks_cache_seconds: float = Field(default=300.0, gt=0)
    # An unknown `kid` fetches the JWKS again at most this often per issuer (a key rotation, not a
    # flood).
    oidc_jwks_min_refresh_seconds: float = Field(default=30.0, ge=0)
    oidc_leeway_seconds: float = Field(default=30.0, ge=0, le=300)

    # Limits at the edge (README "Security"): what one connection or request may cost.
    http_max_header_bytes: int = Field(default=16384, ge=1024, le=1048576)
    http_max_headers: int = Field(default=100, ge=10, le=1000)
    http_max_body_bytes: int = Field(default=1048576, ge=1024)
    webhook_max_body_bytes: int = Field(default=65536, ge=1024)
    http_header_timeout_seconds: float = Field(default=10.0, gt=0)
    http_body_timeout_seconds: float = Field(default=30.0, gt=0)
    http_keep_alive_seconds: int = Field(default=5, ge=1)
    http_max_connections: int = Field(default=1000, ge=1)
    # Swagger UI and /openapi.json; unset means on, except in production.
    docs_enabled: bool | None = None
    # `limits` notation ("30/minute"): refreshes per caller, and webhook re-reads per invoice.
    refresh_rate_limit: str = "30/minute"
    webhook_rate_limit: str = "60/minute"
    # Webhook receipts (what de-duplicates redeliveries) are purged after this; longer than the
    # signature's 60-minute window, so a replay inside the window is always recognised.
    webhook_receipt_retention_hours: float = Field(default=168.0, ge=2.0)
    # Adoption (README "Adopting invoices made elsewhere"): a notification about an invoice the
    # store does not know adopts it under ADOPT_OWNER when this is on (else it is acknowledged and
    # dropped).
    webhook_adopt_unknown: bool = False
    adopt_owner: str = Field(default="adopted", min_length=1, max_length=64)

    # Tracing (OpenTelemetry): off unless an OTLP endpoint is configured.
    otel_exporter_otlp_endpoint: str | None = None
    otel_exporter_otlp_headers: SecretStr | None = None
    otel_service_name: str = "invoicing-gateway"
    otel_traces_sampler_ratio: float = Field(default=1.0, ge=0, le=1)

    # Invoice numbers: PREFIX + zero-padded counter. "sequence" never blocks concurrent creates;
    # "gapless" uses a counter row that serialises every create transaction (see README).
    # Letters and digits by default ("INV00000042", 11 characters): Cybersource's numbers are that.
    invoice_number_prefix: str = Field(default="INV", pattern=r"^[A-Za-z0-9_-]{0,20}$")
    invoice_number_width: int = Field(default=8, ge=1, le=20)
    invoice_number_mode: Literal["sequence", "gapless"] = "sequence"
    # Cybersource's totals rule (README "Validation"): "warn" accepts and reports a break in the
    # answer's `warnings`, "strict" refuses it ("check" is its old name), "pass-through" does not
    # look.
    invoice_totals: Annotated[
        Literal["warn", "strict", "pass-through"],
        BeforeValidator(lambda value: "strict" if value == "check" else value),
    ] = "warn"
    # How long a mutating request waits for its outbox command before answering 202.
    request_wait_seconds: float = Field(default=10.0, ge=0, le=60)

    # `api --with-relay` sets this: the relay runs inside the API process (local use).
    relay_in_process: bool = False
    # `invoicing-gateway relay` serves its Prometheus counters here (0 turns it off).
    # Loopback unless set: a pod sets 0.0.0.0 so Prometheus and the probes reach it.
    relay_metrics_host: str = "127.0.0.1"
    relay_metrics_port: int = Field(default=9101, ge=0, le=65535)
    relay_concurrency: int = Field(default=32, ge=1, le=1024)
    relay_batch_size: int = Field(default=64, ge=1, le=1000)
    # Renewed by a heartbeat every third of it while a relay holds the command: short, so a dead
    # relay's commands move to another relay within seconds.
    relay_lease_seconds: float = Field(default=15.0, ge=1.0)
    relay_poll_interval_seconds: float = Field(default=1.0, gt=0)
    relay_listen: bool = True
    relay_max_attempts: int = Field(default=12, ge=1)
    relay_max_age_seconds: float = Field(default=86400.0, gt=0)
    relay_backoff_base_seconds: float = Field(default=0.5, gt=0)
    relay_backoff_cap_seconds: float = Field(default=300.0, gt=0)
    # 502 "General system failure" is often an account problem: retry it only this many times.
    relay_account_error_attempts: int = Field(default=3, ge=1)

    # The status reconciler (runs with the relay): re-read open invoices (CREATED, SENT, PARTIAL,
    # PENDING) not seen upstream for this long, in case a payment's webhook was lost; 0 turns it
    # off.
    reconcile_after_seconds: float = Field(default=3600.0, ge=0)
    reconcile_batch_size: int = Field(default=50, ge=1, le=1000)
    reconcile_concurrency: int = Field(default=4, ge=1, le=64)

    idempotency_retention_hours: float = Field(default=24.0, gt=0)
    idempotency_lock_seconds: float = Field(default=60.0, gt=0)
    idempotency_purge_batch: int = Field(default=1000, ge=1)
    housekeeping_interval_seconds: float = Field(default=60.0, gt=0)

    # Push subscriptions (README "Receiving events"): where they may point, and how deliveries
    # retry. strict: https unless the host is allowed, public addresses only; unset: strict in
    # production.
    subscription_url_policy: Literal["strict", "open"] | None = None
    subscription_allowed_hosts: Annotated[tuple[str, ...], NoDecode] = ()
    subscription_delivery_concurrency: int = Field(default=16, ge=1, le=1024)
    subscription_timeout_seconds: float = Field(default=15.0, gt=0, le=120)
    subscription_retry_window_seconds: float = Field(default=86400.0, gt=0)
    subscription_backoff_base_seconds: float = Field(default=5.0, gt=0)
    subscription_backoff_cap_seconds: float = Field(default=3600.0, gt=0)
    subscription_secret_grace_seconds: float = Field(default=86400.0, ge=0, le=7 * 86400)

    @field_validator(
        "api_keys",
        "cybersource_profiles",
        "cybersource_webhook_previous_keys",
        "oidc_providers",
        mode="before",
    )
    @classmethod
    def _json_lists(cls, value: Any) -> Any:
        return _parse_json_list(value)

    @field_validator("cybersource_webhook_key_expires_at", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("subscription_allowed_hosts", mode="before")
    @classmethod
    def _host_list(cls, value: Any) -> Any:
        # A JSON list, or names separated by commas.
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                return json.loads(text)
            return [part.strip() for part in text.split(",") if part.strip()]
        return value

    @field_validator("refresh_rate_limit", "webhook_rate_limit")
    @classmethod
    def _rate_limit(cls, value: str) -> str:
        from limits import parse_many

        parse_many(value)  # raises ValueError on anything but "N/second|minute|hour|day"
        return value

    @model_validator(mode="after")
    def _secrets_are_base64(self) -> Settings:
        # Checked at start in every environment: otherwise every webhook (or call) would answer 500.
        problems = [
            f"{name} is not valid base64"
            for name, secret in self._named_secrets().items()
            if not _is_base64(secret.get_secret_value().strip())
        ]
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @model_validator(mode="after")
    def _profiles_exist(self) -> Settings:
        known = {"default", *(profile.name for profile in self.cybersource_profiles)}
        callers: list[ApiKey | OidcCaller] = [*self.api_keys]
        for provider in self.oidc_providers:
            callers.extend(provider.callers)
        granted = [(caller.client, profile) for caller in callers for profile in caller.profiles]
        unknown = sorted(
            {f"{client}: {profile}" for client, profile in granted if profile not in known}
        )
        if unknown:
            raise ValueError(
                "callers name merchant profiles that are not configured: " + ", ".join(unknown)
            )
        return self

    @model_validator(mode="after")
    def _profiles_are_consistent(self) -> Settings:
        # Refused at start, not at the first call: MLE without JWT, or without its key or
        # certificate.
        self.merchant_profiles  # noqa: B018 (builds and validates every profile)
        return self

    @model_validator(mode="after")
    def _invoice_numbers_fit(self) -> Settings:
        # Cybersource's invoice id holds at most 26 characters
        # (app.schemas.INVOICE_NUMBER_MAX_LENGTH).
        if len(self.invoice_number_prefix) + self.invoice_number_width > 26:
            raise ValueError(
                "INVOICE_NUMBER_PREFIX plus INVOICE_NUMBER_WIDTH digits must fit in 26 characters"
            )
        return self

    @model_validator(mode="after")
    def _refuse_placeholders_in_production(self) -> Settings:
        if self.app_env != "production":
            return self
        problems: list[str] = []
        local_values = {LOCAL_SHARED_SECRET, LOCAL_WEBHOOK_SECRET}
        for name, secret in self._named_secrets().items():
            value = secret.get_secret_value().strip()
            if value.lower() in PLACEHOLDER_SECRETS or value in local_values:
                problems.append(f"{name} is missing or a placeholder")
            elif weakness := _weak_secret(value):
                problems.append(f"{name} is too weak: {weakness}")
        if self.cybersource_merchant_id == LOCAL_MERCHANT_ID:
            problems.append("CYBERSOURCE_MERCHANT_ID is the local simulator's merchant")
        if not self.api_keys and not self.oidc_providers:
            problems.append("API_KEYS and OIDC_PROVIDERS are empty: no caller could authenticate")
        local_digest = hashlib.sha256(LOCAL_DEV_API_KEY.encode()).hexdigest()
        if any(key.sha256.lower() == local_digest for key in self.api_keys):
            problems.append("API_KEYS holds the digest of the local development key")
        if self.subscription_url_policy == "open":
            problems.append("SUBSCRIPTION_URL_POLICY=open lets subscriptions reach any address")
        if problems:
            raise ValueError("refusing to start in production: " + "; ".join(problems))
        return self

    def _named_secrets(self) -> dict[str, SecretStr]:
        """Every base64 secret by the name a message may show (never the value)."""
        secrets = {
            "CYBERSOURCE_SHARED_SECRET": self.cybersource_shared_secret,
            "CYBERSOURCE_WEBHOOK_SECRET": self.cybersource_webhook_secret,
        }
        for webhook_key in self.cybersource_webhook_previous_keys:
            secrets[f"the previous webhook key {webhook_key.key_id!r}"] = webhook_key.secret
        for profile in self.cybersource_profiles:
            if profile.shared_secret is not None:
                secrets[f"the shared secret of profile {profile.name!r}"] = profile.shared_secret
        return secrets

    @property
    def docs_on(self) -> bool:
        """Swagger UI and /openapi.json: DOCS_ENABLED, by default on except in production."""
        if self.docs_enabled is None:
            return self.app_env != "production"
        return self.docs_enabled

    @property
    def subscription_url_policy_in_force(self) -> Literal["strict", "open"]:
        if self.subscription_url_policy is None:
            return "strict" if self.app_env == "production" else "open"
        return self.subscription_url_policy

    @property
    def tracing_enabled(self) -> bool:
        return bool(self.otel_exporter_otlp_endpoint)

    @cached_property
    def webhook_keys(self) -> dict[str, bytes]:
        """keyId -> decoded secret for every key incoming webhooks may be signed with."""
        keys = {key.key_id: key.secret for key in self.cybersource_webhook_previous_keys}
        keys[self.cybersource_webhook_key_id] = self.cybersource_webhook_secret
        return {
            key_id: base64.b64decode(secret.get_secret_value()) for key_id, secret in keys.items()
        }

    @cached_property
    def effective_api_keys(self) -> list[ApiKey]:
        """API_KEYS; locally, with none configured, the documented development key
        `local-dev-key`."""
        if self.api_keys or self.app_env == "production":
            return self.api_keys
        return [
            ApiKey(
                client="local",
                sha256=hashlib.sha256(LOCAL_DEV_API_KEY.encode()).hexdigest(),
                scopes=(
                    "invoices:read",
                    "invoices:write",
                    "invoices:admin",
                    "subscriptions:read",
                    "subscriptions:write",
                ),
                profiles=tuple(self.merchant_profiles),
            )
        ]

    @cached_property
    def default_profile(self) -> MerchantProfile:
        return MerchantProfile(
            name="default",
            merchant_id=self.cybersource_merchant_id,
            key_id=self.cybersource_key_id,
            shared_secret=self.cybersource_shared_secret,
            auth=self.cybersource_auth,
            jwt_key_type=self.cybersource_jwt_key_type,
            p12_path=self.cybersource_p12_path,
            p12_password=self.cybersource_p12_password,
            portfolio_id=self.cybersource_portfolio_id,
            environment=self.cybersource_environment,
            base_url=self.cybersource_base_url,
            mle=self.cybersource_mle,
            mle_certificate=self.cybersource_mle_certificate,
            mle_response_private_key=self.cybersource_mle_response_private_key,
            mle_response_key_id=self.cybersource_mle_response_key_id,
        )

    @cached_property
    def merchant_profiles(self) -> dict[str, MerchantProfile]:
        profiles = {"default": self.default_profile}
        for profile in self.cybersource_profiles:
            if profile.name in profiles:
                raise ValueError(f"merchant profile {profile.name!r} is defined twice")
            profiles[profile.name] = profile
        return profiles

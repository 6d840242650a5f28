"""Simulator configuration: merchants and their keys, the webhook target, tolerances, start-up
faults.

Plain frozen dataclasses (not pydantic settings): the simulator is configured by CLI flags or a JSON
file, never by the facade's environment, and must stay importable without any of the facade's
config.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

from app.cybersource.signing import VerificationKey, decode_secret

DEFAULT_HOST_NAME = None  # accept any Host unless --host-name says which host we pretend to be
DEFAULT_PAYMENT_LINK_BASE = "https://businesscentertest.cybersource.com"
# WEBHOOKS.md 6.2: by default a failing notification is retried after about 1, 2 and 3 minutes.
DEFAULT_WEBHOOK_RETRY_DELAYS: tuple[float, ...] = (60.0, 60.0, 60.0)
DEFAULT_WEBHOOK_ID = "5c3b2f6e-1f4a-4e1d-e063-9a588e0a1d2c"


@dataclass(frozen=True, slots=True)
class MerchantConfig:
    """One merchant the simulator knows, with the key that may sign for it."""

    merchant_id: str
    key_id: str
    shared_secret: str = field(repr=False)
    # Meta key: the key belongs to this portfolio and the signature string names it (AUTH.md).
    portfolio_id: str | None = None
    # RS256 JWT: PEM of the merchant certificate; the JWT `kid` is its serial number.
    certificate_pem: str | None = field(default=None, repr=False)
    display_name: str | None = None
    # Response MLE: the public key (PEM) the merchant registered for encrypted answers, and its kid.
    mle_response_public_key_pem: str | None = field(default=None, repr=False)
    mle_response_key_id: str | None = None

    def __post_init__(self) -> None:
        if not self.merchant_id or not self.key_id:
            raise ValueError("a merchant needs merchant_id and key_id")
        decode_secret(self.shared_secret)  # fail at start-up, not on the first request

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> MerchantConfig:
        cert = data.get("certificate_pem")
        if cert is None and data.get("certificate_file"):
            cert = Path(str(data["certificate_file"])).read_text(encoding="utf-8")
        return cls(
            merchant_id=str(data["merchant_id"]),
            key_id=str(data["key_id"]),
            shared_secret=str(data["shared_secret"]),
            portfolio_id=_opt_str(data.get("portfolio_id")),
            certificate_pem=cert,
            display_name=_opt_str(data.get("display_name")),
            mle_response_public_key_pem=_opt_str(data.get("mle_response_public_key_pem")),
            mle_response_key_id=_opt_str(data.get("mle_response_key_id")),
        )


@dataclass(frozen=True, slots=True)
class WebhookConfig:
    """Where invoicing notifications go and how they are signed and retried (WEBHOOKS.md
    3, 4, 6)."""

    url: str
    key_id: str
    secret: str = field(repr=False)
    webhook_id: str = DEFAULT_WEBHOOK_ID
    retry_delays: tuple[float, ...] = DEFAULT_WEBHOOK_RETRY_DELAYS
    timeout_s: float = 10.0
    # "payload" = shape A (v3 envelope, the documented default); "payloads" = shape C (2023
    # example).
    body_shape: str = "payload"
    # "member" signs t + "." + compact(payload member) as Cybersource's plugins verify; "raw-body"
    # the body.
    sign: str = "member"

    def __post_init__(self) -> None:
        decode_secret(self.secret)
        if self.body_shape not in {"payload", "payloads"}:
            raise ValueError("webhook body_shape must be 'payload' or 'payloads'")
        if self.sign not in {"member", "raw-body"}:
            raise ValueError("webhook sign must be 'member' or 'raw-body'")
        if any(delay < 0 for delay in self.retry_delays):
            raise ValueError("webhook retry delays must not be negative")

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> WebhookConfig:
        delays = data.get("retry_delays", DEFAULT_WEBHOOK_RETRY_DELAYS)
        return cls(
            url=str(data["url"]),
            key_id=str(data["key_id"]),
            secret=str(data["secret"]),
            webhook_id=str(data.get("webhook_id", DEFAULT_WEBHOOK_ID)),
            retry_delays=parse_delays(delays),
            timeout_s=float(data.get("timeout_s", 10.0)),
            body_shape=str(data.get("body_shape", "payload")),
            sign=str(data.get("sign", "member")),
        )


@dataclass(frozen=True, slots=True)
class SimulatorConfig:
    merchants: tuple[MerchantConfig, ...]
    webhook: WebhookConfig | None = None
    # The host the simulator pretends to be; None accepts whatever Host was signed.
    host_name: str | None = DEFAULT_HOST_NAME
    clock_tolerance_s: float = 300.0
    # Seconds the simulator's clock is ahead of the machine's (negative: behind): its signature
    # check and the `Date` of its answers use it, so a client with a skewed clock can be tried out.
    clock_offset_s: float = 0.0
    # Fault rules (JSON objects, see faults.py) active from the start.
    faults: tuple[Mapping[str, Any], ...] = ()
    fault_seed: int | None = None
    # How long a `hang` fault holds a request when the client never gives up.
    hang_s: float = 300.0
    payment_link_base: str = DEFAULT_PAYMENT_LINK_BASE
    first_invoice_number: int = 98753
    log_requests: bool = True
    # Message-level encryption (AUTH.md "MLE"): the simulator's "Cybersource MLE" certificate and
    # its private key (PEM; the certificate's serial number is the kid requests are encrypted to).
    # Without them an encrypted body is refused (400). `mle_required`: refuse a plaintext body on an
    # operation that allows MLE, to prove a client encrypts.
    mle_certificate_pem: str | None = field(default=None, repr=False)
    mle_private_key_pem: str | None = field(default=None, repr=False)
    mle_required: bool = False

    def __post_init__(self) -> None:
        if not self.merchants:
            raise ValueError("the simulator needs at least one merchant")
        ids = [m.merchant_id for m in self.merchants]
        if len(set(ids)) != len(ids):
            raise ValueError("a merchant id is configured twice")

    @property
    def default_merchant_id(self) -> str:
        return self.merchants[0].merchant_id

    def verification_keys(self) -> dict[str, VerificationKey]:
        """key id -> key. A meta key shared by several merchants of one portfolio becomes one
        entry."""
        keys: dict[str, VerificationKey] = {}
        for merchant in self.merchants:
            known = keys.get(merchant.key_id)
            merchant_ids = frozenset({merchant.merchant_id}) | (
                known.merchant_ids if known else frozenset()
            )
            # Only a portfolio (meta) key may act for several merchants, and then for one portfolio.
            if known is not None and (
                known.portfolio_id is None or known.portfolio_id != merchant.portfolio_id
            ):
                raise ValueError(
                    f"key {merchant.key_id!r} is shared by merchants outside one portfolio"
                )
            keys[merchant.key_id] = VerificationKey(
                key_id=merchant.key_id,
                merchant_ids=merchant_ids,
                secret=decode_secret(merchant.shared_secret),
                portfolio_id=merchant.portfolio_id,
            )
            if merchant.certificate_pem:
                cert = x509.load_pem_x509_certificate(merchant.certificate_pem.encode("ascii"))
                public_key = cert.public_key()
                if not isinstance(public_key, RSAPublicKey):
                    raise ValueError(
                        f"the certificate of {merchant.merchant_id!r} must hold an RSA key"
                    )
                kid = str(cert.serial_number)
                keys[kid] = VerificationKey(
                    key_id=kid,
                    merchant_ids=frozenset({merchant.merchant_id}),
                    portfolio_id=merchant.portfolio_id,
                    public_key=public_key,
                )
        return keys


def parse_delays(value: Any) -> tuple[float, ...]:
    """`0.2,0.5,1` or a JSON list -> seconds between attempts (one entry per retry)."""
    if isinstance(value, str):
        parts = [p for p in value.replace(" ", "").split(",") if p]
        return tuple(float(p) for p in parts)
    if isinstance(value, Sequence):
        return tuple(float(v) for v in value)
    raise ValueError("retry delays must be a comma list or a JSON array of seconds")


def load_config_file(path: str | Path) -> dict[str, Any]:
    """The `--merchants FILE` document: a list of merchants, or an object with `merchants`,
    `webhook`…"""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    if isinstance(data, list):
        return {"merchants": data}
    if not isinstance(data, dict) or "merchants" not in data:
        raise ValueError(f"{path}: expected a JSON list of merchants or an object with 'merchants'")
    return data


def config_from_mapping(data: Mapping[str, Any]) -> SimulatorConfig:
    """Build a config from the JSON file layout (used by the CLI and handy in tests)."""
    merchants = tuple(MerchantConfig.from_mapping(m) for m in data["merchants"])
    webhook = WebhookConfig.from_mapping(data["webhook"]) if data.get("webhook") else None
    faults: Any = data.get("faults") or []
    return SimulatorConfig(
        merchants=merchants,
        webhook=webhook,
        host_name=_opt_str(data.get("host_name")),
        clock_tolerance_s=float(data.get("clock_tolerance_s", 300.0)),
        clock_offset_s=float(data.get("clock_offset_s", 0.0)),
        faults=tuple(faults if isinstance(faults, list) else [faults]),
        fault_seed=data.get("fault_seed"),
        hang_s=float(data.get("hang_s", 300.0)),
        payment_link_base=str(data.get("payment_link_base", DEFAULT_PAYMENT_LINK_BASE)),
        first_invoice_number=int(data.get("first_invoice_number", 98753)),
        log_requests=bool(data.get("log_requests", True)),
        mle_certificate_pem=_opt_str(data.get("mle_certificate_pem")),
        mle_private_key_pem=_opt_str(data.get("mle_private_key_pem")),
        mle_required=bool(data.get("mle_required", False)),
    )


def _opt_str(value: Any) -> str | None:
    return None if value is None else str(value)

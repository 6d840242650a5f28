"""Cybersource request authentication: HTTP Signature and JWT, signer and verifier side by side.

A signer and a verifier are two sides of one algorithm, so both live here: the client signs with it
and the simulator verifies with it. The rules follow Cybersource's authentication guide (README:
"Upstream authentication"): the label `request-target` without parentheses, a Digest over the exact
body bytes, `{}` for bodiless action POSTs, HmacSHA256 keyed with the base64-decoded shared secret.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from email.utils import formatdate, parsedate_to_datetime
from typing import Any

import jwt
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey, RSAPublicKey
from cryptography.hazmat.primitives.serialization import pkcs12

METHODS_WITH_BODY = frozenset({"POST", "PUT", "PATCH"})
SIGNED_HEADERS_WITH_BODY = "host date request-target digest v-c-merchant-id"
SIGNED_HEADERS_WITHOUT_BODY = "host date request-target v-c-merchant-id"
JWT_LIFETIME_SECONDS = 120


class SignatureInvalid(Exception):
    """A request's authentication does not verify. `reason` says why, for the verifier's log."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def decode_secret(secret_b64: str) -> bytes:
    """The HMAC key is the decoded bytes of the base64 shared secret, never the text itself."""
    try:
        return base64.b64decode(secret_b64, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("the shared secret is not valid base64") from exc


def body_digest(body: bytes) -> str:
    """Base64 SHA-256 of the exact bytes on the wire (no `SHA-256=` prefix)."""
    return base64.b64encode(hashlib.sha256(body).digest()).decode("ascii")


def http_date(timestamp: float | None = None) -> str:
    """RFC 7231 IMF-fixdate, e.g. `Tue, 25 Nov 2025 10:00:00 GMT`."""
    return formatdate(timestamp, usegmt=True)


def _hmac_b64(key: bytes, message: str) -> str:
    return base64.b64encode(hmac.new(key, message.encode("utf-8"), hashlib.sha256).digest()).decode(
        "ascii"
    )


@dataclass(frozen=True, slots=True)
class SigningCredentials:
    """What a client needs to sign as one merchant. `secret` is the decoded shared secret."""

    merchant_id: str
    key_id: str
    secret: bytes = field(repr=False)
    # With a meta key the signature names the portfolio; the v-c-merchant-id header stays the
    # merchant.
    portfolio_id: str | None = None

    @property
    def signing_identity(self) -> str:
        return self.portfolio_id or self.merchant_id


def signature_string(
    *, host: str, date: str, method: str, target: str, digest: str | None, merchant_id: str
) -> str:
    lines = [f"host: {host}", f"date: {date}", f"request-target: {method.lower()} {target}"]
    if digest is not None:
        lines.append(f"digest: SHA-256={digest}")
    lines.append(f"v-c-merchant-id: {merchant_id}")
    return "\n".join(lines)


def sign_http_signature(
    credentials: SigningCredentials,
    *,
    method: str,
    host: str,
    target: str,
    body: bytes | None,
    date: str | None = None,
) -> dict[str, str]:
    """Headers that authenticate one request. `target` is the path with its query exactly as
    sent."""
    method = method.upper()
    date = date or http_date()
    has_body = method in METHODS_WITH_BODY
    digest = body_digest(body or b"") if has_body else None
    message = signature_string(
        host=host,
        date=date,
        method=method,
        target=target,
        digest=digest,
        merchant_id=credentials.signing_identity,
    )
    signed = SIGNED_HEADERS_WITH_BODY if has_body else SIGNED_HEADERS_WITHOUT_BODY
    headers = {
        "v-c-merchant-id": credentials.merchant_id,
        "Date": date,
        "Host": host,
        "Signature": (
            f'keyid="{credentials.key_id}", algorithm="HmacSHA256", headers="{signed}", '
            f'signature="{_hmac_b64(credentials.secret, message)}"'
        ),
    }
    if digest is not None:
        headers["Digest"] = f"SHA-256={digest}"
    return headers


# --- verifying ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class VerificationKey:
    """A key as the verifier knows it: which merchants it may act for, and how to check it."""

    key_id: str
    merchant_ids: frozenset[str]
    secret: bytes | None = field(default=None, repr=False)
    # Meta key: the signature string carries this portfolio id instead of the merchant id.
    portfolio_id: str | None = None
    # P12 JWT (RS256): the merchant certificate's public key; `key_id` is the certificate serial.
    public_key: RSAPublicKey | None = field(default=None, repr=False)


KeyLookup = Callable[[str], VerificationKey | None]


def parse_signature_header(value: str) -> dict[str, str]:
    params: dict[str, str] = {}
    for part in value.split(","):
        name, sep, raw = part.strip().partition("=")
        if not sep:
            raise SignatureInvalid("malformed Signature header")
        params[name.strip().lower()] = raw.strip().strip('"')
    return params


@functools.lru_cache(maxsize=256)
def _http_date_timestamp(date_header: str) -> float:
    # Signers send one Date per second: a busy verifier sees the same few texts over and over.
    return parsedate_to_datetime(date_header).timestamp()


def _check_date(date_header: str | None, now: float, tolerance_s: float) -> None:
    if not date_header:
        raise SignatureInvalid("missing Date header")
    try:
        sent = _http_date_timestamp(date_header)
    except (TypeError, ValueError) as exc:
        raise SignatureInvalid("unparseable Date header") from exc
    if abs(now - sent) > tolerance_s:
        raise SignatureInvalid(f"Date is {now - sent:+.0f}s away from the server clock")


def _check_merchant(key: VerificationKey, merchant_id: str | None) -> str:
    if not merchant_id:
        raise SignatureInvalid("missing v-c-merchant-id")
    if merchant_id not in key.merchant_ids:
        raise SignatureInvalid("key does not belong to the merchant in v-c-merchant-id")
    return merchant_id


def verify_http_signature(
    *,
    method: str,
    target: str,
    headers: Mapping[str, str],
    body: bytes,
    lookup: KeyLookup,
    expected_host: str | None = None,
    now: float | None = None,
    tolerance_s: float = 300.0,
) -> str:
    """Check one request the way Cybersource does; return the transacting merchant id.

    `headers` must be keyed by lowercase names (HTTP header names are case-insensitive).
    """
    now = time.time() if now is None else now
    raw = headers.get("signature")
    if not raw:
        raise SignatureInvalid("missing Signature header")
    params = parse_signature_header(raw)
    if params.get("algorithm") != "HmacSHA256":
        raise SignatureInvalid("algorithm must be HmacSHA256")
    key = lookup(params.get("keyid", ""))
    if key is None or key.secret is None:
        raise SignatureInvalid("unknown keyid")
    merchant_id = _check_merchant(key, headers.get("v-c-merchant-id"))
    names = params.get("headers", "").split()
    if "(request-target)" in names:
        raise SignatureInvalid(
            "the (request-target) label is no longer accepted; use request-target"
        )
    required = (
        SIGNED_HEADERS_WITH_BODY
        if method.upper() in METHODS_WITH_BODY
        else SIGNED_HEADERS_WITHOUT_BODY
    )
    if set(required.split()) - set(names):
        raise SignatureInvalid(f"signed headers must include: {required}")
    host = headers.get("host", "")
    if expected_host is not None and host.split(":")[0] != expected_host:
        raise SignatureInvalid(f"Host {host!r} is not {expected_host!r}")
    _check_date(headers.get("date"), now, tolerance_s)
    if "digest" in names:
        digest = headers.get("digest", "")
        if not hmac.compare_digest(digest.encode(), f"SHA-256={body_digest(body)}".encode()):
            raise SignatureInvalid("Digest does not match the body")
    lines = []
    for name in names:
        if name == "request-target":
            value = f"{method.lower()} {target}"
        elif name == "v-c-merchant-id":
            value = key.portfolio_id or merchant_id
        elif name in headers:
            value = headers[name]
        else:
            raise SignatureInvalid(f"signed header {name!r} is missing")
        lines.append(f"{name}: {value}")
    expected = _hmac_b64(key.secret, "\n".join(lines))
    if not hmac.compare_digest(expected.encode(), params.get("signature", "").encode()):
        raise SignatureInvalid("signature does not match")
    return merchant_id


# --- JWT (v-c-jwt-version 2) ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class P12Key:
    """The merchant's RS256 key and the serial of its certificate (the JWT `kid`)."""

    private_key: RSAPrivateKey = field(repr=False)
    certificate: x509.Certificate = field(repr=False)

    @property
    def kid(self) -> str:
        return str(self.certificate.serial_number)

    @classmethod
    def load(cls, data: bytes, password: bytes | None) -> P12Key:
        key, cert, _ = pkcs12.load_key_and_certificates(data, password)
        if not isinstance(key, RSAPrivateKey) or cert is None:
            raise ValueError("the P12 file must hold an RSA private key and its certificate")
        return cls(private_key=key, certificate=cert)


def sign_jwt(
    credentials: SigningCredentials,
    *,
    method: str,
    host: str,
    target: str,
    body: bytes | None,
    p12: P12Key | None = None,
    iat: int | None = None,
    jti: str | None = None,
    extra_claims: Mapping[str, Any] | None = None,
) -> dict[str, str]:
    """`Authorization: Bearer` for one request; HS256 with the shared secret, or RS256 with a P12
    key.
    `extra_claims`: e.g. `v-c-response-mle-kid`, asking for an encrypted answer."""
    method = method.upper()
    iat = int(time.time()) if iat is None else iat
    claims: dict[str, Any] = {}
    if method in METHODS_WITH_BODY:
        claims["digest"] = body_digest(body or b"")
        claims["digestAlgorithm"] = "SHA-256"
    claims.update(
        {
            "iat": iat,
            "exp": iat + JWT_LIFETIME_SECONDS,
            "request-method": method,
            "request-host": host,
            "request-resource-path": target,
            "iss": credentials.signing_identity,
            "jti": jti or str(uuid.uuid4()),
            "v-c-jwt-version": "2",
            "v-c-merchant-id": credentials.merchant_id,
        }
    )
    claims.update(extra_claims or {})
    if p12 is not None:
        token = jwt.encode(claims, p12.private_key, algorithm="RS256", headers={"kid": p12.kid})
    else:
        token = jwt.encode(
            claims, credentials.secret, algorithm="HS256", headers={"kid": credentials.key_id}
        )
    return {"Authorization": f"Bearer {token}"}


def verify_jwt(
    *,
    method: str,
    target: str,
    headers: Mapping[str, str],
    body: bytes,
    lookup: KeyLookup,
    expected_host: str | None = None,
    now: float | None = None,
    leeway_s: float = 300.0,
) -> str:
    """Verify a v2 Cybersource JWT (HS256 or RS256); return the transacting merchant id."""
    now = time.time() if now is None else now
    auth = headers.get("authorization", "")
    scheme, _, token = auth.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise SignatureInvalid("missing Bearer token")
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError as exc:
        raise SignatureInvalid("malformed JWT") from exc
    key = lookup(str(header.get("kid", "")))
    if key is None:
        raise SignatureInvalid("unknown kid")
    alg = header.get("alg")
    verifying_key: Any
    if alg == "HS256" and key.secret is not None:
        verifying_key = key.secret
    elif alg == "RS256" and key.public_key is not None:
        verifying_key = key.public_key
    else:
        raise SignatureInvalid(f"algorithm {alg!r} does not fit key {key.key_id!r}")
    try:
        claims = jwt.decode(
            token,
            verifying_key,
            algorithms=[alg],
            leeway=leeway_s,
            options={"verify_exp": False, "verify_iat": False, "require": ["iat"]},
        )
    except jwt.PyJWTError as exc:
        raise SignatureInvalid(f"JWT does not verify: {exc}") from exc
    iat = claims.get("iat")
    if not isinstance(iat, int) or abs(now - iat) > leeway_s:
        raise SignatureInvalid("JWT iat is missing or outside the allowed clock skew")
    if (
        claims.get("request-method") != method.upper()
        or claims.get("request-resource-path") != target
    ):
        raise SignatureInvalid("JWT was issued for another request")
    if expected_host is not None and claims.get("request-host") != expected_host:
        raise SignatureInvalid("JWT was issued for another host")
    if method.upper() in METHODS_WITH_BODY and not hmac.compare_digest(
        str(claims.get("digest", "")).encode(), body_digest(body).encode()
    ):
        raise SignatureInvalid("JWT digest does not match the body")
    merchant_id = _check_merchant(key, str(claims.get("v-c-merchant-id", "")) or None)
    if claims.get("iss") != (key.portfolio_id or merchant_id):
        raise SignatureInvalid("JWT iss is neither the merchant nor its portfolio")
    return merchant_id

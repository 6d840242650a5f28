"""Async client of the Cybersource Invoicing v2 API (one instance per merchant profile).

    clients = CybersourceClients.from_settings(settings)      # one pooled aiohttp session for all
    invoice = await clients.default.create_invoice(InvoiceCreateRequest(...))
    invoice.invoice_information.payment_link, invoice.raw, invoice.correlation_id
    await clients.aclose()

Every call is signed (HTTP Signature or JWT, per profile) over exactly the bytes it sends, logged
once (method, path, status, elapsed ms, correlation id; never a secret or an auth header) and either
returns a typed `UpstreamResult` or raises one of the errors of `app.cybersource.errors` (see
`error_for_response` and `error_for_exception` for the table). The client never retries: a blind
retry of a create could create the invoice twice; the outbox relay owns retries.
"""

from __future__ import annotations

import email.utils
import json
import logging
import re
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from datetime import date, datetime
from decimal import Decimal
from enum import Enum
from typing import Any, Final, TypeVar
from urllib.parse import quote, urlencode

import aiohttp
import structlog
from multidict import CIMultiDictProxy
from pydantic import BaseModel
from yarl import URL

from app.cybersource.errors import (
    AmbiguousError,
    AuthenticationError,
    CybersourceError,
    RejectedError,
    TransientError,
)
from app.cybersource.mle import (
    RESPONSE_FIELD,
    RESPONSE_KID_CLAIM,
    MleError,
    MleKey,
    MleRecipient,
    decrypt,
    encrypted_field,
    wrap_request,
)
from app.cybersource.models import (
    CybersourceErrorBody,
    CybersourceModel,
    EmptyResponse,
    InvoiceCreateRequest,
    InvoiceListResponse,
    InvoiceResponse,
    InvoiceSettingsRequest,
    InvoiceSettingsResponse,
    InvoiceUpdateRequest,
    MerchantDefinedFieldList,
    MerchantDefinedFieldRequest,
    UpstreamResult,
    decimal_text,
)
from app.cybersource.profiles import ClientSettings, MerchantProfile
from app.cybersource.signing import (
    P12Key,
    SigningCredentials,
    decode_secret,
    http_date,
    sign_http_signature,
    sign_jwt,
)
from app.cybersource.transport import SessionProvider, Timeouts, egress_proxy, split_proxy

__all__ = [
    "CONTENT_TYPE",
    "CybersourceClient",
    "CybersourceClients",
    "GeneralSystemFailureError",
    "RequestBody",
    "UnknownMerchantProfileError",
    "encode_body",
    "error_for_exception",
    "error_for_response",
    "parse_retry_after",
    "proxy_from_settings",
]

CONTENT_TYPE: Final = "application/json;charset=utf-8"
ACTION_BODY: Final = b"{}"  # the three action POSTs carry a literal `{}` (AUTH.md: digest over it)
CORRELATION_HEADER: Final = "v-c-correlation-id"
SAFE_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS"})
BODY_METHODS: Final = frozenset({"POST", "PUT", "PATCH"})
MAX_LIST_LIMIT: Final = 1000

RequestBody = BaseModel | Mapping[str, Any]

CallObserver = Callable[[str, str], AbstractContextManager[Mapping[str, str]]]
"""Wraps every call: given the method and the signed target, it yields headers to send along (a
trace context); the caller of the client supplies it (tracing), so this package imports nothing of
the facade."""
"""A request body: one of the request models, or a mapping already in Cybersource's camelCase
shape."""

R = TypeVar("R", bound=UpstreamResult)

_log: structlog.stdlib.BoundLogger = structlog.stdlib.get_logger(__name__)
_stdlib_log = logging.getLogger(__name__)


class GeneralSystemFailureError(TransientError):
    """502 `SERVER_ERROR`/`SYSTEM_ERROR` "General system failure".

    Transient by status, but Cybersource also answers this for account configuration problems (a
    currency the merchant is not set up for, ...), so retry it a few times at most, never forever
    (README, "Notes from public issue threads").
    """

    possibly_account_problem: bool = True


class UnknownMerchantProfileError(KeyError):
    """No merchant profile of that name is configured."""

    def __init__(self, name: str, known: list[str]) -> None:
        super().__init__(name)
        self.name = name
        self.known = known
        configured = ", ".join(known) or "none"
        self.message = f"unknown Cybersource merchant profile {name!r}; configured: {configured}"

    def __str__(self) -> str:
        return self.message


_date_cache: tuple[int, str] = (0, "")


def _current_http_date() -> str:
    """The `Date` header, formatted once per second (formatdate costs more than the HMAC)."""
    global _date_cache
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache = (now, http_date(now))
    return _date_cache[1]


# --- answer decoding -----------------------------------------------------------------------------


def _not_a_number(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def read_answer(payload: bytes | str) -> Any:
    """An answer's JSON: numbers with a fraction or an exponent as `Decimal` (never `float`: 2623.64
    stays exactly that), integers as `int`; `NaN`, `Infinity` and `-Infinity` (not JSON) are refused
    with a ValueError, as is anything else that is not JSON (also nesting too deep to parse)."""
    try:
        return json.loads(payload, parse_float=Decimal, parse_constant=_not_a_number)
    except RecursionError as exc:
        raise ValueError("the answer is nested too deeply") from exc


# --- body encoding -------------------------------------------------------------------------------


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError("an amount must be finite")
        return decimal_text(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", by_alias=True, exclude_none=True)
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, set | frozenset):
        return list(value)
    raise TypeError(f"cannot send a {type(value).__name__} to Cybersource")


def encode_body(body: RequestBody) -> bytes:
    """Serialise a request body ONCE to the UTF-8 JSON bytes that are signed and sent.

    Models write Cybersource's field names and drop unset fields; mappings go out as given, with
    `Decimal` as plain decimal text and dates as ISO text.
    """
    if isinstance(body, CybersourceModel):
        return body.to_wire()
    if isinstance(body, BaseModel):
        return body.model_dump_json(by_alias=True, exclude_none=True).encode("utf-8")
    if isinstance(body, Mapping):
        return json.dumps(
            body, separators=(",", ":"), ensure_ascii=False, allow_nan=False, default=_json_default
        ).encode("utf-8")
    raise TypeError(
        f"a request body must be a mapping or a pydantic model, not {type(body).__name__}"
    )


def _segment(value: str | int, what: str) -> str:
    text = str(value)
    if not text or text in {".", ".."}:
        raise ValueError(f"{what} must not be empty, '.' or '..'")
    return quote(text, safe="")


# --- error classification ------------------------------------------------------------------------


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """`Retry-After` as seconds: delta-seconds or an HTTP-date (RFC 9110 10.2.3)."""
    if not value:
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    if seconds != seconds or seconds in (float("inf"), float("-inf")):  # NaN / inf
        return None
    return max(0.0, seconds)


def _normalise(text: str | None) -> str:
    return re.sub(r"[^A-Z0-9]+", "_", (text or "").upper()).strip("_")


def canonical_reason(reason: str | None, message: str | None) -> str | None:
    """Cybersource's `reason`, spelled one way: `DUPLICATE_RECORD`, `ACTION_NOT_ALLOWED`,
    `NOT_FOUND`, or the reason upper-cased with `_` separators. Without a reason, the message
    decides the first two."""
    text = _normalise(reason)
    if text:
        if "DUPLICATE" in text:
            return "DUPLICATE_RECORD"
        if "NOT_ALLOWED" in text:
            return "ACTION_NOT_ALLOWED"
        if text in {"NOTFOUND", "NOT_FOUND"}:
            return "NOT_FOUND"
        return text
    words = _normalise(message)
    if "DUPLICATE" in words:
        return "DUPLICATE_RECORD"
    if "NOT_ALLOWED" in words:
        return "ACTION_NOT_ALLOWED"
    return None


def _raw_details(body: Any) -> list[dict[str, Any]]:
    if not isinstance(body, dict):
        return []
    for layer in (body.get("responseData"), body.get("errorInformation"), body):
        if isinstance(layer, dict) and isinstance(layer.get("details"), list):
            details = [item for item in layer["details"] if isinstance(item, dict)]
            if details:
                return details
    return []


def _error_body(body: Any) -> CybersourceErrorBody | None:
    if not isinstance(body, dict):
        return None
    try:
        return CybersourceErrorBody.model_validate(body)
    except ValueError:
        return None


def _is_general_system_failure(parsed: CybersourceErrorBody | None) -> bool:
    if parsed is None:
        return False
    reason = _normalise(parsed.effective_reason)
    message = (parsed.effective_message or "").lower()
    return reason in {"SERVER_ERROR", "SYSTEM_ERROR"} or "general system failure" in message


# Below this a refusal is not put down to the clocks (Cybersource allows about five minutes).
CLOCK_SKEW_NOTICE_SECONDS = 60.0


def clock_skew(date_header: str | None, now: float | None = None) -> float | None:
    """Seconds the answer's `Date` is ahead of this machine (negative: behind), when that is
    notable."""
    if not date_header:
        return None
    try:
        theirs = email.utils.parsedate_to_datetime(date_header).timestamp()
    except (TypeError, ValueError, IndexError):
        return None
    skew = theirs - (time.time() if now is None else now)
    return skew if abs(skew) >= CLOCK_SKEW_NOTICE_SECONDS else None


def error_for_response(
    *,
    method: str,
    status: int,
    body: Any,
    headers: Mapping[str, str] | None = None,
    correlation_id: str | None = None,
    now: float | None = None,
) -> CybersourceError:
    """The error for a non-2xx answer. `body` is the parsed JSON (or the text when it is not JSON).

    | status                      | error                                                          |
    |-----------------------------|----------------------------------------------------------------|
    | 401, 403                    | AuthenticationError (the body is not parsed strictly)          |
    | 407                         | AuthenticationError (the egress proxy refused its credentials) |
    | 429                         | TransientError, retry_after from Retry-After (seconds or date) |
    | 408, 425                    | TransientError                                                 |
    | 502 "General system failure"| GeneralSystemFailureError (a TransientError, flagged)          |
    | other 5xx                   | TransientError (retry_after when Retry-After is present)       |
    | other 4xx (400/404/409/412/422...) | RejectedError(reason, details)                          |
    | anything else (3xx...)      | RejectedError (redirects are not followed)                     |
    """
    headers = headers or {}
    parsed = _error_body(body)
    reason = canonical_reason(parsed.effective_reason, parsed.effective_message) if parsed else None
    text = parsed.effective_message if parsed else None
    if text is None and isinstance(body, str) and body.strip():
        text = body.strip()[:200]
    summary = (
        f"Cybersource answered {method} with {status}"
        + (f" {reason}" if reason else "")
        + (f": {text}" if text else "")
    )
    common: dict[str, Any] = {"status": status, "correlation_id": correlation_id, "body": body}
    retry_after = parse_retry_after(headers.get("Retry-After"), now=now)
    if status == 407:
        return AuthenticationError(
            f"the egress proxy refused {method} with 407 Proxy Authentication Required: check the "
            "credentials in CYBERSOURCE_PROXY_URL (or HTTPS_PROXY)",
            **common,
        )
    if status in (401, 403):
        skew = clock_skew(headers.get("Date"), now)
        if skew is not None:
            ahead = "ahead of" if skew > 0 else "behind"
            summary += (
                f" (clock skew: Cybersource's Date header is {abs(skew):.0f} s {ahead} this "
                "machine's clock; a request whose Date is more than about 5 minutes off is "
                "refused: synchronise the clock, e.g. with NTP)"
            )
        return AuthenticationError(summary, clock_skew_seconds=skew, **common)
    if status in (408, 425, 429):
        return TransientError(summary, retry_after=retry_after, **common)
    if status >= 500:
        if status == 502 and _is_general_system_failure(parsed):
            return GeneralSystemFailureError(
                summary + " (can also mean an account configuration problem)",
                retry_after=retry_after,
                **common,
            )
        return TransientError(summary, retry_after=retry_after, **common)
    if 300 <= status < 400:
        location = headers.get("Location")
        summary += (
            f" (redirect to {location!r} not followed: check the base URL)" if location else ""
        )
    return RejectedError(summary, reason=reason, details=_raw_details(body), **common)


def error_for_exception(exc: BaseException, *, method: str) -> CybersourceError:
    """The error for a call that got no HTTP answer.

    Failing to connect (refused, DNS, TLS, connect timeout, no pooled connection in time) means the
    request never left: TransientError. Anything after that (read timeout, server disconnected,
    connection reset, broken payload, total timeout) may have been applied upstream: AmbiguousError
    for POST/PUT/DELETE, but TransientError for GET, which is safe to repeat.
    """
    kind = type(exc).__name__
    if isinstance(exc, aiohttp.ClientConnectorError | aiohttp.ConnectionTimeoutError):
        return TransientError(
            f"could not connect to Cybersource ({kind}); the request was not sent"
        )
    if method.upper() in SAFE_METHODS:
        return TransientError(
            f"no complete answer from Cybersource ({kind}); safe to repeat a {method}"
        )
    return AmbiguousError(
        f"no complete answer from Cybersource ({kind}) after sending {method}: "
        "it may or may not have been applied"
    )


# --- the client ----------------------------------------------------------------------------------


def _load_p12(profile: MerchantProfile) -> P12Key:
    if profile.p12_path is None:
        raise ValueError(f"merchant profile {profile.name!r} has no p12_path")
    password = (
        profile.p12_password.get_secret_value().encode("utf-8") if profile.p12_password else None
    )
    return P12Key.load(profile.p12_path.read_bytes(), password)


class CybersourceClient:
    """The Invoicing v2 API as one merchant profile sees it. Safe to share between tasks."""

    def __init__(
        self,
        profile: MerchantProfile,
        *,
        session: SessionProvider | aiohttp.ClientSession | None = None,
        timeouts: Timeouts | None = None,
        max_connections: int = 100,
        p12_key: P12Key | None = None,
        call_observer: CallObserver | None = None,
        proxy: str | None = None,
    ) -> None:
        self._observe = call_observer
        # Where the calls go through (README "Egress"): a URL without credentials, and the
        # credentials.
        self._proxy, self._proxy_headers = split_proxy(proxy)
        # Message-level encryption (README "Authentication"): whom requests are encrypted to, and
        # the key answers are encrypted to.
        self._mle_recipient: MleRecipient | None = None
        self._mle_key: MleKey | None = None
        if profile.mle_requests and profile.mle_certificate:
            self._mle_recipient = MleRecipient.from_certificate_pem(profile.mle_certificate)
        if profile.mle_responses and profile.mle_response_private_key:
            self._mle_key = MleKey.from_private_pem(
                str(profile.mle_response_key_id),
                profile.mle_response_private_key.get_secret_value(),
            )
        base = URL(profile.resolved_base_url)
        if base.scheme not in {"http", "https"} or not base.host:
            raise ValueError(
                f"merchant profile {profile.name!r}: base URL must be http(s)://host[:port][/path]"
            )
        self._profile = profile
        self._origin = str(base.origin())
        self._prefix = base.raw_path.rstrip("/")
        self._host: str = base.host
        secret = (
            decode_secret(profile.shared_secret.get_secret_value())
            if profile.shared_secret
            else b""
        )
        self._credentials = SigningCredentials(
            merchant_id=profile.merchant_id,
            key_id=profile.key_id,
            secret=secret,
            portfolio_id=profile.portfolio_id,
        )
        self._jwt = profile.auth == "jwt"
        self._p12: P12Key | None = None
        if self._jwt and profile.jwt_key_type == "p12":
            self._p12 = p12_key or _load_p12(profile)  # loaded once, not per call
        if isinstance(session, SessionProvider):
            self._sessions, self._owns_sessions = session, False
        else:
            self._sessions = SessionProvider(max_connections=max_connections, session=session)
            self._owns_sessions = True
        self._timeouts = timeouts or Timeouts()
        self._client_timeout = self._timeouts.client_timeout()

    @classmethod
    def from_settings(
        cls,
        settings: ClientSettings,
        profile: str = "default",
        *,
        session: SessionProvider | aiohttp.ClientSession | None = None,
    ) -> CybersourceClient:
        profiles = settings.merchant_profiles
        if profile not in profiles:
            raise UnknownMerchantProfileError(profile, sorted(profiles))
        return cls(
            profiles[profile],
            session=session,
            timeouts=Timeouts.from_settings(settings),
            max_connections=settings.cybersource_max_connections,
            proxy=proxy_from_settings(settings, profiles[profile]),
        )

    # -- identity --

    @property
    def profile(self) -> MerchantProfile:
        return self._profile

    @property
    def name(self) -> str:
        return self._profile.name

    @property
    def merchant_id(self) -> str:
        return self._profile.merchant_id

    @property
    def base_url(self) -> str:
        return self._origin + self._prefix

    @property
    def host(self) -> str:
        """The bare host name sent (and signed) as `Host`."""
        return self._host

    @property
    def timeouts(self) -> Timeouts:
        return self._timeouts

    # -- invoices --

    async def create_invoice(self, body: InvoiceCreateRequest | RequestBody) -> InvoiceResponse:
        """POST /invoicing/v2/invoices. 201; 202 (`accepted_without_email`) if stored but not
        e-mailed."""
        return await self._call(
            "POST", "/invoicing/v2/invoices", InvoiceResponse, body=encode_body(body), mle=True
        )

    async def list_invoices(
        self, *, offset: int, limit: int, status: str | None = None
    ) -> InvoiceListResponse:
        """GET /invoicing/v2/invoices?offset=&limit=[&status=] (query in that order, signed as
        sent)."""
        if offset < 0 or not 1 <= limit <= MAX_LIST_LIMIT:
            raise ValueError(f"offset must be >= 0 and limit between 1 and {MAX_LIST_LIMIT}")
        query: list[tuple[str, str | int]] = [("offset", offset), ("limit", limit)]
        if status is not None:
            query.append(("status", status))
        return await self._call(
            "GET", "/invoicing/v2/invoices", InvoiceListResponse, query=query, mle=True
        )

    async def get_invoice(self, invoice_id: str) -> InvoiceResponse:
        return await self._call("GET", self._invoice_path(invoice_id), InvoiceResponse, mle=True)

    async def update_invoice(
        self, invoice_id: str, body: InvoiceUpdateRequest | RequestBody
    ) -> InvoiceResponse:
        """PUT /invoicing/v2/invoices/{id}: full replacement of the content."""
        return await self._call(
            "PUT", self._invoice_path(invoice_id), InvoiceResponse, body=encode_body(body), mle=True
        )

    async def send_invoice(self, invoice_id: str) -> InvoiceResponse:
        """POST .../delivery with body `{}`."""
        return await self._call(
            "POST",
            self._invoice_path(invoice_id, "delivery"),
            InvoiceResponse,
            body=ACTION_BODY,
            mle=True,
        )

    async def cancel_invoice(self, invoice_id: str) -> InvoiceResponse:
        """POST .../cancelation with body `{}`."""
        return await self._call(
            "POST",
            self._invoice_path(invoice_id, "cancelation"),
            InvoiceResponse,
            body=ACTION_BODY,
            mle=True,
        )

    async def publish_invoice(self, invoice_id: str) -> InvoiceResponse:
        """POST .../publication with body `{}` (DRAFT -> CREATED)."""
        return await self._call(
            "POST", self._invoice_path(invoice_id, "publication"), InvoiceResponse, body=ACTION_BODY
        )

    # -- settings --

    async def get_invoice_settings(
        self, product_type: str | None = None
    ) -> InvoiceSettingsResponse:
        query = [("productType", product_type)] if product_type is not None else None
        return await self._call(
            "GET", "/invoicing/v2/invoiceSettings", InvoiceSettingsResponse, query=query, mle=True
        )

    async def update_invoice_settings(
        self, body: InvoiceSettingsRequest | RequestBody, product_type: str | None = None
    ) -> InvoiceSettingsResponse:
        query = [("productType", product_type)] if product_type is not None else None
        return await self._call(
            "PUT",
            "/invoicing/v2/invoiceSettings",
            InvoiceSettingsResponse,
            query=query,
            body=encode_body(body),
            mle=True,
        )

    # -- merchant-defined fields --

    async def list_merchant_defined_fields(self, reference_type: str) -> MerchantDefinedFieldList:
        return await self._call("GET", self._mdf_path(reference_type), MerchantDefinedFieldList)

    async def create_merchant_defined_field(
        self, reference_type: str, body: MerchantDefinedFieldRequest | RequestBody
    ) -> MerchantDefinedFieldList:
        """POST .../merchantDefinedFields; 201 answers with the whole list of definitions."""
        return await self._call(
            "POST", self._mdf_path(reference_type), MerchantDefinedFieldList, body=encode_body(body)
        )

    async def update_merchant_defined_field(
        self,
        reference_type: str,
        field_id: int | str,
        body: MerchantDefinedFieldRequest | RequestBody,
    ) -> MerchantDefinedFieldList:
        return await self._call(
            "PUT",
            self._mdf_path(reference_type, field_id),
            MerchantDefinedFieldList,
            body=encode_body(body),
        )

    async def delete_merchant_defined_field(
        self, reference_type: str, field_id: int | str
    ) -> EmptyResponse:
        """DELETE .../merchantDefinedFields/{id}; 204 without a body."""
        return await self._call("DELETE", self._mdf_path(reference_type, field_id), EmptyResponse)

    # -- any other Cybersource API (the webhook management calls of `webhook_admin.py`) --

    async def call(
        self,
        method: str,
        path: str,
        result_type: type[R],
        *,
        query: Sequence[tuple[str, str | int]] | None = None,
        body: RequestBody | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> R:
        """A signed call to `path` (already percent-encoded), with extra unsigned `headers`."""
        encoded = None if body is None else encode_body(body)
        return await self._call(method, path, result_type, query=query, body=encoded, extra=headers)

    # -- lifecycle --

    async def aclose(self) -> None:
        """Close the session if this client made it (a registry's clients leave that to the
        registry)."""
        if self._owns_sessions:
            await self._sessions.aclose()

    async def __aenter__(self) -> CybersourceClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()

    # -- internals --

    @staticmethod
    def _invoice_path(invoice_id: str, action: str | None = None) -> str:
        path = "/invoicing/v2/invoices/" + _segment(invoice_id, "invoice_id")
        return f"{path}/{action}" if action else path

    @staticmethod
    def _mdf_path(reference_type: str, field_id: int | str | None = None) -> str:
        path = f"/invoicing/v2/{_segment(reference_type, 'reference_type')}/merchantDefinedFields"
        return path if field_id is None else f"{path}/{_segment(field_id, 'field_id')}"

    def _auth_headers(
        self, method: str, target: str, body: bytes | None, *, mle: bool = False
    ) -> dict[str, str]:
        if self._jwt:
            claims = None
            if mle and self._mle_key is not None:  # asks Cybersource to encrypt its answer
                claims = {RESPONSE_KID_CLAIM: self._mle_key.kid}
            headers = sign_jwt(
                self._credentials,
                method=method,
                host=self._host,
                target=target,
                body=body,
                p12=self._p12,
                extra_claims=claims,
            )
            headers["Host"] = self._host
            return headers
        return sign_http_signature(
            self._credentials,
            method=method,
            host=self._host,
            target=target,
            body=body,
            date=_current_http_date(),
        )

    async def _call(
        self,
        method: str,
        path: str,
        result_type: type[R],
        *,
        query: Sequence[tuple[str, str | int]] | None = None,
        body: bytes | None = None,
        extra: Mapping[str, str] | None = None,
        mle: bool = False,
    ) -> R:
        """`mle`: the operation is one Cybersource allows MLE for (the invoice calls but publish,
        and the settings); the profile's MLE setting decides whether it is used."""
        target = self._prefix + path
        if query:
            target += "?" + urlencode(query)
        if body is None and method in BODY_METHODS:
            body = ACTION_BODY
        if mle and body is not None and self._mle_recipient is not None:
            body = wrap_request(body, self._mle_recipient)  # signed as sent: the wrapped bytes
        observed = nullcontext({}) if self._observe is None else self._observe(method, target)
        with observed as extra_headers:
            headers = {**(extra or {}), **extra_headers}
            return await self._send(method, target, result_type, body, headers, mle=mle)

    async def _send(
        self,
        method: str,
        target: str,
        result_type: type[R],
        body: bytes | None,
        extra_headers: Mapping[str, str],
        *,
        mle: bool = False,
    ) -> R:
        headers = self._auth_headers(method, target, body, mle=mle)
        headers.update(extra_headers)  # not signed: the signature covers a fixed list of headers
        if self._proxy_headers and self._origin.startswith("http:"):
            # Plain HTTP goes to the proxy as an absolute-form request (HTTPS: in the CONNECT).
            headers.update(self._proxy_headers)
        if body is not None:
            headers["Content-Type"] = CONTENT_TYPE
        url = URL(self._origin + target, encoded=True)  # sent exactly as signed: no re-quoting
        started = time.perf_counter()
        status: int | None = None
        correlation_id: str | None = None
        try:
            session = self._sessions.get()
            async with session.request(
                method,
                url,
                data=body,
                headers=headers,
                allow_redirects=False,
                timeout=self._client_timeout,
                proxy=self._proxy,
                proxy_headers=self._proxy_headers,
            ) as response:
                status = response.status
                response_headers: CIMultiDictProxy[str] = response.headers
                correlation_id = response_headers.get(CORRELATION_HEADER)
                payload = await response.read()
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            error = error_for_exception(exc, method=method)
            error.status, error.correlation_id = status, correlation_id
            self._log_call(method, target, status, started, correlation_id, error)
            raise error from exc

        if 200 <= status < 300:
            try:
                result = self._result(result_type, status, self._decrypted(payload), correlation_id)
            except ValueError as exc:  # not JSON, or not the shape of any answer we know
                error = (TransientError if method in SAFE_METHODS else AmbiguousError)(
                    f"Cybersource answered {method} with {status} but an unreadable body "
                    f"({type(exc).__name__})",
                    status=status,
                    correlation_id=correlation_id,
                    body=_text(payload),
                )
                self._log_call(method, target, status, started, correlation_id, error)
                raise error from exc
            self._log_call(method, target, status, started, correlation_id, None)
            return result

        error = error_for_response(
            method=method,
            status=status,
            body=_parse_error_payload(self._decrypted(payload, strict=False)),
            headers=response_headers,
            correlation_id=correlation_id,
        )
        self._log_call(method, target, status, started, correlation_id, error)
        raise error

    def _decrypted(self, payload: bytes, *, strict: bool = True) -> bytes:
        """An answer encrypted to our MLE key (`{"encryptedResponse": "<JWE>"}`), decrypted; one
        that does not decrypt is a ValueError (`strict`) or left as it is (an error answer)."""
        if self._mle_key is None or b'"' + RESPONSE_FIELD.encode() + b'"' not in payload:
            return payload
        try:
            token = encrypted_field(json.loads(payload), RESPONSE_FIELD)
        except ValueError:
            return payload
        if token is None:
            return payload
        try:
            return decrypt(token, self._mle_key)
        except MleError as exc:
            if not strict:
                return payload
            raise ValueError(f"an encrypted answer that does not decrypt: {exc}") from exc

    @staticmethod
    def _result(result_type: type[R], status: int, payload: bytes, correlation_id: str | None) -> R:
        if not payload.strip():
            if status != 204 and result_type is not EmptyResponse:
                raise ValueError("empty body")
            return result_type.from_upstream(
                None, correlation_id=correlation_id, http_status=status
            )
        return result_type.from_upstream(
            read_answer(payload), correlation_id=correlation_id, http_status=status
        )

    def _log_call(
        self,
        method: str,
        target: str,
        status: int | None,
        started: float,
        correlation_id: str | None,
        error: CybersourceError | None,
    ) -> None:
        level = logging.INFO if error is None else logging.WARNING
        if not _stdlib_log.isEnabledFor(level):
            return
        fields: dict[str, Any] = {
            "profile": self._profile.name,
            "merchant_id": self._profile.merchant_id,
            "method": method,
            "path": target,
            "status": status,
            "elapsed_ms": round((time.perf_counter() - started) * 1000, 1),
            "correlation_id": correlation_id,
        }
        if error is None:
            _log.info("cybersource.call", **fields)
        else:
            _log.warning(
                "cybersource.call",
                error=type(error).__name__,
                reason=getattr(error, "reason", None),
                **fields,
            )


def _text(payload: bytes) -> str:
    return payload.decode("utf-8", errors="replace")


def _parse_error_payload(payload: bytes) -> Any:
    """The error body as JSON when it is JSON, else as text (401s are often neither)."""
    if not payload.strip():
        return None
    try:
        return read_answer(payload)
    except ValueError:
        return _text(payload)


# --- the registry --------------------------------------------------------------------------------


def proxy_from_settings(settings: ClientSettings, profile: MerchantProfile) -> str | None:
    """The egress proxy of `profile`'s calls: CYBERSOURCE_PROXY_URL, else the *_PROXY variables."""
    explicit = settings.cybersource_proxy_url
    return egress_proxy(
        profile.resolved_base_url,
        None if explicit is None else explicit.get_secret_value(),
        from_env=settings.cybersource_proxy_from_env,
    )


class CybersourceClients:
    """One client per configured merchant profile, all on one pooled session."""

    def __init__(self, clients: Mapping[str, CybersourceClient], sessions: SessionProvider) -> None:
        if "default" not in clients:
            raise ValueError("the registry needs a 'default' merchant profile")
        self._clients = dict(clients)
        self._sessions = sessions

    @classmethod
    def from_settings(
        cls,
        settings: ClientSettings,
        *,
        session: aiohttp.ClientSession | None = None,
        call_observer: CallObserver | None = None,
    ) -> CybersourceClients:
        sessions = SessionProvider(
            max_connections=settings.cybersource_max_connections, session=session
        )
        timeouts = Timeouts.from_settings(settings)
        clients = {
            name: CybersourceClient(
                profile,
                session=sessions,
                timeouts=timeouts,
                call_observer=call_observer,
                proxy=proxy_from_settings(settings, profile),
            )
            for name, profile in settings.merchant_profiles.items()
        }
        return cls(clients, sessions)

    def get(self, name: str) -> CybersourceClient:
        """The client of profile `name`; UnknownMerchantProfileError (a KeyError) if there is
        none."""
        try:
            return self._clients[name]
        except KeyError:
            raise UnknownMerchantProfileError(name, sorted(self._clients)) from None

    def __getitem__(self, name: str) -> CybersourceClient:
        return self.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self._clients

    def __iter__(self) -> Iterator[str]:
        return iter(self._clients)

    def __len__(self) -> int:
        return len(self._clients)

    @property
    def names(self) -> list[str]:
        return list(self._clients)

    @property
    def default(self) -> CybersourceClient:
        return self._clients["default"]

    @property
    def sessions(self) -> SessionProvider:
        return self._sessions

    async def aclose(self) -> None:
        await self._sessions.aclose()

    async def __aenter__(self) -> CybersourceClients:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()

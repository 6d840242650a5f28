"""Request authentication exactly as Cybersource checks it, through the project's own verifier.

A `Bearer` Authorization header means JWT (v2, HS256 with the shared secret, or RS256 when the
merchant config carries a certificate); otherwise the HTTP Signature headers are checked. ASGI
servers hand header names over in lowercase, which is what `verify_http_signature` expects, so names
are case-insensitive.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from app.cybersource.signing import (
    SignatureInvalid,
    VerificationKey,
    verify_http_signature,
    verify_jwt,
)


class Authenticator:
    def __init__(
        self,
        keys: dict[str, VerificationKey],
        *,
        expected_host: str | None,
        tolerance_s: float,
        clock_offset_s: float = 0.0,
    ) -> None:
        self._keys = keys
        self._expected_host = expected_host
        self._tolerance_s = tolerance_s
        self._clock_offset_s = clock_offset_s

    def lookup(self, key_id: str) -> VerificationKey | None:
        return self._keys.get(key_id)

    def authenticate(
        self, method: str, target: str, raw_headers: Iterable[tuple[bytes, bytes]], body: bytes
    ) -> str:
        """Return the merchant id the request acts for, or raise SignatureInvalid with the
        reason."""
        headers: dict[str, str] = {}
        for name, value in raw_headers:
            key = name.decode("latin-1").lower()
            if key in headers:
                # A repeated signed header is ambiguous; Cybersource's gateway would not guess
                # either.
                if key in {
                    "signature",
                    "digest",
                    "date",
                    "host",
                    "v-c-merchant-id",
                    "authorization",
                }:
                    raise SignatureInvalid(f"header {key!r} sent more than once")
                continue
            headers[key] = value.decode("latin-1")
        now = time.time() + self._clock_offset_s
        if headers.get("authorization", "").lower().startswith("bearer "):
            return verify_jwt(
                method=method,
                target=target,
                headers=headers,
                body=body,
                lookup=self.lookup,
                expected_host=self._expected_host,
                now=now,
                leeway_s=self._tolerance_s,
            )
        if "signature" not in headers:
            raise SignatureInvalid("no Signature header and no Bearer token")
        return verify_http_signature(
            method=method,
            target=target,
            headers=headers,
            body=body,
            lookup=self.lookup,
            expected_host=self._expected_host,
            now=now,
            tolerance_s=self._tolerance_s,
        )


def request_target(raw_path: bytes | None, path: str, query_string: bytes) -> str:
    """Path and query exactly as sent on the request line: the text the client signed."""
    target = raw_path.decode("latin-1") if raw_path else path
    if query_string:
        target = f"{target}?{query_string.decode('latin-1')}"
    return target

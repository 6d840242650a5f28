"""Workload identity: callers that present a JWT (a Kubernetes projected service-account token, or
any OIDC issuer's token) instead of an API key.

A token is accepted when its issuer is one of `OIDC_PROVIDERS`, its signature verifies against a key
of that issuer's JWKS (asymmetric algorithms only: `none` and HMAC are refused), its audience is the
provider's, it has not expired and is not used before `nbf`, and its `sub` is one of the provider's
callers. The JWKS is fetched on first use, cached for `OIDC_JWKS_CACHE_SECONDS`, and fetched again
when a token names an unknown `kid` (a key rotation), at most once per
`OIDC_JWKS_MIN_REFRESH_SECONDS` per issuer, so a flood of made-up `kid`s cannot turn into a flood of
fetches. PyJWT does the JOSE work.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import jwt

from app.auth.principal import Caller
from app.observability.logging import get_logger
from app.settings import OidcProvider, Settings

log = get_logger(__name__)

# Asymmetric only: a JWKS holds public keys, and an HMAC "key" taken from one would be public.
ALGORITHMS = (
    "RS256",
    "RS384",
    "RS512",
    "PS256",
    "PS384",
    "PS512",
    "ES256",
    "ES384",
    "ES512",
    "EdDSA",
)
JWKS_MAX_BYTES = 256 * 1024
JWKS_FETCH_TIMEOUT_SECONDS = 5.0

JwksFetcher = Callable[[str], Awaitable[dict[str, Any]]]


class TokenRefused(Exception):
    """The token is not acceptable; the message says why (never the token)."""


def looks_like_jwt(credential: str) -> bool:
    return credential.count(".") == 2 and credential.startswith("eyJ")


@dataclass
class _Keys:
    by_kid: dict[str | None, jwt.PyJWK] = field(default_factory=dict)
    fetched_at: float = float("-inf")
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class TokenVerifier:
    """Verifies JWTs against the configured issuers and maps their subject to a caller."""

    def __init__(
        self,
        providers: list[OidcProvider],
        *,
        cache_seconds: float = 300.0,
        min_refresh_seconds: float = 30.0,
        leeway_seconds: float = 30.0,
        fetch: JwksFetcher | None = None,
    ) -> None:
        self.providers = {provider.issuer: provider for provider in providers}
        self.cache_seconds = cache_seconds
        self.min_refresh_seconds = min_refresh_seconds
        self.leeway_seconds = leeway_seconds
        self._fetch = fetch or self._fetch_over_http
        self._keys = {issuer: _Keys() for issuer in self.providers}
        self._session: aiohttp.ClientSession | None = None
        self.fetches = 0

    @classmethod
    def from_settings(cls, settings: Settings) -> TokenVerifier:
        return cls(
            settings.oidc_providers,
            cache_seconds=settings.oidc_jwks_cache_seconds,
            min_refresh_seconds=settings.oidc_jwks_min_refresh_seconds,
            leeway_seconds=settings.oidc_leeway_seconds,
        )

    @property
    def enabled(self) -> bool:
        return bool(self.providers)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def caller(self, token: str) -> Caller:
        """The caller the token proves, or TokenRefused."""
        try:
            header = jwt.get_unverified_header(token)
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError as exc:
            raise TokenRefused("the token is not a readable JWT") from exc
        algorithm = header.get("alg")
        if algorithm not in ALGORITHMS:
            raise TokenRefused(f"the token's algorithm {algorithm!r} is not accepted")
        provider = self.providers.get(str(unverified.get("iss", "")))
        if provider is None:
            raise TokenRefused("the token's issuer is not configured")
        key = await self._key(provider, header.get("kid"))
        try:
            claims = jwt.decode(
                token,
                key=key,
                algorithms=[algorithm],
                audience=provider.audience,
                issuer=provider.issuer,
                leeway=self.leeway_seconds,
                options={"require": ["exp", "iss", "aud", "sub"]},
            )
        except jwt.ExpiredSignatureError as exc:
            raise TokenRefused("the token has expired") from exc
        except jwt.ImmatureSignatureError as exc:
            raise TokenRefused("the token is not valid yet (nbf)") from exc
        except jwt.InvalidAudienceError as exc:
            raise TokenRefused("the token is for another audience") from exc
        except jwt.PyJWTError as exc:
            raise TokenRefused(f"the token does not verify ({type(exc).__name__})") from exc
        subject = str(claims["sub"])
        for known in provider.callers:
            if known.subject == subject:
                return Caller(known.client, frozenset(known.scopes), frozenset(known.profiles))
        raise TokenRefused("the token's subject is not a configured caller")

    async def _key(self, provider: OidcProvider, kid: Any) -> jwt.PyJWK:
        keys = self._keys[provider.issuer]
        kid = None if kid is None else str(kid)
        now = time.monotonic()
        stale = now - keys.fetched_at > self.cache_seconds
        unknown = self._find(keys, kid) is None
        if stale or (unknown and now - keys.fetched_at >= self.min_refresh_seconds):
            async with keys.lock:  # concurrent requests share one fetch
                if keys.fetched_at <= now:
                    await self._refresh(provider, keys)
        found = self._find(keys, kid)
        if found is None:
            raise TokenRefused("the token's key (kid) is not in the issuer's JWKS")
        return found

    @staticmethod
    def _find(keys: _Keys, kid: str | None) -> jwt.PyJWK | None:
        if kid is None and len(keys.by_kid) == 1:
            return next(iter(keys.by_kid.values()))
        return keys.by_kid.get(kid)

    async def _refresh(self, provider: OidcProvider, keys: _Keys) -> None:
        self.fetches += 1
        try:
            document = await self._fetch(provider.jwks_url)
        except Exception as exc:  # the issuer away: keep the keys we have, refuse unknown ones
            log.warning("oidc.jwks_unavailable", issuer=provider.issuer, error=type(exc).__name__)
            keys.fetched_at = time.monotonic()
            return
        fresh: dict[str | None, jwt.PyJWK] = {}
        for entry in document.get("keys", [])[:100]:
            if not isinstance(entry, dict) or entry.get("use", "sig") != "sig":
                continue
            try:
                fresh[entry.get("kid")] = jwt.PyJWK(entry)
            except jwt.PyJWTError:
                continue  # a key type we cannot use; the others still count
        keys.by_kid = fresh
        keys.fetched_at = time.monotonic()
        log.info("oidc.jwks_fetched", issuer=provider.issuer, keys=len(fresh))

    async def _fetch_over_http(self, url: str) -> dict[str, Any]:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=JWKS_FETCH_TIMEOUT_SECONDS)
            )
        async with self._session.get(url, allow_redirects=False) as response:
            response.raise_for_status()
            body = await response.content.read(JWKS_MAX_BYTES + 1)
        if len(body) > JWKS_MAX_BYTES:
            raise ValueError("the JWKS is too large")
        document = json.loads(body)
        if not isinstance(document, dict):
            raise ValueError("the JWKS is not a JSON object")
        return document

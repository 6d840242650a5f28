"""Workload identity: callers present a JWT (a Kubernetes projected service-account token, an OIDC
issuer's token) instead of an API key.

The tests are their own issuer: they make RSA keys, serve the JWKS over local HTTP, and sign tokens;
the facade fetches, caches and (on an unknown `kid`, bounded) refreshes that JWKS.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from app.auth.tokens import TokenRefused, TokenVerifier
from app.main import create_app
from app.settings import OidcProvider
from tests.integration.conftest import facade_settings, invoice_body, key
from tests.support.servers import serve

ISSUER = "https://kubernetes.default.svc.cluster.local"
AUDIENCE = "invoicing-gateway"
BILLING = "system:serviceaccount:billing:billing-api"
SUPPORT = "system:serviceaccount:support:console"


class Issuer:
    """An OIDC issuer of our own: RSA keys by kid, a JWKS document, and fetch counting."""

    def __init__(self) -> None:
        self.keys: dict[str, rsa.RSAPrivateKey] = {}
        self.published: list[str] = []
        self.fetches = 0
        self.app = Starlette(routes=[Route("/openid/v1/jwks", self.jwks)])

    def new_key(self, publish: bool = True) -> str:
        kid = uuid.uuid4().hex[:12]
        self.keys[kid] = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        if publish:
            self.published.append(kid)
        return kid

    async def jwks(self, request: Request) -> JSONResponse:
        self.fetches += 1
        keys = []
        for kid in self.published:
            jwk: dict[str, Any] = json.loads(
                jwt.algorithms.RSAAlgorithm.to_jwk(self.keys[kid].public_key())
            )
            keys.append({**jwk, "kid": kid, "use": "sig", "alg": "RS256"})
        return JSONResponse({"keys": keys})

    def token(self, kid: str, subject: str = BILLING, **claims: Any) -> str:
        now = int(time.time())
        body = {"iss": ISSUER, "aud": AUDIENCE, "sub": subject, "iat": now, "exp": now + 600}
        body.update(claims)
        return jwt.encode(body, self.keys[kid], algorithm="RS256", headers={"kid": kid})


def unsigned_token(subject: str = BILLING) -> str:
    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    now = int(time.time())
    claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": subject, "exp": now + 600}
    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}."


@pytest.fixture(scope="module")
def issuer() -> Iterator[tuple[Issuer, str]]:
    own = Issuer()
    with serve(own.app, ready_path="/openid/v1/jwks") as url:
        yield own, f"{url}/openid/v1/jwks"


def providers(jwks_url: str) -> list[dict[str, Any]]:
    return [
        {
            "issuer": ISSUER,
            "audience": AUDIENCE,
            "jwks_url": jwks_url,
            "callers": [
                {
                    "subject": BILLING,
                    "client": "billing",
                    "scopes": ["invoices:read", "invoices:write"],
                    "profiles": ["default"],
                },
                {"subject": SUPPORT, "client": "support", "scopes": ["invoices:read"]},
            ],
        }
    ]


@pytest.fixture(scope="module")
def facade(issuer, database_url: str, simulator_url: str) -> Iterator[str]:
    _, jwks_url = issuer
    settings = facade_settings(
        database_url,
        simulator_url,
        oidc_providers=json.dumps(providers(jwks_url)),
        oidc_jwks_min_refresh_seconds=0,  # a rotation is picked up at the first unknown kid
    )
    with serve(create_app(settings)) as url:
        yield url


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_a_service_account_token_is_a_caller_with_its_scopes(issuer, facade):
    own, _ = issuer
    kid = own.new_key()
    async with httpx.AsyncClient(base_url=facade, timeout=30) as client:
        token = own.token(kid)
        created = await client.post(
            "/v1/invoices", headers={**bearer(token), **key()}, json=invoice_body()
        )
        assert created.status_code == 201, created.text
        number = created.json()["invoiceNumber"]
        assert (
            await client.get(f"/v1/invoices/{number}", headers=bearer(token))
        ).status_code == 200
        # Read-only subject: may read, may not write; and it sees only its own invoices.
        support = own.token(kid, subject=SUPPORT)
        assert (await client.get("/v1/invoices", headers=bearer(support))).status_code == 200
        refused = await client.post(
            "/v1/invoices", headers={**bearer(support), **key()}, json=invoice_body()
        )
        assert refused.status_code == 403, refused.text


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("expired", "expired"),
        ("not yet valid", "not valid yet"),
        ("wrong audience", "another audience"),
        ("wrong issuer", "issuer is not configured"),
        ("unknown subject", "subject is not a configured caller"),
        ("alg none", "algorithm 'none'"),
        ("key not published", "kid"),
        ("tampered", "does not verify"),
    ],
)
async def test_tokens_that_are_refused(issuer, facade, case, reason):
    own, _ = issuer
    kid = own.new_key()
    now = int(time.time())
    token = {
        "expired": lambda: own.token(kid, exp=now - 3600, iat=now - 7200),
        "not yet valid": lambda: own.token(kid, nbf=now + 3600),
        "wrong audience": lambda: own.token(kid, aud="someone-else"),
        "wrong issuer": lambda: own.token(kid, iss="https://evil.example"),
        "unknown subject": lambda: own.token(kid, subject="system:serviceaccount:x:y"),
        "alg none": unsigned_token,
        "key not published": lambda: own.token(own.new_key(publish=False)),
        "tampered": lambda: _tampered(own.token(kid)),
    }[case]()
    async with httpx.AsyncClient(base_url=facade, timeout=30) as client:
        response = await client.get("/v1/invoices", headers=bearer(token))
    assert response.status_code == 401, response.text
    assert response.json()["code"] == "unauthenticated"
    assert reason in response.json()["detail"]


def _tampered(token: str) -> str:
    header, claims, signature = token.split(".")
    decoded = json.loads(base64.urlsafe_b64decode(claims + "=" * (-len(claims) % 4)))
    decoded["sub"] = SUPPORT
    forged = base64.urlsafe_b64encode(json.dumps(decoded).encode()).rstrip(b"=").decode()
    return f"{header}.{forged}.{signature}"


async def test_key_rotation_is_picked_up_and_a_retired_key_refused(issuer, facade):
    own, _ = issuer
    old = own.new_key()
    async with httpx.AsyncClient(base_url=facade, timeout=30) as client:
        assert (await client.get("/v1/invoices", headers=bearer(own.token(old)))).status_code == 200
        # The issuer rotates: a new key is published, the old one retired.
        new = own.new_key()
        own.published.remove(old)
        answer = await client.get("/v1/invoices", headers=bearer(own.token(new)))
        assert answer.status_code == 200, answer.text
        assert (await client.get("/v1/invoices", headers=bearer(own.token(old)))).status_code == 401


async def test_unknown_kids_refetch_the_jwks_at_most_once_per_interval(issuer):
    own, jwks_url = issuer
    kid = own.new_key()
    provider = OidcProvider.model_validate(providers(jwks_url)[0])
    verifier = TokenVerifier([provider], min_refresh_seconds=60)
    try:
        assert (await verifier.caller(own.token(kid))).client == "billing"
        before = own.fetches
        for _ in range(20):  # made-up kids, as a flood would send them
            with pytest.raises(TokenRefused):
                await verifier.caller(own.token(own.new_key(publish=False)))
        assert own.fetches == before  # the JWKS was fetched less than a minute ago: no refetch
        assert verifier.fetches == 1
    finally:
        await verifier.aclose()

"""Message-level encryption on the simulator's side (AUTH.md "MLE"): decrypt `{"encryptedRequest"}`
bodies with the simulator's MLE key, and answer `{"encryptedResponse"}` when a JWT asks for it with
the claim `v-c-response-mle-kid` naming the merchant's registered key.

Cybersource marks every invoice and settings operation MLE-optional, except publish and the
merchant-defined fields; the same operations accept it here. The signature (Digest, JWT `digest`) is
checked over the wrapped body before it is decrypted, as Cybersource does.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import jwt

from app.cybersource.mle import (
    REQUEST_FIELD,
    RESPONSE_FIELD,
    RESPONSE_KID_CLAIM,
    MleError,
    MleKey,
    MleRecipient,
    decrypt,
    encrypt,
    encrypted_field,
)
from app.simulator.config import SimulatorConfig

# (route shape, method) of the operations that allow MLE: requests with a body, and answers.
MLE_REQUESTS = frozenset(
    {
        ("invoices", "POST"),
        ("invoice", "PUT"),
        ("delivery", "POST"),
        ("cancelation", "POST"),
        ("settings", "PUT"),
    }
)
MLE_RESPONSES = MLE_REQUESTS | {("invoices", "GET"), ("invoice", "GET"), ("settings", "GET")}


class MleRefused(Exception):
    """An encrypted request the simulator cannot take (400), with the reason."""


class Encryption:
    def __init__(self, config: SimulatorConfig) -> None:
        self.key: MleKey | None = None
        self.certificate_kid: str | None = None
        if config.mle_certificate_pem and config.mle_private_key_pem:
            recipient = MleRecipient.from_certificate_pem(config.mle_certificate_pem)
            self.certificate_kid = recipient.kid
            self.key = MleKey.from_private_pem(recipient.kid, config.mle_private_key_pem)
        self.required = config.mle_required
        self.response_keys: dict[str, MleRecipient] = {}
        for merchant in config.merchants:
            if merchant.mle_response_public_key_pem and merchant.mle_response_key_id:
                self.response_keys[merchant.merchant_id] = MleRecipient.from_public_pem(
                    merchant.mle_response_key_id, merchant.mle_response_public_key_pem
                )

    def request_body(self, shape: str, method: str, raw: bytes) -> tuple[bytes, bool]:
        """The plaintext body and whether it came encrypted."""
        token = None
        if raw[:1] == b"{" and REQUEST_FIELD.encode() in raw:
            try:
                token = encrypted_field(json.loads(raw), REQUEST_FIELD)
            except ValueError:
                token = None
        if token is None:
            if self.required and (shape, method) in MLE_REQUESTS:
                raise MleRefused("message-level encryption is required for this operation")
            return raw, False
        if (shape, method) not in MLE_REQUESTS:
            raise MleRefused("this operation does not take an encrypted body")
        if self.key is None:  # validation refuses it (400, field encryptedRequest), as before
            return raw, False
        try:
            return decrypt(token, self.key), True
        except MleError as exc:
            raise MleRefused(str(exc)) from exc

    def response_recipient(
        self, shape: str, method: str, merchant_id: str, headers: Iterable[tuple[bytes, bytes]]
    ) -> MleRecipient | None:
        """Whom the answer is encrypted to, when the JWT asks for it (a kid the merchant
        registered)."""
        kid = _response_kid(headers)
        if kid is None:
            return None
        if (shape, method) not in MLE_RESPONSES:
            return None  # Cybersource answers such operations in plaintext
        recipient = self.response_keys.get(merchant_id)
        if recipient is None or recipient.kid != kid:
            raise MleRefused(f"no response MLE key {kid!r} is registered for {merchant_id!r}")
        return recipient


def seal(payload: Any, recipient: MleRecipient, dumps: Any) -> dict[str, str]:
    return {RESPONSE_FIELD: encrypt(dumps(payload), recipient)}


def _response_kid(headers: Iterable[tuple[bytes, bytes]]) -> str | None:
    for name, value in headers:
        if name.lower() != b"authorization":
            continue
        scheme, _, token = value.decode("latin-1").partition(" ")
        if scheme.lower() != "bearer":
            return None
        try:  # the signature was verified already; only the claim is read here
            claims = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError:
            return None
        kid = claims.get(RESPONSE_KID_CLAIM)
        return None if kid is None else str(kid)
    return None

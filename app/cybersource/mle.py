"""Message-level encryption (MLE), both sides, as Cybersource's SDK does it (AUTH.md, "Message Level
Encryption"): a JWE in compact serialisation, RSA-OAEP-256 for the content key and A256GCM for the
content, its protected header naming the recipient's key (`kid`) and the time (`iat`).

- Request MLE (JWT only): the body becomes `{"encryptedRequest": "<JWE>"}`, encrypted to
  Cybersource's MLE certificate (`kid` = the certificate's serial number); the Digest and the JWT's
  `digest` cover this wrapped body.
- Response MLE: the JWT carries the claim `v-c-response-mle-kid` (the merchant's key registered with
  Cybersource) and the answer comes back as `{"encryptedResponse": "<JWE>"}`, encrypted to that
  key's public half; the client decrypts it with the private half.

The client encrypts requests and decrypts answers; the simulator decrypts requests and encrypts
answers; both use this module, as both use `signing.py`.
"""

from __future__ import annotations

import base64
import json
import os
import time
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey, RSAPublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

ALGORITHM = "RSA-OAEP-256"
ENCRYPTION = "A256GCM"
REQUEST_FIELD = "encryptedRequest"
RESPONSE_FIELD = "encryptedResponse"
RESPONSE_KID_CLAIM = "v-c-response-mle-kid"
_OAEP = padding.OAEP(
    mgf=padding.MGF1(algorithm=hashes.SHA256()), algorithm=hashes.SHA256(), label=None
)


class MleError(Exception):
    """A JWE that cannot be read: malformed, for another key, or tampered with."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (ValueError, TypeError) as exc:
        raise MleError("not base64url") from exc


def certificate_kid(certificate: x509.Certificate) -> str:
    """Cybersource names its MLE certificate by the certificate's serial number (decimal)."""
    return str(certificate.serial_number)


@dataclass(frozen=True, slots=True)
class MleRecipient:
    """Whom a JWE is encrypted to: a public RSA key and the `kid` that names it."""

    kid: str
    public_key: RSAPublicKey

    @classmethod
    def from_certificate_pem(cls, pem: str | bytes) -> MleRecipient:
        data = pem.encode() if isinstance(pem, str) else pem
        try:
            certificate = x509.load_pem_x509_certificate(data)
        except ValueError as exc:
            raise ValueError("the MLE certificate is not a PEM X.509 certificate") from exc
        key = certificate.public_key()
        if not isinstance(key, RSAPublicKey):
            raise ValueError("the MLE certificate's key must be RSA")
        return cls(certificate_kid(certificate), key)

    @classmethod
    def from_public_pem(cls, kid: str, pem: str | bytes) -> MleRecipient:
        data = pem.encode() if isinstance(pem, str) else pem
        key = serialization.load_pem_public_key(data)
        if not isinstance(key, RSAPublicKey):
            raise ValueError("the MLE key must be RSA")
        return cls(kid, key)


@dataclass(frozen=True, slots=True)
class MleKey:
    """A private RSA key that JWEs are encrypted to, and its `kid`."""

    kid: str
    private_key: RSAPrivateKey = field(repr=False)

    @classmethod
    def from_private_pem(cls, kid: str, pem: str | bytes) -> MleKey:
        data = pem.encode() if isinstance(pem, str) else pem
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError) as exc:
            raise ValueError("the MLE private key is not an unencrypted PEM key") from exc
        if not isinstance(key, RSAPrivateKey):
            raise ValueError("the MLE private key must be RSA")
        return cls(kid, key)


def encrypt(plaintext: bytes, recipient: MleRecipient, *, iat: int | None = None) -> str:
    """A compact JWE of `plaintext` for `recipient`."""
    header = {
        "alg": ALGORITHM,
        "enc": ENCRYPTION,
        "kid": recipient.kid,
        "iat": int(time.time()) if iat is None else iat,
    }
    protected = _b64(json.dumps(header, separators=(",", ":")).encode())
    content_key = AESGCM.generate_key(bit_length=256)
    encrypted_key = recipient.public_key.encrypt(content_key, _OAEP)
    iv = os.urandom(12)
    sealed = AESGCM(content_key).encrypt(iv, plaintext, protected.encode("ascii"))
    ciphertext, tag = sealed[:-16], sealed[-16:]
    return ".".join((protected, _b64(encrypted_key), _b64(iv), _b64(ciphertext), _b64(tag)))


def header_of(token: str) -> dict[str, Any]:
    parts = token.split(".")
    if len(parts) != 5:
        raise MleError("a compact JWE has five parts")
    try:
        header = json.loads(_unb64(parts[0]))
    except ValueError as exc:
        raise MleError("the JWE header is not JSON") from exc
    if not isinstance(header, dict):
        raise MleError("the JWE header is not an object")
    return header


def decrypt(token: str, key: MleKey) -> bytes:
    """The plaintext of a compact JWE encrypted to `key`."""
    header = header_of(token)
    if header.get("alg") != ALGORITHM or header.get("enc") != ENCRYPTION:
        raise MleError(f"unsupported JWE algorithms {header.get('alg')}/{header.get('enc')}")
    if str(header.get("kid")) != key.kid:
        raise MleError(f"the JWE is for key {header.get('kid')!r}, not {key.kid!r}")
    protected, encrypted_key, iv, ciphertext, tag = token.split(".")
    try:
        content_key = key.private_key.decrypt(_unb64(encrypted_key), _OAEP)
        return AESGCM(content_key).decrypt(
            _unb64(iv), _unb64(ciphertext) + _unb64(tag), protected.encode("ascii")
        )
    except Exception as exc:  # cryptography raises several types; all mean "cannot be read"
        raise MleError("the JWE does not decrypt with this key") from exc


def wrap_request(body: bytes, recipient: MleRecipient) -> bytes:
    """`{"encryptedRequest": "<JWE of body>"}`: the bytes that are then signed and sent."""
    return json.dumps({REQUEST_FIELD: encrypt(body, recipient)}, separators=(",", ":")).encode()


def encrypted_field(payload: Any, name: str) -> str | None:
    """The JWE of a one-member object `{name: "<JWE>"}` (how the SDK recognises an encrypted
    body)."""
    if isinstance(payload, dict) and len(payload) == 1 and isinstance(payload.get(name), str):
        return str(payload[name])
    return None

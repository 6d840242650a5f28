"""Every vector of Cybersource's authentication guide, reproduced and verified (see README,
Upstream auth)."""

from __future__ import annotations

import pytest

from app.cybersource.signing import (
    SignatureInvalid,
    SigningCredentials,
    VerificationKey,
    body_digest,
    decode_secret,
    sign_http_signature,
    sign_jwt,
    verify_http_signature,
    verify_jwt,
)

MERCHANT = "acme_invoicing_test"
KEY_ID = "5f0c7a2e-3b1d-4c8e-9a6f-0123456789ab"
SECRET = "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA="
HOST = "apitest.cybersource.com"
DATE = "Tue, 25 Nov 2025 10:00:00 GMT"
NOW = 1764064800.0  # the same instant as DATE
BODY = (
    b'{"invoiceInformation": {"description": "Consulting, November", "dueDate": "2025-12-31", '
    b'"sendImmediately": false, "deliveryMode": "none"}, "orderInformation": {"amountDetails": '
    b'{"totalAmount": "100.00", "currency": "USD"}}}'
)
CREDS = SigningCredentials(merchant_id=MERCHANT, key_id=KEY_ID, secret=decode_secret(SECRET))
JWT_VECTOR = (
    "eyJraWQiOiI1ZjBjN2EyZS0zYjFkLTRjOGUtOWE2Zi0wMTIzN"
    "DU2Nzg5YWIiLCJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."
    "eyJkaWdlc3QiOiJkMmpnVHdGKzgrSTZuOEVQN2F1dk1kbitJNncvSm1aVllra3NHejJnZGxJPSIsImRpZ2"
    "VzdEFsZ29yaXRobSI6IlNIQS0yNTYiLCJpYXQiOjE3NjQwNjQ4MDAsImV4cCI6MTc2NDA2NDkyMCwicmVx"
    "dWVzdC1tZXRob2QiOiJQT1NUIiwicmVxdWVzdC1ob3N0IjoiYXBpdGVzdC5jeWJlcnNvdXJjZS5jb20iLC"
    "JyZXF1ZXN0LXJlc291cmNlLXBhdGgiOiIvaW52b2ljaW5nL3YyL2ludm9pY2VzIiwiaXNzIjoiYWNtZV9p"
    "bnZvaWNpbmdfdGVzdCIsImp0aSI6IjAwMDAwMDAwLTAwMDAtNDAwMC04MDAwLTAwMDAwMDAwMDAwMSIsIn"
    "YtYy1qd3QtdmVyc2lvbiI6IjIiLCJ2LWMtbWVyY2hhbnQtaWQiOiJhY21lX2ludm9pY2luZ190ZXN0In0."
    "P0PfQUJFSOpqToNjhRe-IX3oeklbzJECmUNhEXbCzgE"
)


def _signature_value(headers: dict[str, str]) -> str:
    return headers["Signature"].rsplit('signature="', 1)[1].rstrip('"')


def _lookup(key: VerificationKey):
    return lambda key_id: key if key_id == key.key_id else None


KEY = VerificationKey(
    key_id=KEY_ID, merchant_ids=frozenset({MERCHANT}), secret=decode_secret(SECRET)
)


@pytest.mark.parametrize(
    ("method", "target", "body", "digest", "signature"),
    [
        (
            "POST",
            "/invoicing/v2/invoices",
            BODY,
            "d2jgTwF+8+I6n8EP7auvMdn+I6w/JmZVYkksGz2gdlI=",
            "ppqSgEuy0EYLoMZvJV+iifNE3Ys/0SLEde0xjM2t3TE=",
        ),
        (
            "GET",
            "/invoicing/v2/invoices?offset=0&limit=10",
            None,
            None,
            "m94KdgcEkC6Ua1kzC1IFth/+bU8VZ3TuEOPmXJl9HbQ=",
        ),
        (
            "POST",
            "/invoicing/v2/invoices/INV-1001/delivery",
            b"{}",
            "RBNvo1WzZ4oRRq0W9+hknpT7T8If536DEMBg9hyq/4o=",
            "q8tziFSw7h0AWAgevWqSTx9K4ILfSVfqQFrl+rZsE+A=",
        ),
        (
            "PUT",
            "/invoicing/v2/invoices/INV-1001",
            BODY,
            "d2jgTwF+8+I6n8EP7auvMdn+I6w/JmZVYkksGz2gdlI=",
            "QJsls0u4hSXVAXVZY0vHoBiWF/WS5s525bt2XQEYdw0=",
        ),
        (
            "DELETE",
            "/invoicing/v2/Invoice/merchantDefinedFields/7",
            None,
            None,
            "BPGFHhNhQeqUtYk87tLtEzly3asGjGADE//j0tS7H0o=",
        ),
    ],
)
def test_http_signature_vectors(method, target, body, digest, signature):
    headers = sign_http_signature(
        CREDS, method=method, host=HOST, target=target, body=body, date=DATE
    )
    assert _signature_value(headers) == signature
    assert headers.get("Digest") == (f"SHA-256={digest}" if digest else None)
    assert headers["v-c-merchant-id"] == MERCHANT
    lowered = {k.lower(): v for k, v in headers.items()}
    assert (
        verify_http_signature(
            method=method,
            target=target,
            headers=lowered,
            body=body or b"",
            lookup=_lookup(KEY),
            expected_host=HOST,
            now=NOW,
        )
        == MERCHANT
    )


def test_meta_key_vector_signs_portfolio_but_sends_merchant():
    meta = SigningCredentials(
        merchant_id=MERCHANT,
        key_id=KEY_ID,
        secret=decode_secret(SECRET),
        portfolio_id="acme_portfolio",
    )
    headers = sign_http_signature(
        meta,
        method="GET",
        host=HOST,
        target="/invoicing/v2/invoices/INV-1001",
        body=None,
        date=DATE,
    )
    assert _signature_value(headers) == "mkUVUtYmSSIcibz10szgF/yDfnSJmy4Z0H5D6kkIILg="
    assert headers["v-c-merchant-id"] == MERCHANT
    meta_key = VerificationKey(
        key_id=KEY_ID,
        merchant_ids=frozenset({MERCHANT}),
        secret=decode_secret(SECRET),
        portfolio_id="acme_portfolio",
    )
    lowered = {k.lower(): v for k, v in headers.items()}
    assert (
        verify_http_signature(
            method="GET",
            target="/invoicing/v2/invoices/INV-1001",
            headers=lowered,
            body=b"",
            lookup=_lookup(meta_key),
            now=NOW,
        )
        == MERCHANT
    )


def _signed_post(**overrides):
    headers = sign_http_signature(
        CREDS, method="POST", host=HOST, target="/invoicing/v2/invoices", body=BODY, date=DATE
    )
    lowered = {k.lower(): v for k, v in headers.items()}
    kwargs = dict(
        method="POST",
        target="/invoicing/v2/invoices",
        headers=lowered,
        body=BODY,
        lookup=_lookup(KEY),
        expected_host=HOST,
        now=NOW,
    )
    kwargs.update(overrides)
    return kwargs


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"body": BODY.replace(b"100.00", b"900.00")}, "Digest does not match"),
        ({"target": "/invoicing/v2/invoices/other"}, "signature does not match"),
        ({"now": NOW + 301}, "away from the server clock"),
        ({"expected_host": "api.cybersource.com"}, "is not"),
    ],
)
def test_verifier_rejects_tampering(overrides, reason):
    with pytest.raises(SignatureInvalid, match=reason):
        verify_http_signature(**_signed_post(**overrides))


def test_verifier_rejects_changed_body_even_with_recomputed_digest():
    kwargs = _signed_post()
    tampered = BODY.replace(b"100.00", b"900.00")
    kwargs["headers"]["digest"] = f"SHA-256={body_digest(tampered)}"
    kwargs["body"] = tampered
    with pytest.raises(SignatureInvalid, match="signature does not match"):
        verify_http_signature(**kwargs)


def test_verifier_rejects_wrong_merchant():
    kwargs = _signed_post()
    kwargs["headers"]["v-c-merchant-id"] = "someone_else"
    with pytest.raises(SignatureInvalid, match="does not belong"):
        verify_http_signature(**kwargs)


def test_verifier_rejects_old_request_target_label():
    old = (
        'keyid="5f0c7a2e-3b1d-4c8e-9a6f-0123456789ab", algorithm="HmacSHA256", '
        'headers="host date (request-target) v-c-merchant-id", '
        'signature="+JQCwX0DpKDWOn4N9464IxRz5SYP8xHshVKfh1Ez1m0="'
    )
    headers = {"host": HOST, "date": DATE, "v-c-merchant-id": MERCHANT, "signature": old}
    with pytest.raises(SignatureInvalid, match=r"\(request-target\)"):
        verify_http_signature(
            method="GET",
            target="/invoicing/v2/invoices?offset=0&limit=10",
            headers=headers,
            body=b"",
            lookup=_lookup(KEY),
            now=NOW,
        )


def test_jwt_vector_verifies_and_rejects_a_changed_body():
    headers = {"authorization": f"Bearer {JWT_VECTOR}"}
    assert (
        verify_jwt(
            method="POST",
            target="/invoicing/v2/invoices",
            headers=headers,
            body=BODY,
            lookup=_lookup(KEY),
            expected_host=HOST,
            now=NOW,
        )
        == MERCHANT
    )
    with pytest.raises(SignatureInvalid, match="digest"):
        verify_jwt(
            method="POST",
            target="/invoicing/v2/invoices",
            headers=headers,
            body=BODY + b" ",
            lookup=_lookup(KEY),
            now=NOW,
        )
    with pytest.raises(SignatureInvalid, match="clock skew"):
        verify_jwt(
            method="POST",
            target="/invoicing/v2/invoices",
            headers=headers,
            body=BODY,
            lookup=_lookup(KEY),
            now=NOW + 3600,
        )


def test_own_jwt_carries_the_vector_claims():
    headers = sign_jwt(
        CREDS,
        method="POST",
        host=HOST,
        target="/invoicing/v2/invoices",
        body=BODY,
        iat=int(NOW),
        jti="00000000-0000-4000-8000-000000000001",
    )
    import jwt

    token = headers["Authorization"].removeprefix("Bearer ")
    vector_claims = jwt.decode(JWT_VECTOR, options={"verify_signature": False})
    assert jwt.decode(token, options={"verify_signature": False}) == vector_claims
    assert jwt.get_unverified_header(token)["kid"] == KEY_ID
    lowered = {"authorization": headers["Authorization"]}
    assert (
        verify_jwt(
            method="POST",
            target="/invoicing/v2/invoices",
            headers=lowered,
            body=BODY,
            lookup=_lookup(KEY),
            now=NOW,
        )
        == MERCHANT
    )

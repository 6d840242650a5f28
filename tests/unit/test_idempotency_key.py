"""The Idempotency-Key header parser, the request fingerprint and the Prefer header (no I/O)."""

from __future__ import annotations

import pytest

from app import errors
from app.http.prefer import prefer_wait
from app.idempotency.keys import MAX_KEY_LENGTH, fingerprint, parse_idempotency_key

UUID = "8e03978e-40d5-43e8-bc93-6894a57f9324"


# --- parse_idempotency_key ------------------------------------------------------------------------


@pytest.mark.parametrize("value", [UUID, f'"{UUID}"', f"  {UUID} ", f' "{UUID}"\t'])
def test_bare_token_and_quoted_string_name_the_same_key(value: str):
    assert parse_idempotency_key(value) == UUID


@pytest.mark.parametrize(
    ("value", "key"),
    [
        (r'"say \"hi\""', 'say "hi"'),
        (r'"back\\slash"', "back\\slash"),
        (r'"\\\""', '\\"'),
        ('"with space inside"', "with space inside"),
        ('"a,b;c=d"', "a,b;c=d"),
        ("!#$%&'*+-.^_`|~:/?=[]{}()<>@", "!#$%&'*+-.^_`|~:/?=[]{}()<>@"),
    ],
)
def test_quoted_escapes_and_visible_ascii(value: str, key: str):
    assert parse_idempotency_key(value) == key


@pytest.mark.parametrize("value", [None, "", "   ", "\t"])
def test_missing_key(value: str | None):
    with pytest.raises(errors.IdempotencyKeyMissing) as caught:
        parse_idempotency_key(value)
    assert caught.value.status_code == 400
    assert caught.value.code == "idempotency_key_missing"


def test_longest_key_is_accepted_bare_and_quoted():
    longest = "k" * MAX_KEY_LENGTH
    assert MAX_KEY_LENGTH == 255
    assert parse_idempotency_key(longest) == longest
    assert parse_idempotency_key(f'"{longest}"') == longest
    # the limit counts the key, not its escapes
    escaped = '"' + "\\\\" * MAX_KEY_LENGTH + '"'
    assert parse_idempotency_key(escaped) == "\\" * MAX_KEY_LENGTH


@pytest.mark.parametrize(
    "value",
    [
        "k" * (MAX_KEY_LENGTH + 1),
        '"' + "k" * (MAX_KEY_LENGTH + 1) + '"',
        '""',  # an empty quoted string is no key
        "has space",
        "tab\there",
        'quote"inside',
        "back\\slash",
        '"unterminated',
        'unopened"',
        '"bad \\n escape"',  # only \" and \\ are escapes in a structured-field string
        '"stray " quote"',
        "ключ",
        '"ключ"',
        "nul\x00byte",
        "del\x7f",
    ],
)
def test_invalid_keys(value: str):
    with pytest.raises(errors.IdempotencyKeyInvalid) as caught:
        parse_idempotency_key(value)
    assert caught.value.status_code == 400
    assert caught.value.code == "idempotency_key_invalid"


# --- fingerprint ----------------------------------------------------------------------------------

BODY = {
    "customerInformation": {"name": "Tanya Lee", "email": "tanya@example.com"},
    "orderInformation": {"amountDetails": {"totalAmount": "100.00", "currency": "USD"}},
    "invoiceInformation": {"description": "Consulting", "dueDate": "2026-12-31"},
}


def _reordered(value):
    if isinstance(value, dict):
        return {k: _reordered(value[k]) for k in reversed(list(value))}
    return value


def test_same_meaning_same_hash():
    reordered = _reordered(BODY)
    assert list(reordered) != list(BODY)
    assert list(reordered["orderInformation"]["amountDetails"]) != list(
        BODY["orderInformation"]["amountDetails"]
    )
    first = fingerprint("POST", "/v1/invoices", BODY, scope="default")
    assert first == fingerprint("POST", "/v1/invoices", reordered, scope="default")
    assert first == fingerprint("post", "/v1/invoices", BODY, scope="default")
    assert len(first) == 64 and set(first) <= set("0123456789abcdef")
    assert fingerprint("POST", "/v1/invoices/INV-1/send", None) == fingerprint(
        "POST", "/v1/invoices/INV-1/send", None
    )


def test_different_request_different_hash():
    base = fingerprint("POST", "/v1/invoices", BODY, scope="default")
    other_amount = {
        **BODY,
        "orderInformation": {"amountDetails": {"totalAmount": "100.01", "currency": "USD"}},
    }
    variants = {
        "body": fingerprint("POST", "/v1/invoices", other_amount, scope="default"),
        "extra field": fingerprint(
            "POST", "/v1/invoices", {**BODY, "merchantDefinedFieldValues": []}, scope="default"
        ),
        "no body": fingerprint("POST", "/v1/invoices", None, scope="default"),
        "empty body": fingerprint("POST", "/v1/invoices", {}, scope="default"),
        "path": fingerprint("POST", "/v1/invoices/INV-1", BODY, scope="default"),
        "method": fingerprint("PUT", "/v1/invoices", BODY, scope="default"),
        "scope": fingerprint("POST", "/v1/invoices", BODY, scope="emea"),
        "no scope": fingerprint("POST", "/v1/invoices", BODY),
        "number vs text": fingerprint(
            "POST",
            "/v1/invoices",
            {
                **BODY,
                "orderInformation": {"amountDetails": {"totalAmount": 100.0, "currency": "USD"}},
            },
            scope="default",
        ),
    }
    assert base not in variants.values()
    assert len(set(variants.values())) == len(variants)
    assert fingerprint("POST", "/v1/invoices/INV-1/send", None) != fingerprint(
        "POST", "/v1/invoices/INV-1/cancel", None
    )


def test_fields_cannot_bleed_into_each_other():
    # the separator keeps "path + scope" from being ambiguous
    assert fingerprint("POST", "/a\nb", None, scope="") != fingerprint(
        "POST", "/a", None, scope="b"
    )


# --- prefer_wait ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("prefer", "expected"),
    [
        (None, (10.0, False)),
        ("", (10.0, False)),
        ("respond-async", (0.0, True)),
        ("Respond-Async", (0.0, True)),
        ("respond-async, wait=30", (0.0, True)),
        ("wait=5, respond-async", (0.0, True)),
        ("wait=5", (5.0, False)),
        ("WAIT=7", (7.0, False)),
        ("wait = 3", (3.0, False)),
        ("handling=lenient, wait=2", (2.0, False)),
        ("wait=0", (0.0, False)),
        ("wait=600", (60.0, False)),  # capped
        ("wait=-1", (10.0, False)),
        ("wait=1.5", (10.0, False)),
        ("wait=soon", (10.0, False)),
        ("wait", (10.0, False)),
        ("return=minimal", (10.0, False)),
    ],
)
def test_prefer_wait(prefer: str | None, expected: tuple[float, bool]):
    assert prefer_wait(prefer, 10.0) == expected


def test_prefer_parameters_and_quoted_values():
    from app.http.prefer import prefer_wait

    assert prefer_wait("respond-async; foo=bar", 10.0) == (0.0, True)
    assert prefer_wait('wait="5"', 10.0) == (5.0, False)
    assert prefer_wait("handling=lenient, wait=3", 10.0) == (3.0, False)
    assert prefer_wait("wait=600", 10.0) == (60.0, False)

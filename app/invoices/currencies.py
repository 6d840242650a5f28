"""Currencies and their minor units, from ISO 4217's own table (the `iso4217` package), not a hand
list.

A code is accepted when ISO 4217 lists it with a minor unit: that leaves out XXX (no currency), XTS
(testing), the precious metals and the SDR-like units, which have none. Cybersource follows ISO's
minor units (HUF and IDR have two decimals there, whatever a locale prints).
"""

from __future__ import annotations

from functools import cache

from iso4217 import Currency


@cache
def currency_exponent(code: str) -> int | None:
    """The number of decimals of `code` (2 for USD, 0 for JPY, 3 for KWD); None if it is no
    currency."""
    member = Currency.__members__.get(code)
    if member is None or not isinstance(member.exponent, int):
        return None
    return member.exponent

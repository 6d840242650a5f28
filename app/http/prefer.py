"""The one parser of the RFC 7240 `Prefer` header."""

from __future__ import annotations

import re

# RFC 7240's delta-seconds: ASCII digits only (`str.isdigit` also takes "²", which float() refuses).
_SECONDS = re.compile(r"^[0-9]{1,9}$")


def prefer_wait(prefer: str | None, default: float) -> tuple[float, bool]:
    """(seconds to wait, respond-async asked) from an RFC 7240 Prefer header.

    Preferences are comma-separated; each may carry `;` parameters (ignored) and a quoted value. A
    preference it cannot read is ignored, as RFC 7240 asks.
    """
    if not prefer:
        return default, False
    wait = default
    for preference in prefer.split(","):
        name, _, value = preference.split(";", 1)[0].strip().partition("=")
        name, value = name.strip().lower(), value.strip().strip('"')
        if name == "respond-async":
            return 0.0, True
        if name == "wait" and _SECONDS.match(value):
            wait = min(float(value), 60.0)
    return wait, False

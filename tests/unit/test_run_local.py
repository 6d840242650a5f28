"""`make run` (scripts/run_local.py) reads the local credentials from the sources before the app is
installed: they must be exactly the values the app uses, wherever the code keeps them."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from app.cybersource import profiles
from app.settings import LOCAL_DEV_API_KEY

ROOT = Path(__file__).resolve().parents[2]


def _run_local():  # the script is not a package module
    spec = importlib.util.spec_from_file_location("run_local", ROOT / "scripts" / "run_local.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_run_local_finds_every_local_credential_the_app_uses():
    found = _run_local().local_constants()
    for name in (
        "LOCAL_MERCHANT_ID",
        "LOCAL_KEY_ID",
        "LOCAL_SHARED_SECRET",
        "LOCAL_WEBHOOK_KEY_ID",
        "LOCAL_WEBHOOK_SECRET",
    ):
        assert found[name] == getattr(profiles, name), name
    assert found["LOCAL_DEV_API_KEY"] == LOCAL_DEV_API_KEY

"""Settings: production refuses placeholders, secrets stay out of reprs, URLs and profiles parse."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from app.db import async_url
from app.settings import LOCAL_DEV_API_KEY, LOCAL_SHARED_SECRET, Settings

REAL_SECRET = "c29tZS1yZWFsLWxvb2tpbmctc2VjcmV0LWJ5dGVzLTEyMw=="
KEYS = json.dumps([{"client": "billing", "sha256": "ab" * 32, "scopes": ["invoices:read"]}])


def production(**overrides):
    values = dict(
        app_env="production",
        cybersource_merchant_id="acme",
        cybersource_shared_secret=REAL_SECRET,
        cybersource_webhook_secret=REAL_SECRET,
        api_keys=KEYS,
    )
    values.update(overrides)
    return Settings(**values)


def test_production_starts_with_real_values():
    assert production().app_env == "production"


@pytest.mark.parametrize(
    ("overrides", "complaint"),
    [
        ({"cybersource_shared_secret": "changeme"}, "CYBERSOURCE_SHARED_SECRET"),
        ({"cybersource_shared_secret": LOCAL_SHARED_SECRET}, "CYBERSOURCE_SHARED_SECRET"),
        ({"cybersource_webhook_secret": ""}, "CYBERSOURCE_WEBHOOK_SECRET"),
        ({"cybersource_merchant_id": "local_merchant"}, "CYBERSOURCE_MERCHANT_ID"),
        ({"api_keys": "[]"}, "API_KEYS"),
    ],
)
def test_production_refuses_placeholders(overrides, complaint):
    with pytest.raises(ValidationError, match=complaint):
        production(**overrides)


def test_secrets_never_in_repr_or_errors():
    settings = production()
    assert REAL_SECRET not in repr(settings)
    assert REAL_SECRET not in repr(settings.default_profile)
    with pytest.raises(ValidationError) as info:
        production(cybersource_shared_secret="changeme")
    assert "changeme" not in str(info.value).split("refusing")[1]


def test_local_development_key_only_without_api_keys_and_never_in_production():
    local = Settings(app_env="local")
    assert [k.sha256 for k in local.effective_api_keys] == [
        hashlib.sha256(LOCAL_DEV_API_KEY.encode()).hexdigest()
    ]
    assert Settings(app_env="local", api_keys=KEYS).effective_api_keys[0].client == "billing"
    assert all(k.client != "local" for k in production().effective_api_keys)


def test_merchant_profiles_from_json_and_urls():
    extra = json.dumps(
        [
            {
                "name": "eu",
                "merchant_id": "acme_eu",
                "key_id": "k2",
                "shared_secret": REAL_SECRET,
                "environment": "production",
            }
        ]
    )
    settings = Settings(cybersource_profiles=extra, cybersource_base_url="http://127.0.0.1:8081")
    assert set(settings.merchant_profiles) == {"default", "eu"}
    assert settings.merchant_profiles["eu"].resolved_base_url == "https://api.cybersource.com"
    assert settings.default_profile.resolved_base_url == "http://127.0.0.1:8081"
    assert async_url("postgresql://u:p@h:5432/db") == "postgresql+asyncpg://u:p@h:5432/db"
    with pytest.raises(ValidationError, match="needs a shared secret"):
        Settings(
            cybersource_profiles=json.dumps([{"name": "x", "merchant_id": "m", "key_id": "k"}])
        )


def test_webhook_keys_include_previous_ones_and_production_refuses_placeholders():
    previous = json.dumps([{"key_id": "old", "secret": REAL_SECRET}])
    keys = Settings(
        cybersource_webhook_key_id="new", cybersource_webhook_previous_keys=previous
    ).webhook_keys
    assert set(keys) == {"new", "old"}
    with pytest.raises(ValidationError, match="previous webhook key 'old'"):
        production(
            cybersource_webhook_previous_keys=json.dumps([{"key_id": "old", "secret": "changeme"}])
        )


def test_every_setting_is_documented_in_the_readme():
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    undocumented = [
        name.upper() for name in Settings.model_fields if f"`{name.upper()}`" not in readme
    ]
    assert undocumented == []

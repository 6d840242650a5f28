"""Settings: production refuses placeholders, secrets stay out of reprs, URLs and profiles parse."""

from __future__ import annotations

import base64
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


WEAK = {
    "one byte": base64.b64encode(b"x").decode(),
    "base64 of changeme": base64.b64encode(b"changeme").decode(),
    "a repeated byte": base64.b64encode(b"a" * 32).decode(),
}


@pytest.mark.parametrize("weak", list(WEAK.values()), ids=list(WEAK))
@pytest.mark.parametrize("name", ["cybersource_shared_secret", "cybersource_webhook_secret"])
def test_production_refuses_weak_secrets(name, weak):
    with pytest.raises(ValidationError, match=f"{name.upper()} is too weak") as info:
        production(**{name: weak})
    assert weak not in str(info.value).split("Value error")[1].split("[type")[0]


@pytest.mark.parametrize("env", ["local", "production"])
def test_a_secret_that_is_not_base64_is_refused_at_start(env):
    values = {"cybersource_webhook_secret": "not base64!"}
    with pytest.raises(ValidationError, match="CYBERSOURCE_WEBHOOK_SECRET is not valid base64"):
        production(**values) if env == "production" else Settings(app_env="local", **values)


def test_production_refuses_the_local_development_key():
    digest = hashlib.sha256(LOCAL_DEV_API_KEY.encode()).hexdigest()
    keys = json.dumps([{"client": "x", "sha256": digest, "scopes": ["invoices:admin"]}])
    with pytest.raises(ValidationError, match="digest of the local development key"):
        production(api_keys=keys)


def test_docs_are_off_in_production_unless_enabled_and_relay_metrics_on_loopback():
    assert Settings(app_env="local").docs_on
    assert not production().docs_on
    assert production(docs_enabled="true").docs_on
    assert not Settings(app_env="local", docs_enabled="false").docs_on
    assert Settings().relay_metrics_host == "127.0.0.1"


OIDC = (
    '[{"issuer": "https://kubernetes.default.svc.cluster.local", "audience": "invoicing-gateway",'
    ' "jwks_url": "https://kubernetes.default.svc.cluster.local/openid/v1/jwks", "callers":'
    ' [{"subject": "system:serviceaccount:billing:api", "client": "billing",'
    ' "scopes": ["invoices:read"], "profiles": ["default"]}]}]'
)


def test_oidc_providers_in_the_contract_shape_and_callers_profiles():
    settings = production(oidc_providers=OIDC, api_keys="[]")  # workload identity alone will do
    caller = settings.oidc_providers[0].callers[0]
    assert (caller.subject, caller.client, caller.profiles) == (
        "system:serviceaccount:billing:api",
        "billing",
        ("default",),
    )
    assert Settings(api_keys=KEYS).api_keys[0].profiles == ("default",)
    with pytest.raises(ValidationError, match="not configured: billing: eu"):
        Settings(
            api_keys=json.dumps([{"client": "billing", "sha256": "ab" * 32, "profiles": ["eu"]}])
        )
    with pytest.raises(ValidationError):
        Settings(oidc_providers=OIDC.replace('"audience"', '"audiences"'))


def test_an_invalid_configuration_is_reported_without_its_values(monkeypatch, capsys):
    from app.__main__ import main

    secret = base64.b64encode(b"short").decode()
    monkeypatch.setenv("APP_ENV", "production")
    monkeypatch.setenv("CYBERSOURCE_SHARED_SECRET", secret)
    assert main(["openapi"]) == 2
    err = capsys.readouterr().err
    assert "CYBERSOURCE_SHARED_SECRET is too weak" in err
    assert secret not in err

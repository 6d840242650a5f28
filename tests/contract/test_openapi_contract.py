"""Schemathesis drives the live facade (real PostgreSQL, simulator over HTTP) from its OpenAPI
document.

Every answer must be documented (status code, content type, schema), no input may cause a 500, and
schema-violating input must be refused. Positive-data acceptance is not checked: opaque cursors,
merchant profiles and Idempotency-Keys are free strings in the schema whose valid values the
generator cannot know.
"""

from __future__ import annotations

import os

import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from app.main import create_app
from app.settings import Settings
from tests.integration.conftest import KEYS

# The document comes from the code (building the app needs no database); calls go to the live
# server.
schema = schemathesis.openapi.from_dict(create_app(Settings(app_env="test")).openapi()).exclude(
    path_regex="^/v1/webhooks"
)


# The same examples on every run (a CI run must not pass or fail by chance); `make contract-fuzz`
# explores with fresh random examples, more of them.
FUZZ = os.environ.get("CONTRACT_FUZZ") == "1"


@schema.parametrize()
@settings(
    max_examples=int(os.environ.get("CONTRACT_EXAMPLES", "25")),
    derandomize=not FUZZ,
    database=None,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_every_answer_matches_the_contract(case, facade_url):
    case.call_and_validate(
        base_url=facade_url,
        headers={"Authorization": f"Bearer {KEYS['ops']}"},
        excluded_checks=[positive_data_acceptance],
    )

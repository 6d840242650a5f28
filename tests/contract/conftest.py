"""The contract suite reuses the integration fixtures: real PostgreSQL, simulator and facade over
HTTP."""

from tests.integration.conftest import database_url, facade_url, simulator_url  # noqa: F401

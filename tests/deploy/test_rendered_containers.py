"""The chart's containers, run as rendered.

No Kubernetes cluster can run here, so this test does the kubelet's part: it renders the chart with
a ci/ values file, takes the migration Job's, the api's and the relay's container (command and args,
the environment resolved from the rendered ConfigMap and Secret, ports, probes) and runs each from
the project's environment with exactly that command and environment (plus the image's PATH, HOME and
Python variables), against a throwaway PostgreSQL database and the simulator. The probes must answer
on the rendered ports and paths, and an invoice goes create -> send -> paid (by the simulator's
signed webhook).

Only the address of the database and the simulator, and free ports instead of 8080/9101 (which a
local `make run` may hold), are set over the values file; everything else is the file's.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import yaml

from app.settings import Settings
from tests.deploy.chart import (
    CHART,
    Container,
    all_of,
    find,
    known_env_names,
    render,
    resolve,
    workload,
)
from tests.support.pgbouncer import pgbouncer
from tests.support.postgres import fresh_database
from tests.support.servers import free_port

# `invoicing-gateway` of the project's environment; the image puts its venv first on PATH the same
# way.
VENV_BIN = Path(sys.executable).parent
# The Dockerfile's runtime ENV (HOME is a fresh directory per run).
IMAGE_ENV = {"PYTHONUNBUFFERED": "1", "PYTHONDONTWRITEBYTECODE": "1"}


@dataclass(frozen=True)
class Scenario:
    values: Path
    pgbouncer: bool
    caller_key: str


SCENARIOS = {
    # The chart's own Secret, PostgreSQL directly.
    "minimal": Scenario(
        CHART / "ci" / "minimal-values.yaml", pgbouncer=False, caller_key="ci-minimal-caller-key"
    ),
    # existingSecret (made here, as an operator would), PgBouncer in transaction mode, extraConfig,
    # ServiceMonitor, PrometheusRule and the dashboard.
    "production": Scenario(
        CHART / "ci" / "production-values.yaml",
        pgbouncer=True,
        caller_key="ci-production-caller-key",
    ),
    # OIDC_PROVIDERS and a projected service-account token: the service starts with them (it ignores
    # OIDC_PROVIDERS until workload identity lands, then parses it: the file's shape must fit).
    "callers": Scenario(
        CHART / "ci" / "callers-values.yaml", pgbouncer=False, caller_key="ci-callers-caller-key"
    ),
}


class Process:
    """One rendered container started as a local process; its output goes to a log file."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], workdir: Path) -> None:
        self.name = name
        self.log = workdir / f"{name}.log"
        home = workdir / f"home-{name}"
        home.mkdir()
        full_env = {
            "PATH": f"{VENV_BIN}{os.pathsep}/usr/local/bin:/usr/bin:/bin",
            "HOME": str(home),
            **IMAGE_ENV,
            **env,
        }
        with self.log.open("wb") as log:
            # Popen looks argv[0] up in full_env's PATH: the command as rendered,
            # `invoicing-gateway`.
            self.popen = subprocess.Popen(
                argv,
                env=full_env,
                cwd=home,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def tail(self, lines: int = 40) -> str:
        text = self.log.read_text(errors="replace").splitlines()
        return f"--- {self.name} (exit {self.popen.poll()}) ---\n" + "\n".join(text[-lines:])

    def stop(self, grace_seconds: float) -> tuple[int, float]:
        """SIGTERM, as Kubernetes sends it; SIGKILL after the grace period. Exit code and seconds
        taken."""
        started = time.monotonic()
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
        try:
            code = self.popen.wait(timeout=grace_seconds)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(timeout=10)
            code = -signal.SIGKILL
        return code, time.monotonic() - started


@contextmanager
def running(
    name: str, argv: list[str], env: dict[str, str], workdir: Path, grace_seconds: float
) -> Iterator[Process]:
    process = Process(name, argv, env, workdir)
    try:
        yield process
    finally:
        process.stop(grace_seconds)


def query(url: str, sql: str, *args: Any) -> list[asyncpg.Record]:
    async def run() -> list[asyncpg.Record]:
        connection = await asyncpg.connect(url)
        try:
            return list(await connection.fetch(sql, *args))
        finally:
            await connection.close()

    return asyncio.run(run())


def metric_families(text: str) -> set[str]:
    return set(re.findall(r"^# TYPE (\S+) ", text, flags=re.MULTILINE))


def metric_names_in(expression: str) -> set[str]:
    """igw_* series a PromQL expression reads, as family names (histogram and counter suffixes
    dropped)."""
    return {
        re.sub(r"_(bucket|sum|count|created)$", "", name)
        for name in re.findall(r"\bigw_[a-z_]+", expression)
    }


def existing_secret(
    name: str, database_url: str, direct_url: str, caller_key: str
) -> dict[str, Any]:
    """The Secret an operator creates for existingSecret, with the keys the chart's README lists."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name},
        "stringData": {
            "DATABASE_URL": database_url,
            "DATABASE_LISTEN_URL": direct_url,
            "CYBERSOURCE_SHARED_SECRET": base64.b64encode(secrets.token_bytes(32)).decode(),
            "CYBERSOURCE_WEBHOOK_SECRET": base64.b64encode(secrets.token_bytes(32)).decode(),
            "API_KEYS": json.dumps(
                [
                    {
                        "client": "billing",
                        "sha256": hashlib.sha256(caller_key.encode()).hexdigest(),
                        "scopes": ["invoices:read", "invoices:write"],
                    }
                ]
            ),
        },
    }


def invoice_body() -> dict[str, Any]:
    return {
        "customerInformation": {"name": "Ada Lovelace", "email": "ada@example.com"},
        "invoiceInformation": {
            "description": "Consulting, two hours",
            "deliveryMode": "email",
            "dueDate": (date.today() + timedelta(days=30)).isoformat(),
        },
        "orderInformation": {"amountDetails": {"totalAmount": "250.00", "currency": "USD"}},
    }


def render_scenario(
    scenario: Scenario, workdir: Path, database_url: str, direct_url: str, simulator_url: str
) -> list[dict[str, Any]]:
    """The scenario's values file, with the database, the simulator and free ports set over it."""
    values = yaml.safe_load(scenario.values.read_text())
    overrides: dict[str, Any] = {
        "cybersource": {"baseUrl": simulator_url},
        "api": {"port": free_port()},
        "relay": {"metricsPort": free_port()},
    }
    if not values.get("existingSecret"):
        overrides["database"] = {"url": database_url}
    override_file = workdir / "overrides.yaml"
    override_file.write_text(yaml.safe_dump(overrides))
    objects = render(scenario.values, override_file)
    if values.get("existingSecret"):
        objects.append(
            existing_secret(values["existingSecret"], database_url, direct_url, scenario.caller_key)
        )
    return objects


def assert_only_known_names(*containers: Container) -> None:
    """pydantic-settings ignores a variable it does not know (the service falls back to a default),
    so a misspelt name in a template must be caught here: every name a container gets is one the
    service reads."""
    known = known_env_names()
    for container in containers:
        unknown = {name: container.env_sources[name] for name in container.env if name not in known}
        assert not unknown, f"{container.owner} gets variables the service does not read: {unknown}"


def run_migration(job: dict[str, Any], migrate: Container, workdir: Path) -> None:
    """The Job's container to completion within its deadline (capped for the test)."""
    deadline = min(int(job["spec"]["activeDeadlineSeconds"]), 180)
    process = Process("migrate", migrate.argv, migrate.env, workdir)
    try:
        code = process.popen.wait(timeout=deadline)
    except subprocess.TimeoutExpired:
        process.popen.kill()
        pytest.fail(f"migrate ran past {deadline} s:\n{process.tail()}")
    assert code == 0, process.tail()


def simulator_argv(api: Container, port: int) -> list[str]:
    """The simulator with the credentials the api got, its webhooks aimed at the api's rendered
    port."""
    return [
        "invoicing-gateway",
        "simulator",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--merchant-id",
        api.env["CYBERSOURCE_MERCHANT_ID"],
        "--key-id",
        api.env["CYBERSOURCE_KEY_ID"],
        "--shared-secret",
        api.env["CYBERSOURCE_SHARED_SECRET"],
        "--webhook-url",
        f"http://127.0.0.1:{api.ports['http']}/v1/webhooks/cybersource",
        "--webhook-key-id",
        api.env["CYBERSOURCE_WEBHOOK_KEY_ID"],
        "--webhook-secret",
        api.env["CYBERSOURCE_WEBHOOK_SECRET"],
        "--webhook-retry-delays",
        "0.2,0.5,1",
    ]


def wait_until_answers(url: str, process: Process, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while True:
        assert process.popen.poll() is None, (
            f"{process.name} exited while starting:\n{process.tail()}"
        )
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, (
            f"{url} did not answer 200 within {seconds} s:\n{process.tail()}"
        )
        time.sleep(0.2)


def wait_for_probes(process: Process, container: Container) -> None:
    """Every probe answers 200 on its rendered port and path, the first within the startup probe's
    budget."""
    startup = next(p for p in container.probes if p.kind == "startupProbe")
    wait_until_answers(
        f"http://127.0.0.1:{startup.port}{startup.path}", process, startup.budget_seconds
    )
    for probe in container.probes:
        answer = httpx.get(f"http://127.0.0.1:{probe.port}{probe.path}", timeout=5)
        assert answer.status_code == 200, (
            f"{container.owner} {probe.kind} {probe.path}: {answer.status_code}"
        )
        # The probe routes themselves answer (not a catch-all metrics page): /livez and /readyz say
        # ok.
        if probe.path in ("/livez", "/readyz"):
            assert answer.json()["status"] == "ok", f"{container.owner} {probe.path}: {answer.text}"


def create_send_and_pay(
    api: httpx.Client, simulator_url: str, prefix: str, logs: Callable[[], str]
) -> str:
    """create -> send through the api; the payer pays at the simulator, whose signed webhook
    lands."""
    created = api.post(
        "/v1/invoices", json=invoice_body(), headers={"Idempotency-Key": str(uuid.uuid4())}
    )
    assert created.status_code == 201, f"{created.status_code} {created.text}\n{logs()}"
    number = str(created.json()["invoiceNumber"])
    assert number.startswith(prefix), number
    sent = api.post(f"/v1/invoices/{number}/send", headers={"Idempotency-Key": str(uuid.uuid4())})
    assert sent.status_code == 200, f"{sent.status_code} {sent.text}\n{logs()}"
    assert sent.json()["status"] == "SENT"

    upstream = httpx.get(f"{simulator_url}/__sim/invoices/{number}", timeout=5)
    assert upstream.status_code == 200, upstream.text  # at this merchant of this simulator
    assert upstream.json()["status"] == "SENT"
    paid = httpx.post(
        f"{simulator_url}/__sim/invoices/{number}/payments", json={"amount": "250.00"}, timeout=5
    )
    assert paid.status_code in (200, 201), paid.text
    # The webhook is signed with the key the api got from the rendered settings.
    deadline = time.monotonic() + 20
    while api.get(f"/v1/invoices/{number}").json()["status"] != "PAID":
        assert time.monotonic() < deadline, f"the payment webhook never landed\n{logs()}"
        time.sleep(0.2)
    return number


def series_read_by_alerts_and_dashboard(objects: list[dict[str, Any]]) -> set[str]:
    expressions = [
        rule["expr"]
        for obj in all_of(objects, "PrometheusRule")
        for group in obj["spec"]["groups"]
        for rule in group["rules"]
    ]
    for obj in all_of(objects, "ConfigMap"):
        if obj["metadata"]["name"].endswith("-dashboard"):
            panels = json.loads(obj["data"]["invoicing-gateway.json"])["panels"]
            expressions += [target["expr"] for panel in panels for target in panel["targets"]]
    return {name for expression in expressions for name in metric_names_in(expression)}


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_the_rendered_containers_run(name: str, tmp_path: Path) -> None:
    scenario = SCENARIOS[name]
    simulator_port = free_port()
    simulator_url = f"http://127.0.0.1:{simulator_port}"
    with ExitStack() as stack:
        direct_url = stack.enter_context(fresh_database("igw_deploy", migrate=False))
        database_url = (
            stack.enter_context(pgbouncer(direct_url.rsplit("/", 1)[1]))
            if scenario.pgbouncer
            else direct_url
        )
        objects = render_scenario(scenario, tmp_path, database_url, direct_url, simulator_url)
        job = find(objects, "Job")
        migrate, api, relay = (
            resolve(objects, job),
            resolve(objects, workload(objects, "Deployment", "api")),
            resolve(objects, workload(objects, "Deployment", "relay")),
        )

        assert_only_known_names(migrate, api, relay)
        # What this run relies on really comes from the rendered objects.
        assert api.env["CYBERSOURCE_BASE_URL"] == relay.env["CYBERSOURCE_BASE_URL"] == simulator_url
        assert api.env["DATABASE_URL"] == relay.env["DATABASE_URL"] == database_url
        assert migrate.env["DATABASE_URL"] == direct_url  # with PgBouncer too: migrations go direct
        assert (
            api.env["DATABASE_PGBOUNCER"]
            == relay.env["DATABASE_PGBOUNCER"]
            == str(scenario.pgbouncer).lower()
        )

        # 1. The migration Job, into the throwaway database.
        run_migration(job, migrate, tmp_path)
        assert query(direct_url, "SELECT version_num FROM alembic_version"), (
            "migrate left no alembic_version"
        )

        # 2. The simulator, the api and the relay; the probes answer on the rendered ports and
        #    paths.
        simulator = stack.enter_context(
            running("simulator", simulator_argv(api, simulator_port), {}, tmp_path, 10)
        )
        api_process = stack.enter_context(
            running("api", api.argv, api.env, tmp_path, api.grace_seconds)
        )
        relay_process = stack.enter_context(
            running("relay", relay.argv, relay.env, tmp_path, relay.grace_seconds)
        )
        wait_until_answers(f"{simulator_url}/__sim/health", simulator, 30)
        wait_for_probes(api_process, api)
        wait_for_probes(relay_process, relay)

        # 3. An invoice through the api, delivered by the relay, paid by webhook, stored in this
        #    database.
        # production's extraConfig sets ACME-; otherwise the service's own default applies
        default_prefix = Settings.model_fields["invoice_number_prefix"].default
        prefix = api.env.get("INVOICE_NUMBER_PREFIX", default_prefix)
        with httpx.Client(
            base_url=f"http://127.0.0.1:{api.ports['http']}",
            timeout=30,
            headers={"Authorization": f"Bearer {scenario.caller_key}"},
        ) as client:
            number = create_send_and_pay(
                client,
                simulator_url,
                prefix,
                lambda: f"{api_process.tail()}\n{relay_process.tail()}",
            )
            api_metrics = client.get("/metrics").text
        stored = query(direct_url, "SELECT status FROM invoices WHERE invoice_number = $1", number)
        assert [row["status"] for row in stored] == ["PAID"], (
            "the invoice is not in the throwaway database"
        )

        # 4. Every series the alerts and the dashboard read is exported by the api or the relay.
        relay_metrics = httpx.get(
            f"http://127.0.0.1:{relay.ports['metrics']}/metrics", timeout=5
        ).text
        read = series_read_by_alerts_and_dashboard(objects)
        assert bool(read) == (name == "production"), (
            "only the production values render alerts and dashboard"
        )
        missing = read - metric_families(api_metrics) - metric_families(relay_metrics)
        assert not missing, f"alerts or dashboard read series nobody exports: {sorted(missing)}"

        # 5. SIGTERM: each drains and exits within its rendered grace period.
        code, seconds = relay_process.stop(relay.grace_seconds)
        assert code == 0 and seconds < relay.grace_seconds, relay_process.tail()
        code, seconds = api_process.stop(api.grace_seconds)
        # uvicorn shuts down gracefully, then re-raises SIGTERM so the exit status tells why it
        # ended.
        assert code in (0, -signal.SIGTERM) and seconds < api.grace_seconds, api_process.tail()

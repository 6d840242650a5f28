"""The chart's rendered objects, checked without running them: names the service reads, ports that
agree with the commands, hardened pods, the migration hook, PgBouncer wiring, the values schema and
the chart README. `make chart-check` lints and validates the same renderings against Kubernetes'
schemas."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.chart import (
    CHART,
    CI_VALUES,
    ROOT,
    all_of,
    component,
    find,
    known_env_names,
    render,
    resolve,
    run_helm,
    workload,
)

# The relay drains calls in flight for up to this long on SIGTERM (README, "The outbox and the
# relay").
RELAY_DRAIN_SECONDS = 20
# The keys the chart README tells operators to put in an existingSecret.
EXISTING_SECRET_KEYS = (
    "DATABASE_URL",
    "DATABASE_LISTEN_URL",
    "CYBERSOURCE_SHARED_SECRET",
    "CYBERSOURCE_WEBHOOK_SECRET",
    "API_KEYS",
)
VALUES_FILES = [None, *CI_VALUES]


def rendered(values: Path | None) -> list[dict[str, Any]]:
    """A rendering, with a stand-in for the existingSecret an operator would have created."""
    objects = render(*([values] if values else []))
    name = yaml.safe_load(values.read_text()).get("existingSecret") if values else None
    if name:
        objects.append(
            {
                "kind": "Secret",
                "metadata": {"name": name},
                "stringData": {key: "x" for key in EXISTING_SECRET_KEYS},
            }
        )
    return objects


def pod_owners(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return all_of(objects, "Deployment") + all_of(objects, "Job")


def label(values: Path | None) -> str:
    return values.stem if values else "default"


@pytest.fixture(scope="module", params=VALUES_FILES, ids=label)
def objects(request: pytest.FixtureRequest) -> list[dict[str, Any]]:
    return rendered(request.param)


def test_containers_get_only_variables_the_service_reads(objects: list[dict[str, Any]]) -> None:
    known = known_env_names()
    for owner in pod_owners(objects):
        container = resolve(objects, owner)
        unknown = {name: container.env_sources[name] for name in container.env if name not in known}
        assert not unknown, f"{container.owner}: the service reads no such variable: {unknown}"


def test_commands_ports_and_probes_agree(objects: list[dict[str, Any]]) -> None:
    api = resolve(objects, workload(objects, "Deployment", "api"))
    assert api.argv[:2] == ["invoicing-gateway", "api"]
    assert api.argv[api.argv.index("--host") + 1] == "0.0.0.0"
    assert int(api.argv[api.argv.index("--port") + 1]) == api.ports["http"]
    assert {(p.port, p.path) for p in api.probes} == {
        (api.ports["http"], "/livez"),
        (api.ports["http"], "/readyz"),
    }

    relay = resolve(objects, workload(objects, "Deployment", "relay"))
    assert relay.argv == ["invoicing-gateway", "relay"]
    assert int(relay.env["RELAY_METRICS_PORT"]) == relay.ports["metrics"]
    assert relay.env["RELAY_METRICS_HOST"] == "0.0.0.0"  # probed and scraped from outside the pod
    assert {(p.port, p.path) for p in relay.probes} == {
        (relay.ports["metrics"], "/livez"),
        (relay.ports["metrics"], "/readyz"),
    }
    assert (
        [p.kind for p in api.probes]
        == [p.kind for p in relay.probes]
        == ["startupProbe", "livenessProbe", "readinessProbe"]
    )

    assert resolve(objects, find(objects, "Job")).argv == ["invoicing-gateway", "migrate"]


def test_services_and_service_monitors_name_ports_that_exist(objects: list[dict[str, Any]]) -> None:
    def pod_ports(selector: dict[str, str]) -> set[str]:
        matching = [
            d
            for d in all_of(objects, "Deployment")
            if selector.items() <= d["spec"]["template"]["metadata"]["labels"].items()
        ]
        assert matching, f"nothing matches {selector}"
        return {
            p["name"]
            for d in matching
            for c in d["spec"]["template"]["spec"]["containers"]
            for p in c["ports"]
        }

    services = all_of(objects, "Service")
    for service in services:
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in pod_ports(service["spec"]["selector"]), service[
                "metadata"
            ]["name"]
    for monitor in all_of(objects, "ServiceMonitor"):
        selector = monitor["spec"]["selector"]["matchLabels"]
        selected = [s for s in services if selector.items() <= s["metadata"]["labels"].items()]
        assert len(selected) == 1, monitor["metadata"]["name"]
        names = {p["name"] for p in selected[0]["spec"]["ports"]}
        assert {e["port"] for e in monitor["spec"]["endpoints"]} <= names


def test_pods_are_hardened(objects: list[dict[str, Any]]) -> None:
    image_user = re.search(
        r"^USER (\d+):(\d+)$", (ROOT / "Dockerfile").read_text(), flags=re.MULTILINE
    )
    assert image_user, "the Dockerfile sets a numeric USER"
    for owner in pod_owners(objects):
        pod = owner["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert str(pod["securityContext"]["runAsUser"]) == image_user.group(1)
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
        assert pod["automountServiceAccountToken"] is False
        for container in pod["containers"]:
            context = container["securityContext"]
            assert context["readOnlyRootFilesystem"] is True
            assert context["allowPrivilegeEscalation"] is False
            assert context["capabilities"]["drop"] == ["ALL"]
            assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]
            # A read-only root: /tmp is the one writable place (the image's HOME).
            assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]


def test_relay_outlasts_its_drain_and_pods_spread(objects: list[dict[str, Any]]) -> None:
    relay = workload(objects, "Deployment", "relay")["spec"]["template"]["spec"]
    assert relay["terminationGracePeriodSeconds"] > RELAY_DRAIN_SECONDS
    for deployment in all_of(objects, "Deployment"):
        spread = deployment["spec"]["template"]["spec"]["topologySpreadConstraints"]
        assert {c["topologyKey"] for c in spread} == {
            "topology.kubernetes.io/zone",
            "kubernetes.io/hostname",
        }
        for constraint in spread:
            assert constraint["labelSelector"]["matchLabels"][
                "app.kubernetes.io/component"
            ] == component(deployment)
    assert {component(p) for p in all_of(objects, "PodDisruptionBudget")} == {"api", "relay"}


def _env_from(owner: dict[str, Any]) -> list[tuple[str, str]]:
    sources = owner["spec"]["template"]["spec"]["containers"][0]["envFrom"]
    return [
        ("ConfigMap", s["configMapRef"]["name"])
        if "configMapRef" in s
        else ("Secret", s["secretRef"]["name"])
        for s in sources
    ]


def test_migration_runs_before_new_pods_with_the_same_settings(
    objects: list[dict[str, Any]],
) -> None:
    job = find(objects, "Job")
    hook = job["metadata"]["annotations"]
    assert hook["helm.sh/hook"] == "pre-install,pre-upgrade"
    # A pre-install hook runs before the release's ConfigMap and Secret exist, so the Job reads hook
    # copies, created before it (lower weight), holding what the pods get.
    pod_sources = _env_from(workload(objects, "Deployment", "api"))
    job_sources = _env_from(job)
    assert (
        [kind for kind, _ in job_sources]
        == [kind for kind, _ in pod_sources]
        == ["ConfigMap", "Secret"]
    )
    for (kind, pod_name), (_, job_name) in zip(pod_sources, job_sources, strict=True):
        if job_name == pod_name:  # only an existingSecret, which exists before any hook runs
            labels = find(objects, kind, pod_name)["metadata"].get("labels", {})
            assert kind == "Secret" and "helm.sh/chart" not in labels
            continue
        copy, regular = find(objects, kind, job_name), find(objects, kind, pod_name)
        assert copy["metadata"]["annotations"]["helm.sh/hook"] == hook["helm.sh/hook"]
        assert int(copy["metadata"]["annotations"]["helm.sh/hook-weight"]) < int(
            hook["helm.sh/hook-weight"]
        )
        data = "data" if kind == "ConfigMap" else "stringData"
        assert copy[data] == regular[data]


def test_pgbouncer_keeps_migrations_and_listen_on_a_direct_connection() -> None:
    objects = rendered(CHART / "ci" / "production-values.yaml")
    api = resolve(objects, workload(objects, "Deployment", "api"))
    assert api.env["DATABASE_PGBOUNCER"] == "true"
    assert api.env_sources["DATABASE_LISTEN_URL"] == "Secret/invoicing-gateway-secrets"
    migrate = resolve(objects, find(objects, "Job"))
    assert (
        migrate.env_sources["DATABASE_URL"]
        == "Secret/invoicing-gateway-secrets[DATABASE_LISTEN_URL]"
    )
    assert migrate.env["DATABASE_PGBOUNCER"] == "false"

    failed = run_helm("template", "igw", str(CHART), "--set", "database.pgbouncer.enabled=true")
    assert failed.returncode != 0 and "database.pgbouncer.directUrl is required" in failed.stderr


@pytest.mark.parametrize(
    "setting, refusal",
    [
        (
            "extraConfig.DATABASE_URL=postgresql://x",
            "DATABASE_URL",
        ),  # a secret never goes to the ConfigMap
        (
            "extraConfig.RELAY_METRICS_PORT=1",
            "RELAY_METRICS_PORT",
        ),  # the chart sets it from relay.metricsPort
        ("relay.terminationGracePeriodSeconds=10", "terminationGracePeriodSeconds"),
        ("apiKey=x", "apiKey"),  # a misspelt value name
        ("appEnv=staging", "appEnv"),
    ],
)
def test_the_values_schema_refuses(setting: str, refusal: str) -> None:
    result = run_helm("template", "igw", str(CHART), "--set", setting)
    assert result.returncode != 0, f"{setting} was accepted"
    assert refusal in result.stderr


def _value_paths(values: dict[str, Any], prefix: str = "") -> dict[str, bool]:
    """Every key path of values.yaml -> whether it is a leaf (a value, or an empty map)."""
    paths = {}
    for key, value in values.items():
        path = f"{prefix}{key}"
        paths[path] = not (isinstance(value, dict) and value)
        if isinstance(value, dict):
            paths |= _value_paths(value, f"{path}.")
    return paths


def test_the_chart_readme_documents_every_value() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    paths = _value_paths(values)
    readme = (CHART / "README.md").read_text()
    table = readme[readme.index("## Values") :]
    first_cells = re.findall(r"^\| (`[^|]+) \|", table, flags=re.MULTILINE)
    documented = {name for cell in first_cells for name in re.findall(r"`([A-Za-z0-9_.]+)`", cell)}
    unknown = documented - paths.keys()
    assert not unknown, f"the README documents values that do not exist: {sorted(unknown)}"
    # Sections are documented key by key; Kubernetes' own structures and extraConfig as a whole.
    whole = {"extraConfig", "podSecurityContext", "securityContext"}
    sections = {key for key, value in values.items() if isinstance(value, dict)} - whole
    assert not documented & sections, "document the keys inside a section, not the section"
    # Each value is documented itself or through the map that holds it (e.g. api.resources).
    leaves = {path for path, leaf in paths.items() if leaf}
    undocumented = {
        p for p in leaves if not any(p == d or p.startswith(f"{d}.") for d in documented)
    }
    assert not undocumented, f"values missing from the chart README's table: {sorted(undocumented)}"

"""The Helm chart as Kubernetes would read it: render with the real helm, then resolve each
container's command, environment, ports and probes the way the kubelet does (envFrom in order, then
env).

Only `app.settings.Settings` is imported from the service, to know which environment variables it
reads.
"""

from __future__ import annotations

import base64
import os
import subprocess
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "invoicing-gateway"
CI_VALUES = sorted((CHART / "ci").glob("*.yaml"))
RELEASE = "igw"
NAMESPACE = "invoicing"

# Settings the chart renders before the service reads them: issue 10 (workload identity) adds
# OIDC_PROVIDERS with this name and shape; until then pydantic-settings ignores it.
NOT_YET_SETTINGS = frozenset({"OIDC_PROVIDERS"})


@cache
def helm() -> str:
    """The pinned helm, installed by scripts/install_helm.sh (idempotent) into .cache/helm."""
    result = subprocess.run(
        [str(ROOT / "scripts" / "install_helm.sh")], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, f"scripts/install_helm.sh failed:\n{result.stderr}"
    return result.stdout.strip().splitlines()[-1]


def helm_env() -> dict[str, str]:
    home = ROOT / ".cache" / "helm"
    return {
        **os.environ,
        "HELM_CACHE_HOME": str(home / "cache"),
        "HELM_CONFIG_HOME": str(home / "config"),
        "HELM_DATA_HOME": str(home / "data"),
    }


def run_helm(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [helm(), *args], capture_output=True, text=True, timeout=120, env=helm_env()
    )


def render(*values: Path) -> list[dict[str, Any]]:
    """`helm template` with these values files (later ones win), as a list of objects."""
    args = ["template", RELEASE, str(CHART), "--namespace", NAMESPACE]
    for path in values:
        args += ["-f", str(path)]
    result = run_helm(*args)
    assert result.returncode == 0, f"helm template failed:\n{result.stderr}"
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def known_env_names() -> frozenset[str]:
    """Every environment variable the service reads: the Settings fields (case-insensitive, no
    prefix)."""
    from app.settings import Settings

    config = Settings.model_config
    assert not config.get("env_prefix"), (
        "Settings gained an env_prefix: update the chart and this test"
    )
    return frozenset(name.upper() for name in Settings.model_fields) | NOT_YET_SETTINGS


def find(objects: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    matches = [
        o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)
    ]
    assert len(matches) == 1, f"expected one {kind} {name or ''}, found {len(matches)}"
    return matches[0]


def all_of(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


def component(obj: dict[str, Any]) -> str:
    return str(obj["metadata"]["labels"].get("app.kubernetes.io/component", ""))


def workload(objects: list[dict[str, Any]], kind: str, comp: str) -> dict[str, Any]:
    matches = [o for o in all_of(objects, kind) if component(o) == comp]
    assert len(matches) == 1, f"expected one {kind} for {comp}, found {len(matches)}"
    return matches[0]


def secret_data(secret: dict[str, Any]) -> dict[str, str]:
    """A Secret's values as the container sees them: data (base64) overlaid by stringData."""
    data = {
        key: base64.b64decode(value).decode() for key, value in (secret.get("data") or {}).items()
    }
    data.update({key: str(value) for key, value in (secret.get("stringData") or {}).items()})
    return data


@dataclass(frozen=True)
class Probe:
    kind: str  # startupProbe, livenessProbe, readinessProbe
    port: int
    path: str
    period: int
    failures: int

    @property
    def budget_seconds(self) -> int:
        return self.period * self.failures


@dataclass
class Container:
    """One container of a rendered pod, resolved: what the kubelet would start."""

    owner: str
    argv: list[str]
    env: dict[str, str]
    ports: dict[str, int]
    probes: list[Probe]
    grace_seconds: int
    env_sources: dict[str, str] = field(default_factory=dict)  # name -> where it came from


def _lookup(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, str]:
    obj = find(objects, kind, name)
    return (
        secret_data(obj)
        if kind == "Secret"
        else {k: str(v) for k, v in (obj.get("data") or {}).items()}
    )


def resolve(objects: list[dict[str, Any]], pod_owner: dict[str, Any]) -> Container:
    """The single container of a Deployment or Job, with env resolved from the rendered objects.

    `objects` must hold every ConfigMap and Secret the pod refers to (a test adds the
    existingSecret).
    A reference that does not resolve fails, as the kubelet would refuse to start the container.
    """
    pod = pod_owner["spec"]["template"]["spec"]
    assert len(pod["containers"]) == 1, "one container per pod"
    spec = pod["containers"][0]
    env: dict[str, str] = {}
    sources: dict[str, str] = {}
    for source in spec.get("envFrom", []):
        if "configMapRef" in source:
            kind, name = "ConfigMap", source["configMapRef"]["name"]
        else:
            kind, name = "Secret", source["secretRef"]["name"]
        for key, value in _lookup(objects, kind, name).items():
            env[key], sources[key] = value, f"{kind}/{name}"
    for item in spec.get("env", []):  # explicit entries override envFrom, as in Kubernetes
        if "value" in item:
            env[item["name"]], sources[item["name"]] = str(item["value"]), "env"
            continue
        ref = item["valueFrom"]
        if "secretKeyRef" in ref:
            kind, key_ref = "Secret", ref["secretKeyRef"]
        else:
            kind, key_ref = "ConfigMap", ref["configMapKeyRef"]
        data = _lookup(objects, kind, key_ref["name"])
        assert key_ref["key"] in data, (
            f"{item['name']}: {kind}/{key_ref['name']} has no key {key_ref['key']}"
        )
        env[item["name"]], sources[item["name"]] = (
            data[key_ref["key"]],
            f"{kind}/{key_ref['name']}[{key_ref['key']}]",
        )
    argv = [*spec.get("command", []), *spec.get("args", [])]
    # Kubernetes expands $(VAR) in command and args; the chart uses none, so none may appear.
    assert not any("$(" in arg for arg in argv), argv
    ports = {p["name"]: int(p["containerPort"]) for p in spec.get("ports", [])}
    probes = []
    for kind in ("startupProbe", "livenessProbe", "readinessProbe"):
        if kind in spec:
            probe = spec[kind]
            port = probe["httpGet"]["port"]
            probes.append(
                Probe(
                    kind,
                    ports[port] if isinstance(port, str) else int(port),
                    probe["httpGet"]["path"],
                    int(probe.get("periodSeconds", 10)),
                    int(probe.get("failureThreshold", 3)),
                )
            )
    return Container(
        owner=f"{pod_owner['kind']}/{pod_owner['metadata']['name']}",
        argv=argv,
        env=env,
        ports=ports,
        probes=probes,
        grace_seconds=int(pod.get("terminationGracePeriodSeconds", 30)),
        env_sources=sources,
    )

# One command surface: CI (.ci/run) runs `make test`, the README's run command is `make run`.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
# Where `pip install uv` puts uv, even before a pyenv rehash made a shim for it.
export PATH := $(PATH):$(shell $(PYTHON) -c 'import sysconfig; print(sysconfig.get_path("scripts"))')
# Root on our machines; anywhere else apt-get needs sudo.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: help install db test-deps lint format typecheck openapi openapi-check chart-check test image contract-fuzz run \
	bench-client bench-api bench-deps bench bench-receivables reliability soak

CHART := helm/invoicing-gateway
# The oldest Kubernetes the chart supports (Chart.yaml kubeVersion) and the newest kubernetes-validate knows.
KUBE_VERSIONS := 1.29.0 1.37.0
# helm keeps its caches and configuration inside the repository (gitignored), not in $HOME.
HELM_HOME := $(CURDIR)/.cache/helm
export HELM_CACHE_HOME := $(HELM_HOME)/cache
export HELM_CONFIG_HOME := $(HELM_HOME)/config
export HELM_DATA_HOME := $(HELM_HOME)/data
IMAGE ?= localhost/invoicing-gateway:dev
BASE_IMAGE ?= localhost/invoicing-gateway-base:bookworm
# No Docker engine here: buildah with chroot isolation and the vfs storage driver.
BUILDAH := STORAGE_DRIVER=vfs BUILDAH_ISOLATION=chroot buildah

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

install: ## install uv if missing, then the locked environment
	@command -v uv >/dev/null 2>&1 || $(PYTHON) -m pip install --quiet uv
	uv sync --locked

db: ## start the local PostgreSQL if it does not answer
	@if ! pg_isready -q -h 127.0.0.1; then \
		for v in $$(ls /etc/postgresql); do pg_ctlcluster --skip-systemctl-redirect $$v main start; done; \
		for _ in $$(seq 60); do pg_isready -q -h 127.0.0.1 && break; sleep 0.5; done; \
		pg_isready -h 127.0.0.1; \
	fi

test-deps: ## install what some tests drive for real if missing: chromium (Swagger UI), pgbouncer, npm (helm), wrk (bench)
	@missing=""; \
	command -v wrk >/dev/null 2>&1 || missing="$$missing wrk"; \
	[ -x /usr/bin/chromium ] || missing="$$missing chromium"; \
	[ -x /usr/sbin/pgbouncer ] || missing="$$missing pgbouncer"; \
	command -v npm >/dev/null 2>&1 || missing="$$missing npm"; \
	if [ -n "$$missing" ]; then \
		$(SUDO) apt-get update -q && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q --no-install-recommends $$missing; \
	fi

lint: install ## ruff (checks and the formatter) and the import contracts that encode the layering
	uv run ruff check app tests bench scripts migrations reliability
	uv run ruff format --check app tests bench scripts migrations reliability
	uv run lint-imports

format: install ## apply ruff format and the fixable ruff checks
	uv run ruff format app tests bench scripts migrations reliability
	uv run ruff check --fix app tests bench scripts migrations reliability

typecheck: install ## mypy --strict on app/
	uv run mypy

openapi: install ## regenerate openapi/openapi.json from the code
	uv run invoicing-gateway openapi --output openapi/openapi.json

openapi-check: install ## fail if openapi/openapi.json differs from what the code generates
	@generated=$$(mktemp); trap 'rm -f "$$generated"' EXIT; \
	uv run invoicing-gateway openapi --output "$$generated"; \
	diff -u openapi/openapi.json "$$generated" \
		|| { echo "openapi/openapi.json is stale: run 'make openapi' and commit it" >&2; exit 1; }

chart-check: install ## hadolint the Dockerfile; helm lint --strict, template, kubernetes-validate --strict per values file
	uv run hadolint Dockerfile
	@helm=$$(scripts/install_helm.sh); rendered=$$(mktemp -d); trap 'rm -rf "$$rendered"' EXIT; \
	for values in "" $(CHART)/ci/*.yaml; do \
		name=$$(basename "$${values:-default}" .yaml); \
		echo "helm lint --strict, helm template: $${values:-default values}"; \
		"$$helm" lint --strict --quiet $(CHART) $${values:+-f "$$values"}; \
		"$$helm" template igw $(CHART) $${values:+-f "$$values"} > "$$rendered/$$name.yaml"; \
	done; \
	for version in $(KUBE_VERSIONS); do \
		echo "kubernetes-validate --strict -k $$version"; \
		uv run kubernetes-validate --strict --quiet --no-warn -k "$$version" "$$rendered"/*.yaml; \
	done
	@# ServiceMonitor and PrometheusRule have no schema there; tests/deploy checks their ports and series.

test: install db test-deps ## the whole suite (what .ci/run runs): lint, types, OpenAPI check, chart checks, pytest
	$(MAKE) --no-print-directory lint
	uv run mypy
	$(MAKE) --no-print-directory openapi-check
	$(MAKE) --no-print-directory chart-check
	uv run pytest -q

image: db ## build the image with buildah on a debootstrap base, then start it once (migrate, /livez, /readyz)
	@command -v buildah >/dev/null 2>&1 && command -v debootstrap >/dev/null 2>&1 || { \
		$(SUDO) apt-get update -q && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q --no-install-recommends buildah debootstrap; }
	$(SUDO) scripts/build_base_image.sh $(BASE_IMAGE)
	@# The host's CA bundle as a build secret: downloads behind a TLS-inspecting proxy verify, and it
	@# stays out of the image.
	$(SUDO) $(BUILDAH) build --layers --pull=never --build-arg BASE_IMAGE=$(BASE_IMAGE) \
		--build-arg REVISION=$$(git rev-parse --short HEAD) \
		--secret id=ca-certificates,src=/etc/ssl/certs/ca-certificates.crt -t $(IMAGE) .
	$(SUDO) scripts/smoke_image.sh $(IMAGE)
	@$(SUDO) $(BUILDAH) images --format '{{.Name}}:{{.Tag}} {{.Size}}' $(IMAGE) 2>/dev/null || true

run: ## API + relay + simulator on the local PostgreSQL (Ctrl-C stops them)
	$(PYTHON) scripts/run_local.py

bench-client: install db ## client/simulator benchmark
	uv run python -m bench.bench_client

bench-api: install db ## HTTP API end to end (api --with-relay, simulator, PostgreSQL)
	uv run python -m bench.bench_api

contract-fuzz: install db ## schemathesis with fresh random examples (200 per route; the suite uses fixed ones)
	CONTRACT_FUZZ=1 CONTRACT_EXAMPLES=$${CONTRACT_EXAMPLES:-200} uv run pytest -q tests/contract

bench-deps: ## install wrk (the load generator of make bench) if missing
	@command -v wrk >/dev/null 2>&1 || { $(SUDO) apt-get update -q && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q --no-install-recommends wrk; }

bench: install db bench-deps ## every scenario of issue 14 beside its baselines; BENCH_QUICK=1: about a minute
	uv run python -m bench.run
	$(MAKE) --no-print-directory bench-receivables

bench-receivables: install db ## receivables filters and sorts on 1,000,000 invoices (BENCH_RECEIVABLES_ROWS)
	uv run python -m bench.bench_receivables

# The suite starts its own PostgreSQL cluster (the machine's binaries, /usr/lib/postgresql/15/bin) on a
# port of its own: it needs no `db`, and kills that cluster, never the shared one.
reliability: install ## two APIs, two relays, the simulator, a private PostgreSQL: six fault scenarios (reliability/results.json)
	uv run python -m reliability

soak: install ## the first three reliability scenarios at ten times the size (reliability/soak.json)
	uv run python -m reliability --soak

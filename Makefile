# One command surface: CI (.ci/run) runs `make test`, the README's run command is `make run`.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
# Where `pip install uv` puts uv, even before a pyenv rehash made a shim for it.
export PATH := $(PATH):$(shell $(PYTHON) -c 'import sysconfig; print(sysconfig.get_path("scripts"))')
# Root on our machines; anywhere else apt-get needs sudo.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: help install db test-deps lint typecheck openapi openapi-check test contract-fuzz run bench-client bench-api bench

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

test-deps: ## install what some tests drive for real if missing: chromium (Swagger UI), pgbouncer
	@missing=""; \
	[ -x /usr/bin/chromium ] || missing="$$missing chromium"; \
	[ -x /usr/sbin/pgbouncer ] || missing="$$missing pgbouncer"; \
	if [ -n "$$missing" ]; then \
		$(SUDO) apt-get update -q && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q --no-install-recommends $$missing; \
	fi

lint: install ## ruff
	uv run ruff check app tests bench

typecheck: install ## mypy --strict on app/
	uv run mypy

openapi: install ## regenerate openapi/openapi.json from the code
	uv run invoicing-gateway openapi --output openapi/openapi.json

openapi-check: install ## fail if openapi/openapi.json differs from what the code generates
	@generated=$$(mktemp); trap 'rm -f "$$generated"' EXIT; \
	uv run invoicing-gateway openapi --output "$$generated"; \
	diff -u openapi/openapi.json "$$generated" \
		|| { echo "openapi/openapi.json is stale: run 'make openapi' and commit it" >&2; exit 1; }

test: install db test-deps ## the whole suite (what .ci/run runs): lint, types, OpenAPI check, pytest
	uv run ruff check app tests bench
	uv run mypy
	$(MAKE) --no-print-directory openapi-check
	uv run pytest -q

run: ## API + relay + simulator on the local PostgreSQL (Ctrl-C stops them)
	$(PYTHON) scripts/run_local.py

bench-client: install db ## client/simulator benchmark
	uv run python -m bench.bench_client

bench-api: install db ## HTTP API end to end (api --with-relay, simulator, PostgreSQL)
	uv run python -m bench.bench_api

contract-fuzz: install db ## schemathesis with fresh random examples (200 per route; the suite uses fixed ones)
	CONTRACT_FUZZ=1 CONTRACT_EXAMPLES=$${CONTRACT_EXAMPLES:-200} uv run pytest -q tests/contract

bench: install db ## every benchmark in bench/bench_*.py
	@for module in bench/bench_*.py; do \
		[ -e "$$module" ] || { echo "no benchmarks in bench/" >&2; exit 1; }; \
		name=$$(basename "$$module" .py); echo "==> bench.$$name"; \
		uv run python -m "bench.$$name"; \
	done

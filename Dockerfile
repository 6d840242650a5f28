# The invoicing-gateway image: one image for `api`, `relay`, `migrate` and `simulator`; the command
# chooses (the Helm chart sets it for each container). `make image` builds it with buildah.
#
# BASE_IMAGE must carry CPython 3.11 with its venv module, at the same path in both stages, because the
# virtual environment points at that interpreter. Where a registry is reachable the official slim image
# does; our machines reach none, so `make image` builds a Debian 12 base with debootstrap
# (scripts/build_base_image.sh) and passes it in.
ARG BASE_IMAGE=docker.io/library/python:3.11-slim-bookworm

FROM ${BASE_IMAGE} AS builder
ARG UV_VERSION=0.13.9
# Compiled bytecode in the image (the runtime root filesystem is read-only, so it could not be written
# later); no uv cache in the layer; the base's Python, never a downloaded one.
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_NO_CACHE=1 \
    UV_PYTHON_DOWNLOADS=never \
    UV_PYTHON=python3.11
# The steps that download take the building host's CA bundle when it is given as a build secret
# (`--secret id=ca-certificates,src=/etc/ssl/certs/ca-certificates.crt`, as `make image` does), so a
# build behind a TLS-inspecting proxy reaches PyPI; the bundle is mounted for the step only and never
# lands in a layer. uv lives in its own throwaway environment: only this stage has it.
RUN --mount=type=secret,id=ca-certificates \
    if [ -s /run/secrets/ca-certificates ]; then export PIP_CERT=/run/secrets/ca-certificates; fi \
    && python3 -m venv /opt/uv \
    && /opt/uv/bin/pip install --no-cache-dir "uv==${UV_VERSION}"
WORKDIR /app
# The locked dependencies first: this layer is reused until pyproject.toml or uv.lock change.
COPY pyproject.toml uv.lock ./
RUN --mount=type=secret,id=ca-certificates \
    if [ -s /run/secrets/ca-certificates ]; then export SSL_CERT_FILE=/run/secrets/ca-certificates; fi \
    && /opt/uv/bin/uv sync --locked --no-dev --no-install-project
# The project, installed editable: `migrate` finds alembic.ini and migrations/ next to app/.
COPY README.md alembic.ini ./
COPY migrations ./migrations
COPY app ./app
RUN --mount=type=secret,id=ca-certificates \
    if [ -s /run/secrets/ca-certificates ]; then export SSL_CERT_FILE=/run/secrets/ca-certificates; fi \
    && /opt/uv/bin/uv sync --locked --no-dev \
    && .venv/bin/python -m compileall -q app migrations

FROM ${BASE_IMAGE}
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="invoicing-gateway" \
      org.opencontainers.image.description="REST facade in front of the Cybersource Invoicing API: API, outbox relay, migrations, simulator" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"
# HOME in /tmp: the only writable place when Kubernetes mounts the root filesystem read-only.
ENV PATH="/app/.venv/bin:${PATH}" \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp
WORKDIR /app
# Owned by root and read-only to the service user: the process cannot change its own code.
COPY --from=builder /app /app
# Numeric, so Kubernetes' runAsNonRoot can verify it without a passwd entry.
USER 10001:10001
EXPOSE 8080 9101
ENTRYPOINT ["invoicing-gateway"]
CMD ["api", "--host", "0.0.0.0", "--port", "8080"]

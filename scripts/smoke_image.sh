#!/usr/bin/env bash
# Starts the built image once, as `make image` promises: `migrate` against a throwaway database on the
# local PostgreSQL, then `api`, which must answer /livez and /readyz. No Docker engine or Kubernetes
# here, so `buildah run` (chroot isolation, the host's network) runs the image's own entrypoint,
# user and environment.
set -euo pipefail

image="${1:?usage: smoke_image.sh IMAGE}"
export STORAGE_DRIVER="${STORAGE_DRIVER:-vfs}" BUILDAH_ISOLATION="${BUILDAH_ISOLATION:-chroot}"
database="igw_image_smoke_$(date +%s)_$$"
port="${SMOKE_PORT:-18080}"

container="$(buildah from --pull=never "$image")"
cleanup() {
    buildah rm "$container" >/dev/null 2>&1 || true
    psql -q -h 127.0.0.1 -U postgres -d postgres -c "DROP DATABASE IF EXISTS \"$database\" WITH (FORCE)" || true
}
trap cleanup EXIT

# One `buildah run`, so the server never outlives the check: start it, poll, stop it.
buildah run --env "DATABASE_URL=postgresql://postgres@127.0.0.1:5432/$database" "$container" -- sh -ec "
    echo \"running as uid \$(id -u), python \$(python3 -c 'import sys; print(sys.version.split()[0])')\"
    invoicing-gateway migrate
    invoicing-gateway api --host 127.0.0.1 --port $port &
    server=\$!
    trap 'kill -TERM \$server 2>/dev/null || true' EXIT
    python3 - <<'PY'
import json, time, urllib.request
deadline = time.monotonic() + 30
for path in ('/livez', '/readyz'):
    while True:
        try:
            with urllib.request.urlopen('http://127.0.0.1:$port' + path, timeout=2) as answer:
                print(path, answer.status, json.load(answer))
                break
        except OSError as exc:
            if time.monotonic() > deadline:
                raise SystemExit(f'{path} did not answer: {exc}')
            time.sleep(0.3)
PY
"
echo "image $image: migrate, /livez and /readyz OK"

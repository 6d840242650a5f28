#!/usr/bin/env bash
# Builds the image's base, $1 (default localhost/invoicing-gateway-base:bookworm): Debian 12 (minbase)
# with python3.11, python3-venv and CA certificates, from Debian's mirror with debootstrap.
#
# Why: no container registry is reachable from our machines, so `FROM python:3.11-slim` cannot be
# pulled; Debian's mirror is reachable. Skipped when the image exists (delete it with
# `buildah rmi` to refresh the base's security updates).
set -euo pipefail

image="${1:-localhost/invoicing-gateway-base:bookworm}"
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
export STORAGE_DRIVER="${STORAGE_DRIVER:-vfs}" BUILDAH_ISOLATION="${BUILDAH_ISOLATION:-chroot}"

if buildah inspect --type image "$image" >/dev/null 2>&1; then
    echo "base image $image exists"
    exit 0
fi

container="$(buildah from scratch)"
trap 'buildah rm "$container" >/dev/null 2>&1 || true' EXIT
root="$(buildah mount "$container")"
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
    bookworm "$root" "$mirror"
# debootstrap installs from the release alone; add the security and point-release suites and upgrade.
cat > "$root/etc/apt/sources.list" <<SOURCES
deb $mirror bookworm main
deb $mirror bookworm-updates main
deb ${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security} bookworm-security main
SOURCES
buildah umount "$container" >/dev/null
buildah run "$container" -- sh -c 'apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get upgrade -y -q \
    && apt-get clean && rm -rf /var/lib/apt/lists/* /var/cache/debconf/*-old /var/log/*.log /usr/share/doc/* /usr/share/man/*'
buildah config --env LANG=C.UTF-8 --cmd '["python3"]' \
    --label org.opencontainers.image.description="Debian 12 minbase with python3.11 (debootstrap)" "$container"
buildah commit --quiet "$container" "$image" >/dev/null
echo "built base image $image"

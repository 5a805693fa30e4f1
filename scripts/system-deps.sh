#!/usr/bin/env bash
# From Debian's packages: Prometheus and promtool (the native runner, the rule tests), Redis (the gateway
# workers' shared state in the native runner), nginx with its njs module (the gateway's front door in the native
# runner) and PostgreSQL (the key store in the native runner).
set -euo pipefail
njs=/usr/lib/nginx/modules/ngx_http_js_module.so  # src/llmfleet/render/door.py JS_MODULE
if command -v prometheus >/dev/null && command -v promtool >/dev/null && command -v redis-server >/dev/null \
   && command -v nginx >/dev/null && [ -e "$njs" ] && compgen -G '/usr/lib/postgresql/*/bin/postgres' >/dev/null; then
  exit 0
fi
if ! command -v apt-get >/dev/null; then
  echo "Prometheus, Redis, nginx, njs or PostgreSQL is missing and this is not a Debian host: install prometheus," \
       "promtool 2.x, redis-server, nginx with njs ($njs) and a PostgreSQL server yourself (POSTGRES_BIN_DIR names" \
       "its bin folder)." >&2
  exit 1
fi
sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
echo "Installing Prometheus, Redis, nginx and PostgreSQL from Debian's packages ..."
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends prometheus redis-server >/dev/null
missing=()
command -v nginx >/dev/null || missing+=(nginx-light)
[ -e "$njs" ] || missing+=(libnginx-mod-http-js)
compgen -G '/usr/lib/postgresql/*/bin/postgres' >/dev/null || missing+=(postgresql)
if [ ${#missing[@]} -gt 0 ]; then
  # Debian's nginx and PostgreSQL start a server (on ports 80 and 5432) as they install; ours run with their own
  # configs on GATEWAY_PORT and POSTGRES_PORT. A policy-rc.d that refuses service starts, for this one install only,
  # keeps those ports as they were.
  policy=${POLICY_RC_D:-/usr/sbin/policy-rc.d}
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" >/dev/null && $sudo chmod 755 "$policy"
    trap '$sudo rm -f "$policy"' EXIT
  fi
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# Debian's packages may enable system services. They are left as they are: the host may rely on a Redis or
# Prometheus already running, and our runners start their own, on their own ports and run dirs.

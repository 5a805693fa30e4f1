#!/usr/bin/env bash
# A Docker engine of our own for tests and CI: its own socket, data root and pid file, so a system engine is never
# touched. `run -- CMD...` uses the engine that answers (DOCKER_HOST or the default socket) or starts ours, runs CMD
# with DOCKER_HOST set, and stops the engine it started, by pid, whatever CMD's outcome.
# Images persist in the data root (~/.cache/llmfleet/docker), so a second run reuses them.
set -euo pipefail
state=${LLMFLEET_DOCKER_STATE:-$HOME/.cache/llmfleet/docker}
run=/run/llmfleet-docker
sock="unix://$run/docker.sock"

engine_answers() { timeout 10 docker ${1:+-H "$1"} info >/dev/null 2>&1; }

start() {
  mkdir -p "$state" "$run"
  # iptables off: the engine must not rewrite the host's firewall. Loopback port publishing still works.
  setsid dockerd --data-root "$state/data" --exec-root "$run/exec" --host "$sock" --pidfile "$run/dockerd.pid" \
    --iptables=false --ip-masq=false >"$run/dockerd.log" 2>&1 </dev/null &
  for _ in $(seq 60); do
    engine_answers "$sock" && return 0
    sleep 1
  done
  echo "dockerd did not answer within 60 s; its log:" >&2
  tail -20 "$run/dockerd.log" >&2
  stop
  return 1
}

stop() {
  [ -f "$run/dockerd.pid" ] || return 0
  pid=$(cat "$run/dockerd.pid")
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 60); do
    kill -0 "$pid" 2>/dev/null || { rm -f "$run/dockerd.pid"; return 0; }
    sleep 1
  done
  kill -9 "$pid" 2>/dev/null || true
  rm -f "$run/dockerd.pid"
}

case "${1:-}" in
  start) engine_answers "$sock" || start; echo "$sock" ;;
  stop) stop ;;
  run)
    shift; [ "${1:-}" = "--" ] && shift
    if [ -n "${DOCKER_HOST:-}" ] && engine_answers "$DOCKER_HOST"; then exec "$@"; fi
    if engine_answers ""; then exec "$@"; fi
    if engine_answers "$sock"; then DOCKER_HOST=$sock exec "$@"; fi
    start
    trap stop EXIT
    DOCKER_HOST=$sock "$@"
    ;;
  *) echo "usage: $0 start|stop|run -- COMMAND..." >&2; exit 2 ;;
esac

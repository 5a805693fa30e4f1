"""The router: SMG (smg 1.13.0, requirements/router.in), one per fleet, in front of every vLLM server.

Chosen in issue 15's bake-off (benchmarks/gateway.md): it picks the less loaded of two backends from the engines'
own /metrics (running and waiting requests, KV cache), polled every second, retries a request that failed before
its first byte on another backend, takes a backend that stops answering its health check out and brings it back,
and streams without passing tokens through Python. One process serves every model group: a request goes to the
backends whose vLLM serves its `model`, and an unknown model is a 404 naming it.

Each runner starts `router/launch.py` with these arguments, in the router's own environment (runtimes.ROUTER, or
its image); the launcher adds the backends' key from VLLM_API_KEY, so no command line shows it. The front door
sends it the completions of keys whose lane is `router` (render/door.py).
"""

from __future__ import annotations

from llmfleet.plan.serving import BACKEND_MAX_BODY_MB

CONTAINER_PORT = 4002  # its port inside its container (Compose service `router`, Kubernetes Service `router`)
CONTAINER_METRICS_PORT = 4003
LAUNCHER = "launch.py"  # router/launch.py: every runner ships it beside nothing else
# How often the engines' load is read, and how fast a backend that stops answering /health is taken out: two checks
# in a row a second late, so within 3 s (the LiteLLM lane's health checks take 5-15 s). Not one: on two shared cores
# both servers once answered a check late in the same second and SMG had none for a second (22 answers of 503,
# 2026-12-04). A frozen server gets no new stream sooner anyway: it sends no token while its queue grows (the wedge
# bound below), so the door's second try of a silent stream goes to another. A live vLLM answers /health from its API
# server, never behind the engine's work.
LOAD_POLL_S = 1
HEALTH_INTERVAL_S = 1
HEALTH_FAILURES = 2
HEALTH_TIMEOUT_S = 1
# A backend with requests in flight that has sent no token for this long, while its queue grows, gets no new ones
# until it sends one (SMG stretches the bound by the prefill its prompts still need). Its health checks pass when
# only its engine hangs (vLLM's API server answers /health), so this is what keeps the door's second try of a silent
# stream off it.
WORKER_WEDGE_S = 1
# An open stream that waits on the engine (a long prefill, a queue) carries an SSE comment every second, so the door
# hears from it and cuts only a stream that never opened. Clients skip comments, as the SSE spec says.
SSE_KEEPALIVE_S = 1
REQUEST_TIMEOUT_S = 600  # a whole completion, as the LiteLLM lane allows (gateway/config.yaml)


def arguments(backends: list[str], host: str, port: int, metrics_host: str, metrics_port: int) -> list[str]:
    """SMG's command-line arguments (after `launch`) for these backends (http://host:port each)."""
    return [
        "--host", host,
        "--port", str(port),
        "--worker-urls", *backends,
        # power-of-two on "expected wait": of two backends drawn, the one whose queue clears first.
        "--policy", "power_of_two",
        "--power-of-two-load-metric", "expected_wait",
        "--load-monitor-interval", str(LOAD_POLL_S),
        "--health-check-interval-secs", str(HEALTH_INTERVAL_S),
        "--health-failure-threshold", str(HEALTH_FAILURES),
        "--health-check-timeout-secs", str(HEALTH_TIMEOUT_S),
        "--request-timeout-secs", str(REQUEST_TIMEOUT_S),
        "--sse-keepalive-secs", str(SSE_KEEPALIVE_S),
        "--worker-wedge-secs", str(WORKER_WEDGE_S),
        # The door refuses bodies over GATEWAY_MAX_BODY_MB first; this is the backends' own bound.
        "--max-payload-size", str(BACKEND_MAX_BODY_MB * 2**20),
        "--prometheus-host", metrics_host,
        "--prometheus-port", str(metrics_port),
        "--log-level", "warn",
    ]  # fmt: skip


def container_arguments(backends: list[str]) -> list[str]:
    """In a container (Compose, Kubernetes): every interface of its own network namespace, fixed ports."""
    return arguments(backends, "0.0.0.0", CONTAINER_PORT, "0.0.0.0", CONTAINER_METRICS_PORT)  # noqa: S104

"""Issue 15's bake-off, run by hand beside a running native stack: three native routers and a random baseline,
each behind the same nginx front as the product's door (key checked against LiteLLM with auth_request, cached 10 s;
the client's key replaced by the backends'), so that only the router differs.

    client ─► nginx :P   ─► SMG 1.13.0          (power_of_two on vLLM's own /metrics, polled every second) ─┐
    client ─► nginx :P+1 ─► vllm-router 0.1.17  (round_robin: its power_of_two is random against vLLM)     ├─► vLLM
    client ─► nginx :P+2 ─► HAProxy 2.6         (leastconn, active /health checks, retry-on, redispatch)   │
    client ─► nginx :P+3 ─► SMG, random         (the routing goal's baseline: simple-shuffle, fast path)  ─┘

    apt-get install nginx-light haproxy
    python3.11 -m venv /opt/bakeoff && /opt/bakeoff/bin/pip install --require-hashes --no-deps \\
        -r requirements/bakeoff.txt
    llmfleet up --plan cpu-tiny --runner native
    .venv/bin/python benchmarks/router_bakeoff.py --bin /opt/bakeoff/bin &       # prints the bench command
    .venv/bin/python benchmarks/router_bakeoff.py --bin /opt/bakeoff/bin --drills   # sequential spread, freeze

`--drills` starts the same routers, then for each: sequential requests (does every backend get its share?), one
backend frozen with SIGSTOP (how many requests fail or wait, and is it taken out?), and the same backend resumed
(is it brought back?); then one backend killed (are requests retried on the other before their first byte, does
/v1/models still answer?) and restarted (is it brought back?). It prints Markdown tables for
benchmarks/gateway.md. For the routing goal, make the backends unequal first (one with a quarter of the other's
--max-num-seqs: edit its argv in .run/state.json, then `llmfleet restart NAME`) and compare each router's p99 TTFT
with shuffle's. Not part of the stack.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from llmfleet.run import procs
from llmfleet.run.state import Started, running_state
from llmfleet.secrets import read_secrets
from llmfleet.settings import load_settings

# "shuffle" is SMG choosing at random: the baseline of the routing goal (LiteLLM's simple-shuffle, on the fast path).
CANDIDATES = ("smg", "vllm-router", "haproxy", "shuffle")

NGINX_HTTP = """\
{user}
worker_processes 1;
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    proxy_cache_path {dir}/auth-cache keys_zone=auth:1m max_size=8m inactive=60s;
    upstream litellm {{ server 127.0.0.1:{litellm_port}; keepalive 32; }}
{servers}
}}
"""

NGINX_SERVER = """\
    upstream {name} {{ server 127.0.0.1:{router_port}; keepalive 256; }}
    server {{
        listen 127.0.0.1:{port};
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        location = /_auth {{
            internal;
            proxy_pass http://litellm/v1/models;
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
            proxy_cache auth;
            proxy_cache_key $http_authorization;
            proxy_cache_valid 200 10s;
            proxy_cache_lock on;
            proxy_ignore_headers Cache-Control Expires Set-Cookie;
        }}
        location @unauthorized {{
            default_type application/json;
            return 401 '{{"error": {{"message": "invalid or missing key (Authorization: Bearer <key>)"}}}}';
        }}
        location ~ ^/v1/((chat/)?completions|models)$ {{
            auth_request /_auth;
            error_page 401 = @unauthorized;
            proxy_set_header Authorization "Bearer {backend_key}";
            proxy_pass http://{name};
            proxy_buffering off;
            proxy_read_timeout 600s;
        }}
    }}
"""

# L7 retries need the body in HAProxy's buffer (http-buffer-request); leastconn counts in-flight requests.
HAPROXY = """\
global
    maxconn 4096
    pidfile {dir}/haproxy.pid
defaults
    mode http
    timeout connect 2s
    timeout client 600s
    timeout server 600s
    timeout check 2s
    option http-buffer-request
    option http-no-delay
    retries 2
    retry-on conn-failure empty-response response-timeout 503
    option redispatch
frontend routers
    bind 127.0.0.1:{port}
    default_backend vllm
backend vllm
    balance leastconn
    option httpchk GET /health
    http-check expect status 200
    default-server inter 2s fall 2 rise 2
{servers}
"""


@dataclass
class Candidate:
    name: str
    front: int  # nginx's port for it
    router: int  # the router's own port


def router_command(candidate: Candidate, bin_dir: Path, backends: list[str], work: Path, key: str) -> list[str]:
    # The two Rust routers share these flags: the same listener, health checks and metrics port for each.
    common = ["--host", "127.0.0.1", "--port", str(candidate.router), "--worker-urls", *backends,
              "--health-check-interval-secs", "2", "--health-failure-threshold", "2", "--health-check-timeout-secs",
              "2", "--prometheus-host", "127.0.0.1", "--prometheus-port", str(candidate.router + 100)]  # fmt: skip
    if candidate.name in ("smg", "shuffle"):
        policy = ["--policy", "power_of_two", "--power-of-two-load-metric", "expected_wait", "--load-monitor-interval",
                  "1"] if candidate.name == "smg" else ["--policy", "random"]  # fmt: skip
        return [str(bin_dir / "smg"), "launch", *common, *policy, "--api-key", key, "--log-level", "warn"]
    if candidate.name == "vllm-router":
        return [str(bin_dir / "vllm-router"), *common, "--policy", "round_robin", "--log-level", "warning"]
    servers = "\n".join(f"    server b{i} {url.removeprefix('http://')} check" for i, url in enumerate(backends))
    conf = work / "haproxy.cfg"
    conf.write_text(HAPROXY.format(dir=work, port=candidate.router, servers=servers))
    return ["haproxy", "-db", "-f", str(conf)]


@contextmanager
def fronted_routers(bin_dir: Path, port: int) -> Iterator[tuple[list[Candidate], list[Started], dict[str, str]]]:
    """The three candidates behind one nginx, up until the block ends; the running stack's backends and keys."""
    settings = load_settings()
    state = running_state(settings, "route", "router_bakeoff.py")
    keys = read_secrets(settings.secrets_file)
    backends = [s for s in state.running() if s.name.startswith("vllm-")]
    litellm = next(s for s in state.running() if s.name == "gateway")
    urls = [f"http://127.0.0.1:{s.port}" for s in backends]
    candidates = [Candidate(name, port + i, port + 10 + i) for i, name in enumerate(CANDIDATES)]
    work = Path(tempfile.mkdtemp(prefix="router-bakeoff-"))  # 0700: the configs hold the backends' key
    servers = "".join(
        NGINX_SERVER.format(name=c.name.replace("-", "_"), port=c.front, router_port=c.router,
                            backend_key=keys["VLLM_API_KEY"])
        for c in candidates
    )  # fmt: skip
    conf = work / "nginx.conf"
    conf.write_text(
        NGINX_HTTP.format(
            user="user nobody nogroup;" if os.geteuid() == 0 else "",
            dir=work,
            litellm_port=litellm.port,
            servers=servers,
        )
    )
    if os.geteuid() == 0:  # nginx's workers run as nobody: they need the cache and temp folders, never the config
        work.chmod(0o711)
        conf.chmod(0o600)
        for folder in ("auth-cache", "body", "proxy"):
            (work / folder).mkdir()
            shutil.chown(work / folder, "nobody", "nogroup")
    processes = [
        subprocess.Popen(router_command(c, bin_dir, urls, work, keys["VLLM_API_KEY"]), stdout=subprocess.DEVNULL)
        for c in candidates
    ]
    processes.append(subprocess.Popen(["nginx", "-c", str(conf), "-p", str(work)]))
    try:
        headers = {"Authorization": f"Bearer {keys['LITELLM_MASTER_KEY']}"}
        for c in candidates:
            wait_for(f"http://127.0.0.1:{c.front}/v1/models", headers, processes)
        yield candidates, backends, keys
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=30)
        shutil.rmtree(work)  # the configs hold the backends' key


def wait_for(url: str, headers: dict[str, str], processes: list[subprocess.Popen[bytes]]) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if any(p.poll() is not None for p in processes):
            exited = [str(p.args) for p in processes if p.poll() is not None]
            sys.exit(f"a router or nginx exited while starting: {exited}")
        try:
            if httpx.get(url, headers=headers, timeout=5).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    sys.exit(f"{url} did not answer 200 in 120 s")


PROMPT_TOKENS = re.compile(r"^vllm:prompt_tokens_total\{[^}]*\} ([0-9.e+]+)$", re.M)
# A long prompt tells the drill's requests from LiteLLM's health checks (a one-word prompt every 5 s) on the servers'
# own counters: a server's share is its prompt tokens over one request's, rounded down.
PROMPT = "Count the requests. " * 100


def prompt_tokens(backend: Started) -> float:
    """How many prompt tokens a vLLM server has taken in, from its own /metrics."""
    page = httpx.get(f"http://127.0.0.1:{backend.port}/metrics", timeout=10).text
    return sum(float(v) for v in PROMPT_TOKENS.findall(page))


@dataclass
class Burst:
    per_backend: list[int]
    failures: int
    latencies: list[float]


def sequential(url: str, key: str, count: int, counted: list[Started], timeout: float = 30) -> Burst:
    """`count` requests one after another, as one user sends them; each counted server's share counted on the
    server (a frozen one cannot answer its /metrics, so it is left out of `counted`)."""
    before = [prompt_tokens(b) for b in counted]
    failures, latencies, per_request = 0, [], 0
    body = {"model": "fleet-tiny", "messages": [{"role": "user", "content": PROMPT}], "max_tokens": 8}
    with httpx.Client(timeout=timeout, headers={"Authorization": f"Bearer {key}"}) as client:
        for _ in range(count):
            started = time.monotonic()
            try:
                answer = client.post(url, json=body)
                ok = answer.status_code == 200
                per_request = answer.json()["usage"]["prompt_tokens"] if ok else per_request
            except httpx.TransportError:
                ok = False
            latencies.append(time.monotonic() - started)
            failures += not ok
    time.sleep(0.5)  # the servers count a request once its answer is out
    taken = [prompt_tokens(b) - n for b, n in zip(counted, before, strict=True)]
    shares = [int(t // per_request) if per_request else 0 for t in taken]
    return Burst(shares, failures, latencies)


def describe(burst: Burst) -> str:
    slowest = max(burst.latencies)
    return (f"{'/'.join(map(str, burst.per_backend))} served, {burst.failures} failed, "
            f"p50 {statistics.median(burst.latencies) * 1000:.0f} ms, max {slowest:.1f} s")  # fmt: skip


def drills(candidates: list[Candidate], backends: list[Started], keys: dict[str, str], count: int) -> None:
    frozen, others = backends[0], backends[1:]
    key = keys["LITELLM_MASTER_KEY"]
    print("| router | sequential, all up | first backend frozen (SIGSTOP): served by the others | resumed 10 s |")
    print("|---|---|---|---|")
    for c in candidates:
        url = f"http://127.0.0.1:{c.front}/v1/chat/completions"
        all_up = sequential(url, key, count, backends)
        os.kill(frozen.pid, signal.SIGSTOP)
        try:
            one_frozen = sequential(url, key, count, others)
        finally:
            os.kill(frozen.pid, signal.SIGCONT)
        time.sleep(10)  # several health-check intervals and load polls: time to bring it back
        resumed = sequential(url, key, count, backends)
        print(f"| {c.name} | {describe(all_up)} | {describe(one_frozen)} | {describe(resumed)} |", flush=True)
    print("\n| router | first backend killed (SIGKILL): served by the others | /v1/models | restarted, after 10 s |")
    print("|---|---|---|---|")
    for c in candidates:
        url = f"http://127.0.0.1:{c.front}"
        for pid in procs.group_members(frozen.pid, frozen.started):
            os.kill(pid, signal.SIGKILL)
        one_dead = sequential(url + "/v1/chat/completions", key, count, others)
        models = httpx.get(url + "/v1/models", headers={"Authorization": f"Bearer {key}"}, timeout=30).status_code
        subprocess.run([sys.executable, "-m", "llmfleet", "restart", frozen.name], check=True, capture_output=True)
        frozen = next(s for s in running_state(load_settings(), "route", "router_bakeoff.py").services
                      if s.name == frozen.name)  # fmt: skip
        time.sleep(10)
        restarted = sequential(url + "/v1/chat/completions", key, count, [frozen, *others])
        print(f"| {c.name} | {describe(one_dead)} | {models} | {describe(restarted)} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bin", type=Path, required=True, help="the folder holding smg and vllm-router")
    parser.add_argument("--port", type=int, default=30080, help="nginx's first port; the routers take P+10 on")
    parser.add_argument("--drills", action="store_true", help="run the drills and stop, instead of serving")
    parser.add_argument("--requests", type=int, default=20, help="requests per drill step")
    args = parser.parse_args()

    with fronted_routers(args.bin, args.port) as (candidates, backends, keys):
        if args.drills:
            drills(candidates, backends, keys, args.requests)
            return
        alternatives = " ".join(f"--alternative {c.name}=http://127.0.0.1:{c.front}" for c in candidates)
        charges = " ".join(f"--charge {c.name}={c.router}" for c in candidates)
        print(f"ready; run:\n  llmfleet bench gateway {alternatives} --alternative-key gateway {charges}", flush=True)
        stop = False

        def on_signal(*_: object) -> None:
            nonlocal stop
            stop = True

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        while not stop:
            time.sleep(0.5)


if __name__ == "__main__":
    main()

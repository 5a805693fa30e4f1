"""A prototype, run by hand beside a running native stack, of the design issue 8 asks for when LiteLLM cannot keep
up: LiteLLM keeps the keys, nginx asks LiteLLM whether each request's key is valid (the answer cached 10 s per key),
and vllm-router, not LiteLLM, carries the tokens from the vLLM servers to the client.

    client ─► nginx ─┬─ /v1/chat/completions, /v1/completions ─► vllm-router ─► vLLM servers
                     │     (auth_request ─► LiteLLM GET /v1/models with the client's key; 200s cached 10 s)
                     └─ everything else ─► LiteLLM

    apt-get install nginx-light
    python3 -m venv /opt/fast-lane && /opt/fast-lane/bin/pip install vllm-router==0.1.17
    .venv/bin/python benchmarks/fast_lane.py --router /opt/fast-lane/bin/vllm-router --port 30080 &
    llmfleet bench gateway --alternative fast-lane=http://127.0.0.1:30080 --alternative-key gateway \\
        --charge fast-lane=30081

Not part of the stack: see benchmarks/gateway.md for the figures and what this design gives up.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import httpx

from llmfleet.run.state import running_state
from llmfleet.secrets import read_secrets
from llmfleet.settings import load_settings

NGINX_CONF = """\
{user}
worker_processes 1;
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    proxy_cache_path {dir}/auth-cache keys_zone=auth:1m max_size=8m inactive=60s;
    upstream router  {{ server 127.0.0.1:{router_port}; keepalive 256; }}
    upstream litellm {{ server 127.0.0.1:{gateway_port}; keepalive 32; }}
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
            proxy_cache_key $http_authorization;  # one cached answer per key
            proxy_cache_valid 200 10s;            # a revoked key keeps working at most this long
            proxy_cache_lock on;                  # a burst with a new key asks LiteLLM once
            proxy_ignore_headers Cache-Control Expires Set-Cookie;
        }}
        location @unauthorized {{
            default_type application/json;
            return 401 '{{"error": {{"message": "invalid or missing key (Authorization: Bearer <key>)"}}}}';
        }}
        location ~ ^/v1/(chat/)?completions$ {{
            auth_request /_auth;
            error_page 401 = @unauthorized;
            proxy_set_header Authorization "Bearer {backend_key}";  # the client's key never reaches a backend
            proxy_pass http://router;
            proxy_buffering off;
            proxy_read_timeout 600s;
        }}
        location / {{
            proxy_pass http://litellm;
            proxy_buffering off;
        }}
    }}
}}
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--router", required=True, help="the vllm-router executable")
    parser.add_argument("--port", type=int, default=30080, help="nginx's port; vllm-router takes the next one")
    parser.add_argument("--policy", default="power_of_two")
    args = parser.parse_args()

    settings = load_settings()
    state = running_state(settings, "front", "fast_lane.py")
    keys = read_secrets(settings.secrets_file)
    backends = [f"http://127.0.0.1:{s.port}" for s in state.running() if s.name.startswith("vllm-")]
    work = Path(tempfile.mkdtemp(prefix="fast-lane-"))  # 0700: the nginx config holds the backends' key
    conf = work / "nginx.conf"
    conf.write_text(
        NGINX_CONF.format(
            user="user nobody nogroup;" if os.geteuid() == 0 else "",
            dir=work,
            port=args.port,
            router_port=args.port + 1,
            gateway_port=settings.GATEWAY_PORT,
            backend_key=keys["VLLM_API_KEY"],
        )
    )
    conf.chmod(0o600)
    if os.geteuid() == 0:  # nginx's workers run as nobody: they need the cache and temp folders, never the config
        work.chmod(0o711)
        for folder in ("auth-cache", "body", "proxy"):
            (work / folder).mkdir()
            shutil.chown(work / folder, "nobody", "nogroup")
    router = subprocess.Popen(
        [args.router, "--host", "127.0.0.1", "--port", str(args.port + 1), "--policy", args.policy,
         "--worker-urls", *backends, "--log-level", "warning"],
    )  # fmt: skip
    nginx = subprocess.Popen(["nginx", "-c", str(conf), "-p", str(work)])
    stop = False

    def on_signal(*_: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    url = f"http://127.0.0.1:{args.port}/v1/models"
    while not stop:
        try:
            if httpx.get(url, headers={"Authorization": f"Bearer {keys['LITELLM_MASTER_KEY']}"}).status_code == 200:
                print(f"fast lane ready on 127.0.0.1:{args.port} (vllm-router on {args.port + 1})", flush=True)
                break
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    while not stop and router.poll() is None and nginx.poll() is None:
        time.sleep(0.5)
    for process in (nginx, router):
        process.terminate()
        process.wait(timeout=30)
    shutil.rmtree(work)  # the config holds the backends' key


if __name__ == "__main__":
    main()

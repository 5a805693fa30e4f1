"""The front door: nginx's configuration, one text for every runner (native, Compose, Kubernetes).

nginx is the only listener published on the host. Before a byte of a request body reaches Python, it:
- answers a request without a valid key with 401 (the key is checked against LiteLLM, the answer cached briefly),
  so an unauthenticated client can never make the gateway read a body;
- refuses a body over GATEWAY_MAX_BODY_MB with 413, whether it came with a Content-Length or chunked;
- bounds the time and size of headers and bodies;
- passes on only the routes the stack serves (completions, models, metrics, health, LiteLLM's admin routes), so a
  route the gateway's guard does not check (embeddings, responses, pass-through) never reaches a backend;
- answers every error it makes itself in the OpenAI error shape, as JSON, naming no backend.

Behind it, completions take one of two lanes, as the key check's answer says (`x-fleet-lane`, gateway/auth.py):
LiteLLM, which keeps the keys, their limits and usage, the model groups and the admin routes; or the router (SMG,
render/router.py), which streams straight from the backends, with the backends' key the check handed over. Their
own errors pass through unchanged.

On the router lane a stream that has sent nothing within its first-byte timeout is sent to the router again, up to
STREAM_TRIES tries in all; by then the router has taken a frozen backend out (its health checks, a second apart). A
live backend sends a stream's headers once its engine shows progress (vllm/backend_guard.py holds them until then),
and the router keeps an open stream alive with a comment every second, so only a hung backend stays silent. A whole
answer sends nothing until it is done: it keeps the long timeout. The door tells the two apart with one njs
function (gateway/door.js), which reads `stream` from the body nginx has already read.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from llmfleet.plan.schema import Plan
from llmfleet.plan.serving import FIRST_TOKEN_TIMEOUT_S
from llmfleet.render import HEADER
from llmfleet.render.gateway import CONTAINER_PORT as LITELLM_CONTAINER_PORT
from llmfleet.render.gateway import DOOR_CHECK, first_token_timeout
from llmfleet.render.router import CONTAINER_PORT as ROUTER_CONTAINER_PORT

# How long a key LiteLLM accepted is taken as valid without asking again: a revoked key works this long at most.
AUTH_CACHE_S = 10
# The folders nginx writes in its state folder: each temp path by directive, then the key cache. A runner that
# starts nginx as root hands exactly these to its workers (run/native/configs.write_door_config).
TEMP_FOLDERS = {"client_body": "body", "proxy": "proxy", "fastcgi": "fastcgi", "uwsgi": "uwsgi", "scgi": "scgi"}
KEY_CACHE_FOLDER = "keys"
STATE_FOLDERS = (*TEMP_FOLDERS.values(), KEY_CACHE_FOLDER)
CONTAINER_PORT = 8080  # the door's port inside its container (unprivileged: it runs as a non-root user)
CONTAINER_STATE_DIR = "/tmp"  # noqa: S108 - its pid, temp files and key cache: a private tmpfs of its container
CONTAINER_CONFIG = Path("gateway/door.conf")  # rendered, committed: Compose mounts it, Kubernetes ships it
SCRIPT = Path("gateway/door.js")  # hand-written, shipped beside the config
CONTAINER_CONFIG_DIR = "/etc/llmfleet"  # where Compose and Kubernetes mount both
# njs, where Debian's libnginx-mod-http-js and the official nginx image both put it.
JS_MODULE = "/usr/lib/nginx/modules/ngx_http_js_module.so"
# The router lane's tries of a silent stream, with the router listed as often so nginx has a peer for each. A hung
# engine under a live API server looks idle to the router, which may pick it again: a third try makes that rare.
STREAM_TRIES = 3
HOW_TO_AUTH = "Send `Authorization: Bearer <LITELLM_MASTER_KEY>`; the key is in .env.secrets on the gateway's host."
# Routes served, by prefix; anything else is a 404 that lists them. Data routes are the OpenAI ones the guard
# checks; the rest are LiteLLM's health, metrics and admin routes (each needs the key, as before).
DATA_ROUTES = ("/v1/chat/completions", "/v1/completions", "/chat/completions", "/completions")
MODEL_ROUTES = ("/v1/models", "/models")
ADMIN_PREFIXES = ("/key/", "/user/", "/team/", "/model/", "/v1/model/", "/model_group/", "/spend/", "/global/")
ADMIN_ROUTES = ("/health", "/routes", "/metrics", "/metrics/")


@dataclass(frozen=True)
class Door:
    listen: str  # host:port nginx listens on
    litellm: str  # host:port of LiteLLM
    router: str  # host:port of the router (SMG)
    state_dir: str  # pid file, temp files and the key cache
    max_body_mb: float
    script: str  # gateway/door.js, where nginx reads it
    stream_first_byte_s: int  # a stream silent this long on the router lane is sent again
    user: str | None = None  # workers' user, where nginx starts as root (native runner run by root)


# The router lane's own failures, answered by the door: status from the router -> (status sent, error page).
NO_BACKEND_PAGE = "no-backend"
NO_BACKEND = ("No backend of this model answered: each one refused the request, dropped it or took too long. Retry "
              "in a few seconds; `llmfleet status` shows which server is down.")  # fmt: skip
# Its own 503 (every backend out, or shedding load) speaks of circuit breakers: the door's says what to do.
ROUTER_ERRORS = {
    500: (503, NO_BACKEND_PAGE),
    502: (502, "502"),
    503: (503, NO_BACKEND_PAGE),
    504: (503, NO_BACKEND_PAGE),
}


# A user's key over its rpm or tpm on the router lane: auth_request passes on only a 401 or a 403, so the key check
# answers 403 with `x-fleet-refusal: 429`, its message and the seconds to wait, and the 403 page answers the 429.
RATE_REFUSAL = 403


def _rate_refusal_page(answers: dict[int, tuple[str, str]]) -> str:
    limited = '{"error": {"message": "$fleet_message", "type": "rate_limit_error", "param": null, "code": 429}}'
    return (
        f"        location = /_error/{RATE_REFUSAL} {{\n"
        "            internal;\n"
        '            if ($fleet_refusal = "429") {\n'
        "                add_header Retry-After $fleet_retry_after always;\n"
        f"                return 429 '{limited}';\n"
        "            }\n"
        f"            return 403 {_error_body(403, answers, 403)};\n"
        "        }"
    )


def openai_error(status: int, message: str, kind: str, param: str | None = None) -> str:
    """An error body as OpenAI sends it, quoted for an nginx `return` string."""
    body = json.dumps({"error": {"message": message, "type": kind, "param": param, "code": status}})
    return "'" + body.replace("\\", "\\\\").replace("'", "\\'") + "'"


def errors(max_body_mb: float) -> dict[int, tuple[str, str]]:
    """Every status the door answers itself: (message, OpenAI error type)."""
    served = ", ".join((*DATA_ROUTES[:2], MODEL_ROUTES[0]))
    retry = "Retry in a few seconds; `llmfleet status` shows which service is down."
    return {
        400: ("The request could not be read as HTTP. Check its headers and body encoding.", "invalid_request_error"),
        401: (f"No valid API key was sent. {HOW_TO_AUTH}", "authentication_error"),
        403: ("This key may not use this route or model.", "permission_error"),
        404: (f"There is no such route on this gateway. It serves {served} (under /v1).", "invalid_request_error"),
        405: ("This route does not accept that method: completions take POST, models take GET.",
              "invalid_request_error"),
        408: ("The request was not sent in time: headers within 10 s, and no pause of 30 s in the body.",
              "invalid_request_error"),
        413: (f"The request body is larger than the gateway accepts: at most {max_body_mb:g} MiB "
              "(GATEWAY_MAX_BODY_MB). Send a shorter prompt.", "invalid_request_error"),
        414: ("The URL is too long.", "invalid_request_error"),
        429: ("Too many requests from this client. Retry after a pause.", "rate_limit_error"),
        431: ("A request header is too large (at most 16 KiB each).", "invalid_request_error"),
        500: (f"The gateway could not check the API key: its control plane or key database is not answering. {retry}",
              "service_unavailable"),
        502: (f"A gateway service (its control plane or router) is not answering. {retry}", "service_unavailable"),
        503: (f"The gateway is overloaded or starting. {retry}", "service_unavailable"),
        504: ("The gateway's control plane did not answer in time. Retry; `llmfleet status` shows the services.",
              "service_unavailable"),
    }  # fmt: skip


def _error_body(code: int, answers: dict[int, tuple[str, str]], status: int) -> str:
    return openai_error(code, *answers[code if status == 494 else status])


def _router_proxy(router_error_pages: str) -> str:
    """What both router locations say: the backends' key, the key's name for the guard, the router's errors."""
    return f"""            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header Authorization $lane_authorization;
            # A user's key by name and models, for the backends' guard (one of the headers SMG passes on); the
            # master key sends none. Set here, so no client's own value passes.
            proxy_set_header X-Correlation-Id $fleet_key;
            # The router's own 5xx name a backend's address (a 500 when it could not reach one, before its health
            # checks mark it down) or speak its jargon (its 503): the door answers them, as a 503 that names none.
            # Its 4xx pass as they are.
            proxy_intercept_errors on;
{router_error_pages}
            proxy_pass http://router;"""


def nginx_conf(door: Door, header: str) -> str:
    state = door.state_dir
    answers = errors(door.max_body_mb)
    # nginx's own 494 (a header too large) is answered as 431, and the 500 that auth_request gives when the key
    # check itself failed as 503: a client should read "fix your header" and "retry later".
    shown = {**{s: s for s in answers}, 494: 431, 500: 503}
    pages = "\n".join(
        f"        location = /_error/{status} {{ internal; return {code} {_error_body(code, answers, status)}; }}"
        for status, code in sorted(shown.items())
        if status != RATE_REFUSAL
    )
    pages += "\n" + _rate_refusal_page(answers)
    no_backend = openai_error(503, NO_BACKEND, "service_unavailable")
    pages += f"\n        location = /_error/{NO_BACKEND_PAGE} {{ internal; return 503 {no_backend}; }}"
    # `=code`: without it nginx keeps the first status (a 500 would stay a 500 under a 503's body).
    # The 403 page answers with its own status (`=` without a code): 429 where the key check said so.
    error_pages = "\n".join(
        f"        error_page {status} ={'' if status == RATE_REFUSAL else code} /_error/{status};"
        for status, code in sorted(shown.items())
    )
    # Only these statuses are answered by the door on the router lane (error_page in a location replaces the
    # server's, and with proxy_intercept_errors each one listed is taken from the router).
    router_error_pages = "\n".join(
        f"            error_page {status} ={code} /_error/{page};"
        for status, (code, page) in sorted(ROUTER_ERRORS.items())
    )
    data_tails = "|".join(sorted({r.removeprefix("/v1/").lstrip("/") for r in DATA_ROUTES}))
    models, admin, admin_exact = (
        "|".join(r.lstrip("/") for r in routes) for routes in (MODEL_ROUTES, ADMIN_PREFIXES, ADMIN_ROUTES)
    )
    user = f"user {door.user};\n" if door.user else ""
    router_peers = "\n".join(f"        server {door.router} max_fails=0;" for _ in range(STREAM_TRIES))
    router_proxy = _router_proxy(router_error_pages)
    temp_paths = "\n".join(f"    {kind}_temp_path {state}/{folder};" for kind, folder in TEMP_FOLDERS.items())
    return f"""{header}{user}load_module {JS_MODULE};
worker_processes 1;  # one core relays tens of thousands of chunks a second
daemon off;
pid {state}/nginx.pid;
error_log stderr warn;
events {{ worker_connections 4096; }}

http {{
    log_format door '$remote_addr [$time_local] "$request_method $request_uri" $status $body_bytes_sent '
                    '${{request_time}}s upstream=${{upstream_response_time}}s';
    access_log /dev/stdout door;
    server_tokens off;
    js_import fleet from {door.script};
    default_type application/json;

    # Bounds on what a client may send, checked before anything is passed on.
    client_max_body_size {door.max_body_mb:g}m;   # counted for chunked bodies too: 413 once it is exceeded
    client_body_buffer_size 1m;
    client_header_buffer_size 4k;
    large_client_header_buffers 4 16k;
    client_header_timeout 10s;
    client_body_timeout 30s;
    send_timeout 60s;
    keepalive_timeout 75s;

{temp_paths}
    # Keys LiteLLM accepted, {AUTH_CACHE_S} s each (proxy_cache_valid below). The cache holds keys: it lives in the
    # door's private state folder.
    proxy_cache_path {state}/{KEY_CACHE_FOLDER} levels=1 keys_zone=keys:1m max_size=8m inactive=60s use_temp_path=off;

    upstream litellm {{
        server {door.litellm} max_fails=0;
        keepalive 64;
    }}
    upstream router {{
{router_peers}
        keepalive 256;
    }}
    # A completion's lane, from the key check's answer: the router gets the backends' key, never the client's.
    map $fleet_lane $lane {{
        router router;
        default litellm;
    }}
    map $fleet_lane $lane_authorization {{
        router $fleet_backend_auth;
        default $http_authorization;
    }}
    # Whether the key check is for a completion, which a limited key's rpm counts ($request_uri is the client's
    # own in the check's subrequest).
    map $request_uri $fleet_completion {{
        "~^/(v1/)?({data_tails})(\\?.*)?$" 1;
        default 0;
    }}

    proxy_http_version 1.1;
    proxy_set_header Connection "";
    proxy_set_header Host $host;
    proxy_buffering off;          # tokens pass as they come
    proxy_request_buffering on;   # a (bounded) body is read whole before LiteLLM sees it: a slow client holds no worker
    proxy_connect_timeout 5s;
    proxy_read_timeout 900s;      # LiteLLM's own timeouts (gateway/config.yaml: 600 s at most) end a request first
    proxy_send_timeout 60s;
    proxy_hide_header x-litellm-model-api-base;  # a backend's address
    proxy_hide_header x-smg-routed-worker-id;    # the same, from the router

    server {{
        listen {door.listen};
{error_pages}
{pages}

        # The key check (gateway/auth.py door_check): 200 and the key's lane for a valid key. No body is sent.
        location = /_auth {{
            internal;
            if ($http_authorization = "") {{ return 401; }}
            proxy_method GET;
            proxy_pass http://litellm{DOOR_CHECK};
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
            proxy_set_header Transfer-Encoding "";
            proxy_set_header Connection "";           # keep-alive: headers set here replace the http block's
            proxy_set_header X-Fleet-Completion $fleet_completion;
            proxy_buffering on;                       # a cached answer needs a buffered one
            proxy_cache keys;
            proxy_cache_key $http_authorization;      # one answer per key
            proxy_cache_valid 200 {AUTH_CACHE_S}s;               # only acceptance is cached: a bad key is asked again
            # No proxy_cache_lock: a limited key's answer is never cached (X-Accel-Expires: 0), and under the lock its
            # concurrent requests would ask LiteLLM one after the other. A burst with a new key asks it once each.
            proxy_ignore_headers Cache-Control Expires Set-Cookie Vary;
        }}

        location ~ ^/(v1/)?({data_tails})$ {{
            auth_request /_auth;
            auth_request_set $fleet_lane $upstream_http_x_fleet_lane;
            auth_request_set $fleet_backend_auth $upstream_http_x_fleet_backend_auth;
            auth_request_set $fleet_key $upstream_http_x_fleet_key;
            auth_request_set $fleet_refusal $upstream_http_x_fleet_refusal;
            auth_request_set $fleet_retry_after $upstream_http_x_fleet_retry_after;
            auth_request_set $fleet_message $upstream_http_x_fleet_message;
            if ($request_method != POST) {{ return 405; }}
            rewrite ^/(v1/)?(.*)$ /v1/$2 break;  # the router serves /v1 only
            # On to the key's lane: try_files runs after the key check (access phase), so the lane is known.
            try_files /.no-such-file @$lane;
        }}
        location @litellm {{
            # A proxy_set_header here drops the http block's: say them again (keep-alive to the upstream, Host).
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_pass http://litellm;
        }}
        # The router lane, by whether the client asked for a stream (gateway/door.js).
        location @router {{ js_content fleet.lane; }}
        location @router_whole {{
{router_proxy}
        }}
        location @router_stream {{
            # Silent this long: the backend is hung (a live one sends a stream's headers once its engine shows
            # progress, and the router a comment every second after). Try again: the router avoids it by then.
            proxy_read_timeout {door.stream_first_byte_s}s;
            proxy_next_upstream error timeout non_idempotent;
            proxy_next_upstream_tries {STREAM_TRIES};
{router_proxy}
        }}
        location ~ ^/({models})(/[^/]+)?$ {{
            auth_request /_auth;
            if ($request_method != GET) {{ return 405; }}
            proxy_pass http://litellm;
        }}
        location ~ ^/(({admin}).*|{admin_exact})$ {{
            auth_request /_auth;
            proxy_pass http://litellm;
        }}
        # Liveness for orchestrators and health checks: no key, no data.
        location ~ ^/health/(liveliness|readiness)$ {{
            if ($request_method != GET) {{ return 405; }}
            proxy_pass http://litellm;
        }}
        location = /door/health {{ access_log off; return 200 '{{"status": "ok"}}'; }}
        location / {{
            # An unknown route tells nothing to a client without a key: the key is checked (access phase) before
            # try_files answers 404 (a `return` would answer first, in the rewrite phase).
            auth_request /_auth;
            try_files /.no-such-route =404;
        }}
    }}
}}
"""


def stream_first_byte_timeout(plan: Plan) -> int:
    """The plan's longest first-token timeout: a stream waits as long on the router lane as on LiteLLM's."""
    return max(first_token_timeout(plan, model) for model in plan.model_groups())


def container_conf(max_body_mb: float) -> str:
    """The door in a container (Compose, Kubernetes): LiteLLM is the service named gateway, SMG router; nginx runs as a
    non-root user on an unprivileged port, with its state on a tmpfs."""
    door = Door(
        listen=str(CONTAINER_PORT),
        litellm=f"gateway:{LITELLM_CONTAINER_PORT}",
        router=f"router:{ROUTER_CONTAINER_PORT}",
        state_dir=CONTAINER_STATE_DIR,
        max_body_mb=max_body_mb,
        script=f"{CONTAINER_CONFIG_DIR}/{SCRIPT.name}",
        # One config for every plan's containers: the longest wait of any device's models.
        stream_first_byte_s=max(FIRST_TOKEN_TIMEOUT_S.values()),
    )
    # Its one setting is GATEWAY_MAX_BODY_MB; the rest is this module's.
    return nginx_conf(door, HEADER.format(source=".env"))

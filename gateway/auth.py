"""Gateway authentication: the master key, and per-user keys from the key store (keystore.py, PostgreSQL).

LiteLLM's own virtual keys need its Prisma client, whose engines are downloaded at install time from a host this
stack cannot count on; this check replaces that lookup (`custom_auth: auth.user_api_key_auth` in config.yaml):
- the master key (LITELLM_MASTER_KEY) is the administrator's: every route;
- a user's key (`llmfleet keys create`) may use the completion and model routes, only for its models, within its
  requests and tokens per minute (LiteLLM's limiter enforces `rpm_limit`/`tpm_limit` and answers 429);
- a metrics key may read /metrics and nothing else (Prometheus' own: issued from the key store by the native
  runner, or GATEWAY_METRICS_KEY from the gateway's secrets in Compose and Kubernetes);
- anything else is a 401 that says what to send.

It also answers the front door's key check (DOOR_CHECK, GET, no body), which says which lane a key's completions take
(`x-fleet-lane`): `router` (SMG, straight to the backends; the default), or, where GATEWAY_DATA_PLANE=litellm,
`litellm`, with the backends' key on the router lane for the door to send on (`x-fleet-backend-auth`). On the router
lane a user's key is limited here, before its request leaves the door: its requests and tokens this minute
(usage.WINDOWS) against its rpm and tpm; an answer over them is a 403 the door turns into a 429 with Retry-After
(`x-fleet-refusal`). Its name and models go on to the backends' guard (`x-fleet-key`), which refuses another model and
reports the tokens used (a key whose name and models are too long for that header takes LiteLLM's lane). A limited
key's answer is not cached by the door (`X-Accel-Expires: 0`), so every request of it is counted.

A key found is kept CACHE_S seconds, in each worker. The front door caches accepted keys as long, so a revoked key
works at most that long twice over. While the database does not answer, keys seen in the last CACHE_S seconds
keep working and any other gets a 503 naming the cause.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi import Request, Response
from fastapi.responses import JSONResponse
from litellm.proxy._types import LitellmUserRoles, ProxyErrorTypes, ProxyException, UserAPIKeyAuth

# LiteLLM loads this file by its path: the folder is not on sys.path, and keystore.py beside it must be importable.
if str(Path(__file__).parent) not in sys.path:
    sys.path.append(str(Path(__file__).parent))

HOW = "Send `Authorization: Bearer <LITELLM_MASTER_KEY>`; the key is in .env.secrets on the gateway's host."
HOW_USER = "Send the key `llmfleet keys create` printed, or ask the fleet's administrator for one."
CACHE_S = 10  # as long as the front door's cache of accepted keys (render/door.py AUTH_CACHE_S)
USER_ROUTES = ("/v1/chat/completions", "/v1/completions", "/chat/completions", "/completions", "/v1/models",
               "/models")  # fmt: skip
METRICS_ROUTES = ("/metrics", "/metrics/")
DOOR_CHECK = "/fleet/door-check"  # render/door.py asks it for every request it has not seen the key of lately
LANES = ("litellm", "router")  # GATEWAY_DATA_PLANE: completions through LiteLLM, or the router (the default)
KEY_TAG = "llmfleet-key="  # how the backends' guard knows a user's request (vllm/backend_guard.py KEY_TAG)
# SMG 1.13 passes x-correlation-id on only up to 128 characters without spaces (measured): a key whose name and
# models do not fit takes LiteLLM's lane.
KEY_HEADER_MAX = 128

_found: dict[str, tuple[float, Any]] = {}  # key digest -> (when it was read, keystore.Key)


def _refuse(message: str, status: int, kind: ProxyErrorTypes, param: str | None = "Authorization") -> ProxyException:
    return ProxyException(message=message, type=kind, param=param, code=status)


async def user_api_key_auth(request: Request, api_key: str) -> UserAPIKeyAuth:
    master_key = os.environ.get("LITELLM_MASTER_KEY", "")
    if master_key and api_key and secrets.compare_digest(api_key.encode(), master_key.encode()):
        return UserAPIKeyAuth(api_key=master_key, user_role=LitellmUserRoles.PROXY_ADMIN)
    if _is_metrics_key(api_key):
        return _metrics_reader(request)
    return await _user(request, await _valid_stored_key(api_key))


def _is_metrics_key(api_key: str) -> bool:
    metrics_key = os.environ.get("GATEWAY_METRICS_KEY", "")
    return bool(metrics_key and api_key and secrets.compare_digest(api_key.encode(), metrics_key.encode()))


async def _valid_stored_key(api_key: str) -> Any:
    """The stored key, unexpired and not revoked; else a 401 saying what to send (a 503 while the database is down)."""
    key = await _stored_key(api_key) if api_key and os.environ.get("LLMFLEET_KEYS_DSN") else None
    if key is None:
        problem = "The API key is not valid." if api_key else "No API key was sent."
        how = HOW_USER if os.environ.get("LLMFLEET_KEYS_DSN") else HOW
        raise _refuse(f"{problem} {how}", 401, ProxyErrorTypes.auth_error)
    why_not = key.refusal(datetime.now(UTC))
    if why_not:
        raise _refuse(f"{why_not} {HOW_USER}", 401, ProxyErrorTypes.auth_error)
    return key


def _metrics_reader(request: Request) -> UserAPIKeyAuth:
    if request.url.path not in METRICS_ROUTES:
        raise _refuse(
            f"This key (GATEWAY_METRICS_KEY) reads /metrics and nothing else, not {request.url.path}.",
            403,
            ProxyErrorTypes.auth_error,
            param=None,
        )
    return UserAPIKeyAuth(api_key="fleet-key:prometheus", key_alias="prometheus", key_name="prometheus",
                          user_role=LitellmUserRoles.INTERNAL_USER)  # fmt: skip


async def _stored_key(api_key: str) -> Any:
    import keystore  # imports psycopg, which only a fleet with a key store needs

    hashed = keystore.digest(api_key)
    now = time.monotonic()
    cached = _found.get(hashed)
    if cached and now - cached[0] < CACHE_S:
        return cached[1]
    try:
        key = await asyncio.to_thread(keystore.SHARED.run, lambda conn: keystore.lookup(conn, api_key))
    except Exception as problem:  # psycopg's OperationalError and kin: the database is down or unreachable
        raise _refuse(
            f"The gateway cannot check this key: its key database does not answer ({type(problem).__name__}). "
            "Retry in a few seconds; `llmfleet status` shows the postgres service.",
            503,
            ProxyErrorTypes.auth_error,
        ) from None
    if key is not None:
        _found[hashed] = (now, key)
    return key


async def _user(request: Request, key: Any) -> UserAPIKeyAuth:
    path = request.url.path
    routes = METRICS_ROUTES if key.scope == "metrics" else USER_ROUTES
    allowed = path in routes or (key.scope != "metrics" and path.startswith(("/v1/models/", "/models/")))
    if not allowed:
        raise _refuse(
            f"The key {key.name!r} may not use {path}: it may use {', '.join(routes[:3])}.",
            403,
            ProxyErrorTypes.auth_error,
            param=None,
        )
    if key.models and request.method == "POST":
        from litellm.proxy.common_utils.http_parsing_utils import _read_request_body

        model = (await _read_request_body(request)).get("model")
        if model not in key.models:
            raise _refuse(
                f"The key {key.name!r} may not use the model {model!r}; it may use {', '.join(key.models)}.",
                403,
                ProxyErrorTypes.auth_error,
                param="model",
            )
    return UserAPIKeyAuth(
        api_key=f"fleet-key:{key.name}",  # not the key: this is what LiteLLM hashes and limits by
        key_alias=key.name,
        key_name=key.name,
        models=list(key.models),
        rpm_limit=key.rpm,
        tpm_limit=key.tpm,
        user_role=LitellmUserRoles.INTERNAL_USER,
    )


async def door_check(request: Request) -> Response:
    """The door's key check: 200 and the key's lane for a key that may use the gateway, else the error to send."""
    api_key = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
    master_key = os.environ.get("LITELLM_MASTER_KEY", "")
    router = os.environ.get("GATEWAY_DATA_PLANE", "router") != "litellm"  # the router unless told otherwise
    lane = "router" if router else "litellm"
    headers = {}
    try:
        if master_key and api_key and secrets.compare_digest(api_key.encode(), master_key.encode()):
            pass
        elif _is_metrics_key(api_key):
            lane = "litellm"
        else:
            key = await _valid_stored_key(api_key)  # LiteLLM checks the route and the model on the request itself
            named = f"{KEY_TAG}{key.name};models={','.join(key.models)}"
            # A metrics key's completions go to LiteLLM, which refuses them (403): the router knows no scopes.
            if router and key.scope != "metrics" and len(named) <= KEY_HEADER_MAX:
                refused = await _admit(request, key)
                if refused is not None:
                    return refused
                headers["x-fleet-key"] = named
                if key.rpm is not None or key.tpm is not None:
                    headers["X-Accel-Expires"] = "0"  # the door asks again for each request: each one is counted
            else:
                lane = "litellm"  # LiteLLM checks its models and limits itself
    except ProxyException as refusal:
        body = {"error": {"message": refusal.message, "type": refusal.type, "param": refusal.param,
                          "code": int(refusal.code or 401)}}  # fmt: skip
        return JSONResponse(body, status_code=int(refusal.code or 401))
    if lane == "router":
        headers["x-fleet-backend-auth"] = f"Bearer {os.environ.get('VLLM_API_KEY', '')}"
    return Response(status_code=200, headers={"x-fleet-lane": lane, **headers})


async def _admit(request: Request, key: Any) -> Response | None:
    """A user's completion on the router lane, counted against its limits; the refusal to send, or None."""
    if request.headers.get("x-fleet-completion") != "1":
        return None  # only completions count (the door sends models and admin routes to LiteLLM, which limits them)
    import usage

    why = await usage.WINDOWS.admit(key.name, key.rpm, key.tpm)
    if why is None:
        return None
    # auth_request passes on only 401 and 403: the door answers this 403 as a 429 (render/door.py).
    message = json.dumps(f"{why} Retry after the Retry-After header's seconds.")[1:-1]
    refusal = {"x-fleet-refusal": "429", "x-fleet-retry-after": str(usage.retry_after_s()), "x-fleet-message": message}
    return Response(status_code=403, headers={**refusal, "X-Accel-Expires": "0"})


class DoorCheckFirst:
    """The door's key check, answered before LiteLLM's own middleware and routing: it is asked once per request of
    a limited key (the door cannot cache those), and LiteLLM's stack costs ~3 ms of CPU a request, this ~0.5 ms."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope.get("path") == DOOR_CHECK and scope.get("method") == "GET":
            response = await door_check(Request(scope, receive))
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


def _serve_door_check() -> None:
    """LiteLLM loads this file at startup, in each worker: put the door's key check in front of its app, and add
    the backends' usage reports to its routes."""
    try:
        from litellm.proxy.proxy_server import app
    except ImportError:  # imported outside the proxy (tests of the functions above)
        return
    import usage

    if not any(getattr(route, "path", None) == usage.USAGE_ROUTE for route in app.routes):
        app.add_api_route(usage.USAGE_ROUTE, usage.usage_report, methods=["POST"], include_in_schema=False)
    if app.middleware_stack is None:  # not started yet: Starlette builds the stack with it
        app.add_middleware(DoorCheckFirst)
    elif not isinstance(app.middleware_stack, DoorCheckFirst):  # started (LiteLLM loads its config at startup)
        app.middleware_stack = DoorCheckFirst(app.middleware_stack)


_serve_door_check()

# Rendered by llmfleet render from gateway/auth.py. Do not edit: change gateway/auth.py, then run llmfleet render.
"""Gateway authentication: the master key, compared in constant time; any other key is a 401.

LiteLLM looks up any key other than the master key as a virtual key in its database, and with no database
it answers 400 "No connected db.". This stack has one key and no database, so this check replaces that
lookup: the same key gets the same admin rights, and every other request a 401 that says what to send.
LiteLLM loads it by name from config.yaml (`custom_auth: auth.user_api_key_auth`).
"""

from __future__ import annotations

import os
import secrets

from fastapi import Request
from litellm.proxy._types import LitellmUserRoles, ProxyErrorTypes, ProxyException, UserAPIKeyAuth

HOW = "Send `Authorization: Bearer <LITELLM_MASTER_KEY>`; the key is in .env.secrets on the gateway's host."


async def user_api_key_auth(request: Request, api_key: str) -> UserAPIKeyAuth:
    master_key = os.environ.get("LITELLM_MASTER_KEY", "")
    if master_key and api_key and secrets.compare_digest(api_key.encode(), master_key.encode()):
        return UserAPIKeyAuth(api_key=master_key, user_role=LitellmUserRoles.PROXY_ADMIN)
    problem = "The API key is not valid." if api_key else "No API key was sent."
    raise ProxyException(message=f"{problem} {HOW}", type=ProxyErrorTypes.auth_error, param="Authorization", code=401)

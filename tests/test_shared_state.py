"""The gateway's workers share their router state through Redis (gateway/config.yaml, router_settings): a backend
that one worker took out of rotation is avoided by every other.

Each worker is a process with a LiteLLM Router of its own. Here, one process routes real requests to a backend
that refuses connections until LiteLLM cools it down; a second process, which never saw a failure, must then never
pick it. Without Redis the same second process does pick it: the test can tell the two apart. The Redis server is
Debian's redis-server, as the native runner starts it; the live backend is one of the CPU stack's vLLM servers.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import Stack, free_ports, in_gateway_python

from llmfleet.run import probe
from llmfleet.run.native.configs import write_redis_config

pytestmark = pytest.mark.stack
PASSWORD = "test-only-" + "x" * 16

# The deployments as the rendered models.yaml has them, one that refuses connections (nothing listens).
ROUTER = """
import asyncio, json, os
from litellm import Router
from litellm.router_utils.cooldown_handlers import async_get_cooldown_deployments

dead, live, key, redis_port = sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]
shared = {"redis_host": "127.0.0.1", "redis_port": int(redis_port), "redis_password": os.environ["REDIS_PASSWORD"]}
def deployment(id, api_base):
    params = {"model": "hosted_vllm/fleet-tiny", "api_base": api_base, "api_key": key}
    return {"model_name": "fleet-tiny", "model_info": {"id": id}, "litellm_params": params}
router = Router(
    model_list=[deployment("down", f"http://127.0.0.1:{dead}/v1"), deployment("up", live + "/v1")],
    routing_strategy="simple-shuffle", num_retries=0, allowed_fails=1, cooldown_time=60,
    **(shared if redis_port != "0" else {}),
)
"""

FAIL_UNTIL_COOLED_DOWN = """
async def main():
    for _ in range(40):
        try:
            await router.acompletion(model="fleet-tiny", messages=[{"role": "user", "content": "hi"}], max_tokens=1)
        except Exception:
            pass
        if "down" in await async_get_cooldown_deployments(router, None):
            print(json.dumps({"cooled_down": True})); return
    print(json.dumps({"cooled_down": False}))
asyncio.run(main())
"""

PICKS = """
async def main():
    cooling = await async_get_cooldown_deployments(router, None)
    picks = [(await router.async_get_available_deployment(model="fleet-tiny", request_kwargs={},
             messages=[{"role": "user", "content": "hi"}]))["model_info"]["id"] for _ in range(30)]
    print(json.dumps({"cooling": cooling, "picks": picks}))
asyncio.run(main())
"""


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[int]:
    """Debian's redis-server, configured as the native runner configures it, on a free port; stopped by pid."""
    port = free_ports(1)[0]
    write_redis_config(tmp_path / "redis", port, PASSWORD)
    server = subprocess.Popen(["redis-server", str(tmp_path / "redis" / "redis.conf")], stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while not probe.redis_answers(httpx.URL(f"redis://127.0.0.1:{port}")):
            assert server.poll() is None and time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.2)
        yield port
    finally:
        server.terminate()
        server.wait(timeout=10)


def worker(stack: Stack, script: str, redis_port: int, dead_port: int) -> dict:
    live = stack.backend("vllm-cpu0")
    out = in_gateway_python(ROUTER + script, str(dead_port), live, stack.cli.secrets["VLLM_API_KEY"], str(redis_port),
                            env={"REDIS_PASSWORD": PASSWORD})  # fmt: skip
    return json.loads(out.strip().splitlines()[-1])


def test_a_backend_cooled_down_by_one_worker_is_avoided_by_another(stack: Stack, redis: int) -> None:
    dead = free_ports(1)[0]
    assert worker(stack, FAIL_UNTIL_COOLED_DOWN, redis, dead) == {"cooled_down": True}
    other = worker(stack, PICKS, redis, dead)  # a fresh process: all it knows is in Redis
    assert other["cooling"] == ["down"]
    assert set(other["picks"]) == {"up"}, other["picks"]


def test_without_redis_another_worker_still_picks_the_cooled_down_backend(stack: Stack) -> None:
    dead = free_ports(1)[0]
    assert worker(stack, FAIL_UNTIL_COOLED_DOWN, 0, dead) == {"cooled_down": True}
    other = worker(stack, PICKS, 0, dead)
    assert other["cooling"] == []
    assert "down" in other["picks"]  # 30 draws of two: never picking it has odds of 1 in a billion

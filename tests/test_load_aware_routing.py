"""Routing on the engines' own load (gateway/loadaware.py): its reading of real vLLM metrics and its choice; the
filter in the gateway's Python reading /metrics over HTTP, from pages that show a saturated server (it receives
less, and the traffic follows the load when it moves) or from servers that do not answer. On the live CPU stack,
sequential traffic spreads over both backends on LiteLLM's lane (test_litellm_lane.py) and on the router's
(test_router_lane.py). (The saturated server is a captured vLLM page with load written in:
a stack test that saturated a real backend flaked on the 2-core CI host, since a vLLM CPU server writing long
answers takes both cores, its /metrics waits until it is done, and its running-requests gauge reads 0 throughout,
the engine having finished the tokens long before. A GPU host is where to run that one.)

All need the gateway's runtime (LiteLLM), which `make setup` installs: they run with the stack tests.
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

import pytest
from conftest import ROOT, free_ports, in_gateway_python

sys.path.insert(0, str(ROOT / "gateway"))  # the pure half of the routing, importable without LiteLLM
import loadpick

pytestmark = pytest.mark.stack
METRICS = ROOT / "tests" / "data" / "metrics" / "vllm-0.32.0-cpu.prom"


def sample(gauge: str, value: str, engine: str = "0") -> str:
    """A line of the captured page: one engine's gauge, as vLLM writes it."""
    return f'vllm:{gauge}{{engine="{engine}",model_name="fleet-tiny"}} {value}'


def with_load(page: str, loads: dict[str, str]) -> str:
    """The captured page of an idle server with load written in: each idle line (key) becomes its loaded lines
    (value). Each must be there, or a change in vLLM's page would leave the test reading an idle server."""
    for idle, loaded in loads.items():
        assert idle in page, idle
        page = page.replace(idle, loaded)
    return page


def test_load_is_read_from_a_real_vllm_metrics_page(tmp_path: Path) -> None:
    # Two engines running, some waiting (and waiting "by reason", which must not be counted twice), the KV cache
    # in use.
    by_reason = 'vllm:num_requests_waiting_by_reason{{engine="0",model_name="fleet-tiny",reason="capacity"}} {}'
    page = tmp_path / "metrics.prom"
    page.write_text(with_load(METRICS.read_text(), {
        sample("num_requests_running", "0.0"):
            sample("num_requests_running", "3.0") + "\n" + sample("num_requests_running", "2.0", engine="1"),
        sample("num_requests_waiting", "0.0"): sample("num_requests_waiting", "4.0"),
        by_reason.format("0.0"): by_reason.format("4.0"),
        sample("kv_cache_usage_perc", "0.0"): sample("kv_cache_usage_perc", "0.25"),
    }))  # fmt: skip
    load = loadpick.parse_load(page.read_text())
    assert [load.running, load.waiting, load.kv_cache] == pytest.approx([5.0, 4.0, 0.25])


def test_the_choice_avoids_loaded_and_slow_servers_spreads_ties_and_refuses_stale_readings() -> None:
    Load, choose = loadpick.Load, loadpick.choose
    rng = random.Random(7)
    busy, idle = Load(running=8, waiting=3, read_at=100), Load(running=0, read_at=100)
    assert {choose(["a", "b"], {"a": busy, "b": idle}, 100.5, rng) for _ in range(50)} == {"b"}
    tie = [choose(["a", "b"], {"a": Load(read_at=100), "b": Load(read_at=100)}, 100.5, rng) for _ in range(200)]
    assert tie.count("a") > 60 and tie.count("b") > 60  # ties go either way: sequential traffic is never all on one
    assert choose(["a", "b"], {"a": idle, "b": Load(read_at=90)}, 100.5, rng) is None  # a stale reading
    assert choose(["a", "b"], {"a": idle}, 100.5, rng) is None  # a missing one
    slow = Load(running=0, read_at=100, slow=True)  # its /metrics timed out: too busy or frozen
    assert {choose(["a", "b"], {"a": slow, "b": busy}, 100.5, rng) for _ in range(50)} == {"b"}


def test_unreadable_metrics_fall_back_to_all_backends_and_warn_once_each() -> None:
    ports = free_ports(2)  # nothing listens: every read is refused
    out = in_gateway_python("""
import asyncio, logging
logging.basicConfig(level=logging.WARNING, stream=sys.stdout, format="%(name)s: %(message)s")
from loadaware import LoadAwareRouting
deployments = [{"litellm_params": {"api_base": f"http://127.0.0.1:{p}/v1"}, "model_info": {"id": p}}
               for p in sys.argv[2:]]
async def main():
    routing, kept = LoadAwareRouting(), set()
    for _ in range(30):
        kept.add(len(await routing.async_filter_deployments("fleet-tiny", deployments)))
        await asyncio.sleep(0.1)
    print("kept", sorted(kept))
asyncio.run(main())
""", *map(str, ports))  # fmt: skip
    assert "kept [2]" in out
    warnings = [line for line in out.splitlines() if "falls back to simple-shuffle" in line]
    assert len(warnings) == 2 and all(any(str(p) in w for w in warnings) for p in ports), out


def test_a_saturated_backend_receives_less_and_the_traffic_follows_the_load_when_it_moves(tmp_path: Path) -> None:
    # Two /metrics endpoints serving the captured page of a real vLLM server, one with the load of a saturated
    # engine written in; the filter reads them over HTTP, as it reads vLLM's, and each routed request finishes
    # through LiteLLM's success callback. (The whole stack on this 2-core host cannot hold a backend saturated
    # steadily: see the module's docstring.) Halfway, the load moves to the other server.
    saturated = tmp_path / "saturated.prom"
    saturated.write_text(with_load(METRICS.read_text(), {
        sample(gauge, "0.0"): sample(gauge, value)
        for gauge, value in [("num_requests_running", "16.0"), ("num_requests_waiting", "9.0"),
                             ("kv_cache_usage_perc", "0.93")]
    }))  # fmt: skip
    out = in_gateway_python("""
import asyncio, collections, json, threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from loadaware import REFRESH_S, LoadAwareRouting
idle, saturated = open(sys.argv[2]).read(), open(sys.argv[3]).read()
pages = {}
class Metrics(BaseHTTPRequestHandler):
    def do_GET(self):
        body = pages[self.server.server_port].encode()
        self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args): pass
servers = [ThreadingHTTPServer(("127.0.0.1", 0), Metrics) for _ in range(2)]
for server in servers:
    threading.Thread(target=server.serve_forever, daemon=True).start()
busy, calm = (s.server_port for s in servers)
pages[busy], pages[calm] = saturated, idle
deployments = [{"litellm_params": {"api_base": f"http://127.0.0.1:{p}/v1"}, "model_info": {"id": str(p)}}
               for p in (busy, calm)]
async def route(routing, n):
    served = collections.Counter()
    for _ in range(n):
        [chosen] = await routing.async_filter_deployments("fleet-tiny", deployments)
        served["busy" if chosen["model_info"]["id"] == str(busy) else "calm"] += 1
        await routing.async_log_success_event({"litellm_params": {"model_info": chosen["model_info"]}}, None, 0, 0)
    return served
async def main():
    routing = LoadAwareRouting()
    while len(await routing.async_filter_deployments("fleet-tiny", deployments)) != 1:
        await asyncio.sleep(0.05)  # until the first readings are in
    print("before", json.dumps(await route(routing, 40)))
    pages[busy], pages[calm] = idle, saturated
    await asyncio.sleep(3 * REFRESH_S)
    print("after", json.dumps(await route(routing, 40)))
asyncio.run(main())
""", str(METRICS), str(saturated))  # fmt: skip
    before, after = (json.loads(line.split(" ", 1)[1]) for line in out.splitlines())
    assert before.get("busy", 0) <= 4 and before.get("calm", 0) >= 36, out
    assert after.get("calm", 0) <= 4 and after.get("busy", 0) >= 36, out

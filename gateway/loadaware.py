"""Routing on the engines' own load: power of two choices over what each vLLM server's /metrics says.

LiteLLM's proxy takes no custom routing strategy, but it asks every callback to filter the healthy deployments
before its own strategy picks one (`async_filter_deployments`). This filter keeps one: of two deployments drawn
at random, the less loaded. Load is vLLM's running and waiting requests and KV-cache use, read from each server's
/metrics about every second, plus the requests this worker sent it since that read (so a burst between two reads
does not all go to one server). Everything else stays LiteLLM's: health checks, cooldowns, retries on another
backend. A server whose /metrics cannot be read makes the filter step aside (LiteLLM's simple-shuffle decides)
and says so once in the log; one whose /metrics times out counts as busy (too loaded, or frozen). LiteLLM loads
it from config.yaml (`callbacks: [..., loadaware.routing]`).
"""

import asyncio
import logging
import random
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from litellm.integrations.custom_logger import CustomLogger

# LiteLLM loads this file by its path: the folder is not on sys.path, and loadpick.py beside it must be importable.
if str(Path(__file__).parent) not in sys.path:
    sys.path.append(str(Path(__file__).parent))

from loadpick import READ_TIMEOUT_S, REFRESH_S, Load, choose, metrics_url, parse_load

log = logging.getLogger("llmfleet.loadaware")


class LoadAwareRouting(CustomLogger):
    def __init__(self) -> None:
        super().__init__()
        self.loads: dict[str, Load] = {}  # metrics URL -> latest reading
        self.urls: set[str] = set()
        self.rng = random.Random()  # noqa: S311 - load spreading, not secrecy
        self.warned: set[str] = set()
        self.url_of: dict[str, str] = {}  # deployment id -> its metrics URL
        self.rounds = 0  # polls completed: before the first, nothing is known yet and that is not a fault
        self._poller: asyncio.Task | None = None

    async def async_filter_deployments(
        self,
        model: str,
        healthy_deployments: list,
        messages: Any = None,
        request_kwargs: dict | None = None,
        parent_otel_span: Any = None,
    ) -> list[dict]:
        if len(healthy_deployments) < 2:
            return healthy_deployments
        by_url: dict[str, dict] = {}
        for deployment in healthy_deployments:
            url = metrics_url(deployment)
            if url is None:
                return healthy_deployments  # not a server whose load we can read: LiteLLM decides
            by_url[url] = deployment
        self.urls.update(by_url)
        self._ensure_poller()
        now = time.monotonic()
        chosen = choose(list(by_url), self.loads, now, self.rng)
        if chosen is None:
            self._warn_once(model, [u for u in by_url if u not in self.loads or not self.loads[u].fresh(now)])
            return healthy_deployments
        self.loads[chosen].sent_since += 1
        self.url_of[str((by_url[chosen].get("model_info") or {}).get("id"))] = chosen
        return [by_url[chosen]]

    # A finished request no longer loads its server: without this, a run of short sequential requests between
    # two readings would pile up on the idle server's count until the busy one looked better.
    async def async_log_success_event(self, kwargs: dict, response_obj: Any, start_time: Any, end_time: Any) -> None:
        self._finished(kwargs)

    async def async_log_failure_event(self, kwargs: dict, response_obj: Any, start_time: Any, end_time: Any) -> None:
        self._finished(kwargs)

    def _finished(self, kwargs: dict) -> None:
        model_info = (kwargs.get("litellm_params") or {}).get("model_info") or {}
        load = self.loads.get(self.url_of.get(str(model_info.get("id")), ""))
        if load is not None and load.sent_since > 0:
            load.sent_since -= 1

    def _warn_once(self, model: str, urls: list[str]) -> None:
        for url in urls:
            if url not in self.warned and self.rounds:
                self.warned.add(url)
                log.warning("no fresh load from %s for %s: routing falls back to simple-shuffle", url, model)

    def _ensure_poller(self) -> None:
        if self._poller is None or self._poller.done():
            self._poller = asyncio.get_running_loop().create_task(self._poll())

    async def _poll(self) -> None:
        async with httpx.AsyncClient(timeout=httpx.Timeout(READ_TIMEOUT_S, connect=0.5)) as client:
            while True:
                await asyncio.gather(*(self._read(client, url) for url in list(self.urls)))
                self.rounds += 1
                await asyncio.sleep(REFRESH_S)

    async def _read(self, client: httpx.AsyncClient, url: str) -> None:
        try:
            response = await client.get(url)
            response.raise_for_status()
            load = parse_load(response.text)
        except httpx.TimeoutException:
            previous = self.loads.get(url)
            if previous is not None:  # it answers, but too slowly: that is load too
                previous.slow, previous.read_at = True, time.monotonic()
            return
        except (httpx.HTTPError, ValueError):
            return  # refused or broken: the old reading goes stale and the filter steps aside for it
        load.read_at = time.monotonic()
        self.loads[url] = load
        if url in self.warned:
            self.warned.discard(url)
            log.warning("load from %s is back: routing on it again", url)


routing = LoadAwareRouting()

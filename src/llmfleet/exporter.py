"""A small GPU exporter on NVML: memory, utilisation, power, temperature and throttling, per GPU.

NVML is the NVIDIA driver's own library, so this works on GeForce cards (an RTX 3060) as on data-centre ones,
with no DCGM. Values are read at scrape time, so a scrape never returns stale numbers. Why ours and not
dcgm-exporter or nvidia_gpu_exporter: monitoring/README.md ("The GPU exporter").
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from prometheus_client import start_http_server
from prometheus_client.core import REGISTRY, GaugeMetricFamily
from prometheus_client.registry import Collector

from llmfleet.errors import FleetError

# `gpu_name`, not `name`: the vLLM servers' series carry the same label (from the scrape config), and a bare
# `name` clashes in joins. Prometheus adds `server` and `model_group` from the plan (metric_relabel_configs).
LABELS = ["gpu", "gpu_name", "uuid"]


def _throttled(nvml: Any, handle: Any) -> float:
    """1 while clocks are held down by heat or a power brake. Not the software power cap: a card under full
    load sits at its power limit by design, and that is not trouble."""
    slowdown = (
        nvml.nvmlClocksEventReasonHwSlowdown
        | nvml.nvmlClocksEventReasonSwThermalSlowdown
        | nvml.nvmlClocksEventReasonHwThermalSlowdown
        | nvml.nvmlClocksEventReasonHwPowerBrakeSlowdown
    )
    return float(bool(nvml.nvmlDeviceGetCurrentClocksEventReasons(handle) & slowdown))


@dataclass(frozen=True)
class Gauge:
    name: str
    help: str
    read: Callable[[Any, Any], float]  # (the pynvml module, a device handle) -> value


GAUGES = (
    Gauge("llmfleet_gpu_memory_used_bytes", "GPU memory in use.", lambda n, h: n.nvmlDeviceGetMemoryInfo(h).used),
    Gauge("llmfleet_gpu_memory_total_bytes", "GPU memory in all.", lambda n, h: n.nvmlDeviceGetMemoryInfo(h).total),
    Gauge("llmfleet_gpu_utilization_ratio", "Share of time the GPU was busy (0-1).",
          lambda n, h: n.nvmlDeviceGetUtilizationRates(h).gpu / 100),
    Gauge("llmfleet_gpu_power_watts", "Power draw.", lambda n, h: n.nvmlDeviceGetPowerUsage(h) / 1000),
    Gauge("llmfleet_gpu_power_limit_watts", "The power limit the driver enforces.",
          lambda n, h: n.nvmlDeviceGetEnforcedPowerLimit(h) / 1000),
    Gauge("llmfleet_gpu_temperature_celsius", "GPU core temperature.",
          lambda n, h: n.nvmlDeviceGetTemperature(h, n.NVML_TEMPERATURE_GPU)),
    # The card's own slowdown point, so one alert fits a GeForce (about 93 C) and a data-centre card alike.
    Gauge("llmfleet_gpu_temperature_slowdown_celsius", "Temperature at which the card slows its clocks.",
          lambda n, h: n.nvmlDeviceGetTemperatureThreshold(h, n.NVML_TEMPERATURE_THRESHOLD_SLOWDOWN)),
    Gauge("llmfleet_gpu_throttled", "1 while clocks are held down by heat or a power brake.", _throttled),
)  # fmt: skip
UP = Gauge("llmfleet_gpu_exporter_up", "1 if NVML answered this scrape.", lambda n, h: 1.0)
METRIC_NAMES = frozenset(g.name for g in (*GAUGES, UP))


class NvmlCollector(Collector):
    def __init__(self) -> None:
        import pynvml  # nvidia-ml-py; its module is still named pynvml

        pynvml.nvmlInit()
        self.nvml = pynvml

    def collect(self) -> Iterator[GaugeMetricFamily]:
        nvml = self.nvml
        up = GaugeMetricFamily(UP.name, UP.help)
        families = [(GaugeMetricFamily(g.name, g.help, labels=LABELS), g.read) for g in GAUGES]
        try:
            for index in range(nvml.nvmlDeviceGetCount()):
                handle = nvml.nvmlDeviceGetHandleByIndex(index)
                labels = [str(index), _text(nvml.nvmlDeviceGetName(handle)), _text(nvml.nvmlDeviceGetUUID(handle))]
                for family, read in families:
                    # Some GeForce cards lack a field (NotSupported): leave that series out rather than lie.
                    with contextlib.suppress(nvml.NVMLError_NotSupported):
                        family.add_metric(labels, read(nvml, handle))
            up.add_metric([], 1)
        except nvml.NVMLError:  # the driver went away, a GPU fell off the bus: say so rather than fail the scrape
            up.add_metric([], 0)
        yield up
        for family, _ in families:
            yield family


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


def serve(host: str, port: int) -> None:
    """Serve GPU memory, utilisation, power and temperature from NVML as Prometheus metrics."""
    try:
        REGISTRY.register(NvmlCollector())
    except Exception as e:  # NVMLError, or the library missing altogether
        raise FleetError(
            f"NVML did not start ({e}): this host has no NVIDIA driver the exporter can read.",
            "run the exporter on a host with an NVIDIA driver (in Compose: with the NVIDIA Container Toolkit).",
            "llmfleet exporter",
        ) from None
    start_http_server(port, addr=host)
    while True:
        time.sleep(3600)


def main(argv: list[str] | None = None) -> None:
    """`python -m llmfleet.exporter`: the exporter without the CLI, so its image needs only what it imports
    (requirements/exporter.in)."""
    parser = argparse.ArgumentParser(prog="python -m llmfleet.exporter", description=serve.__doc__)
    parser.add_argument("--host", default="0.0.0.0", help="address to listen on (in its container: all)")  # noqa: S104
    parser.add_argument("--port", type=int, default=9835)
    args = parser.parse_args(argv)
    try:
        serve(args.host, args.port)
    except FleetError as e:
        sys.exit(str(e))


if __name__ == "__main__":
    main()

"""The three dashboards, built with grafana-foundation-sdk: a fleet overview per model group, each GPU with the
server that uses it, and the gateway with what it adds. Every query comes from queries.py, by name.

`llmfleet dashboards` writes them to monitoring/grafana/dashboards/; a test fails when the committed JSON differs
from a fresh generation. The output is deterministic: same code, same bytes.
"""

from __future__ import annotations

import json
import string
from collections.abc import Sequence
from pathlib import Path

from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.builders import dashboard as builders
from grafana_foundation_sdk.builders import prometheus, stat, table, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as model
from grafana_foundation_sdk.models.prometheus import PromQueryFormat

from llmfleet.dashboards.queries import MODEL_GROUP, QUERIES, SERVER, Variable

DASHBOARDS_DIR = Path("monitoring/grafana/dashboards")
# The data source provisioned in monitoring/grafana/provisioning/datasources/prometheus.yaml, by its fixed uid.
DATASOURCE = model.DataSourceRef(type_val="prometheus", uid="prometheus")
TAG = "llmfleet"
REF_IDS = string.ascii_uppercase  # a panel's queries: A, B, C ...
# The KV cache colours match VllmKvCacheNearFull (0.9); vLLM's own dashboards turn red at 0.98.
KV_THRESHOLDS = [model.Threshold(None, "green"), model.Threshold(0.9, "orange"), model.Threshold(0.98, "red")]
SLO_STYLE = [  # an objective is a dashed red line, not a series
    model.DynamicConfigValue("color", {"mode": "fixed", "fixedColor": "red"}),
    model.DynamicConfigValue("custom.lineStyle", {"fill": "dash", "dash": [10, 10]}),
    model.DynamicConfigValue("custom.fillOpacity", 0),
]


# --- panels ----------------------------------------------------------------------------------------------------


def _target(name: str, ref: str, *, instant_table: bool = False) -> prometheus.Dataquery:
    query = QUERIES[name]
    target = prometheus.Dataquery().expr(query.expr).ref_id(ref)
    if query.legend:
        target = target.legend_format(query.legend)
    if instant_table:
        target = target.instant().format(PromQueryFormat.TABLE)
    return target


def _only(color: str) -> builders.ThresholdsConfig:
    return builders.ThresholdsConfig().mode(model.ThresholdsMode.ABSOLUTE).steps([model.Threshold(None, color)])


def graph(title: str, description: str, unit: str, names: Sequence[str], *, width: int = 12,
          height: int = 8, max_value: float | None = None) -> timeseries.Panel:  # fmt: skip
    panel = (
        timeseries.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .unit(unit)
        .span(width)
        .height(height)
        .min(0)
        .fill_opacity(10)
        .show_points(common.VisibilityMode.NEVER)
        .thresholds(_only("green"))
        .legend(
            common_builders.VizLegendOptions()
            .display_mode(common.LegendDisplayMode.TABLE)
            .placement(common.LegendPlacement.BOTTOM)
            .show_legend(True)
            .calcs(["lastNotNull", "max"])
        )
        .tooltip(
            common_builders.VizTooltipOptions().mode(common.TooltipDisplayMode.MULTI).sort(common.SortOrder.DESCENDING)
        )
    )
    if max_value is not None:
        panel = panel.max(max_value)
    for ref, name in zip(REF_IDS, names, strict=False):
        panel = panel.with_target(_target(name, ref))
    if any(QUERIES[name].legend.startswith("SLO") for name in names):
        panel = panel.override_by_regexp("^SLO", SLO_STYLE)
    return panel


def single(title: str, description: str, unit: str, name: str, *, width: int = 4,
           thresholds: list[model.Threshold] | None = None) -> stat.Panel:  # fmt: skip
    steps = builders.ThresholdsConfig().mode(model.ThresholdsMode.ABSOLUTE).steps(thresholds) if thresholds else None
    return (
        stat.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .unit(unit)
        .span(width)
        .height(4)
        .thresholds(steps or _only("text"))
        .reduce_options(common_builders.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
        .graph_mode(common.BigValueGraphMode.AREA)
        .color_mode(common.BigValueColorMode.VALUE)
        .with_target(_target(name, "A"))
    )


def cards_table() -> table.Panel:
    """One row per GPU: its VRAM, load, power, heat, and the engine metrics of the server that uses it."""
    columns = [  # query, column, unit
        ("card_memory_used", "VRAM used", "bytes"),
        ("card_memory_total", "VRAM total", "bytes"),
        ("card_utilization", "Busy", "percentunit"),
        ("card_power", "Power", "watt"),
        ("card_temperature", "Temperature", "celsius"),
        ("card_throttled", "Throttled", "bool_yes_no"),
        ("card_kv", "KV cache used", "percentunit"),
        ("card_ttft_p95", "TTFT p95", "s"),
        ("card_generation_tokens", "Output tokens/s", "short"),
    ]
    panel = (
        table.Panel()
        .title("Cards")
        .description("Each GPU, the server and model group using it, and that server's engine metrics.")
        .datasource(DATASOURCE)
        .span(24)
        .height(7)
        .thresholds(_only("text"))
    )
    for ref, (name, column, unit) in zip(REF_IDS, columns, strict=False):
        panel = panel.with_target(_target(name, ref, instant_table=True))
        panel = panel.override_by_name(column, [model.DynamicConfigValue("unit", unit)])
    rename = {f"Value #{ref}": column for ref, (_, column, _) in zip(REF_IDS, columns, strict=False)}
    order = ["gpu", "gpu_name", "server", "model_group", *rename]  # organize orders by the names before renaming
    return (
        panel.with_transformation(model.DataTransformerConfig(id_val="merge", options={}))
        .with_transformation(model.DataTransformerConfig(id_val="organize", options={
            "excludeByName": {"Time": True},
            "renameByName": {"gpu": "GPU", "gpu_name": "Card", "server": "Server", "model_group": "Model"} | rename,
            "indexByName": {field: i for i, field in enumerate(order)},
        }))
    )  # fmt: skip


def backend_states(title: str, description: str, name: str, states: dict[str, tuple[str, str]]) -> stat.Panel:
    """One stat per backend, its value shown as a named, coloured state: value -> (text, color)."""
    mapping = model.ValueMap(
        {value: model.ValueMappingResult(text=text, color=color, index=i)
         for i, (value, (text, color)) in enumerate(states.items())}
    )  # fmt: skip
    return (
        single(title, description, "none", name, width=8)
        .mappings([mapping])
        .graph_mode(common.BigValueGraphMode.NONE)
        .height(8)
    )


def backend_state() -> stat.Panel:
    return backend_states(
        "Backend state (the gateway's view)",
        "How LiteLLM's router last saw each backend: healthy, partial or complete outage.",
        "backend_state",
        {"0": ("healthy", "green"), "1": ("partial outage", "orange"), "2": ("outage", "red")},
    )


def router_rotation() -> stat.Panel:
    return backend_states(
        "Backends in rotation (the router's view)",
        "1 while the router sends to a backend: its health checks pass and its circuit breaker is closed.",
        "router_backend_in_rotation",
        {"1": ("in rotation", "green"), "0": ("out", "red")},
    )


# --- dashboards ------------------------------------------------------------------------------------------------


def _variable(variable: Variable, label: str) -> builders.QueryVariable:
    return (
        builders.QueryVariable(variable.name)
        .label(label)
        .query(variable.query)
        .datasource(DATASOURCE)
        .multi(True)
        .include_all(True)
        .all_value(".*")
        .refresh(model.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(model.VariableSort.ALPHABETICAL_ASC)
    )


def _dashboard(uid: str, title: str, description: str) -> builders.Dashboard:
    return (
        builders.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags([TAG])
        .readonly()  # provisioned from files: change the code, not the dashboard
        .refresh("10s")
        .time("now-1h", "now")
        .timezone("browser")
        .tooltip(model.DashboardCursorSync.CROSSHAIR)
        # Grafana's own annotations (and alert marks): written out, as Grafana expects a list here.
        .annotation(
            builders.AnnotationQuery()
            .name("Annotations & Alerts")
            .datasource(model.DataSourceRef(type_val="grafana", uid="-- Grafana --"))
            .enable(True)
            .hide(True)
            .icon_color("rgba(0, 211, 255, 1)")
            .type("dashboard")
            .built_in(1)
        )
        .link(
            builders.DashboardLink("llmfleet")
            .type(model.DashboardLinkType.DASHBOARDS)
            .tags([TAG])
            .as_dropdown(False)
            .include_vars(True)
            .keep_time(True)
        )
        .with_variable(_variable(MODEL_GROUP, "Model"))
    )


def overview() -> builders.Dashboard:
    return (
        _dashboard(
            "llmfleet-overview",
            "Fleet overview",
            "Per model group: traffic, errors, latency (TTFT, ITL, end to end), tokens/s, queue and KV cache.",
        )
        .with_row(builders.Row("Now"))
        .with_panel(single("Requests/s", "Requests the gateway answered, last minute.", "reqps", "requests"))
        .with_panel(single("Error rate", "Share answered with 5xx or 429, last 5 minutes.", "percentunit",
                           "error_ratio_5m"))
        .with_panel(single("TTFT p95", "vLLM's time to first token, p95 over 5 minutes.", "s", "ttft_p95_5m"))
        .with_panel(single("ITL p95", "vLLM's inter-token latency, p95 over 5 minutes.", "s", "itl_p95_5m"))
        .with_panel(single("Output tokens/s", "Tokens generated, last minute.", "short", "generation_tokens"))
        .with_panel(single("KV cache used", "The fullest server of the group.", "percentunit", "kv_fullest",
                           thresholds=KV_THRESHOLDS))
        .with_row(builders.Row("Traffic"))
        .with_panel(graph("Requests/s", "Requests the gateway answered, by status, and requests vLLM finished.",
                          "reqps", ["requests_by_status", "engine_requests"], width=8))
        .with_panel(graph("Error rate", "Share of requests answered with 5xx or 429 (a client's 4xx does not count), "
                          "and the objective SLO_ERROR_RATE.", "percentunit", ["error_ratio", "slo_error_ratio"],
                          width=8))
        .with_panel(graph("Tokens/s", "Prompt tokens read and output tokens generated by vLLM.", "short",
                          ["prompt_tokens", "generation_tokens"], width=8))
        .with_row(builders.Row("Latency, measured by vLLM"))
        .with_panel(graph("Time to first token", "From a request's arrival at vLLM to its first token; the objective "
                          "SLO_TTFT_P95_SECONDS.", "s", ["ttft_p50", "ttft_p95", "ttft_p99", "slo_ttft"], width=8))
        .with_panel(graph("Inter-token latency", "Time between two tokens of a stream; the objective "
                          "SLO_ITL_P95_SECONDS.", "s", ["itl_p50", "itl_p95", "itl_p99", "slo_itl"], width=8))
        .with_panel(graph("End-to-end latency", "From a request's arrival at vLLM to its last token.", "s",
                          ["e2e_p50", "e2e_p95", "e2e_p99"], width=8))
        .with_row(builders.Row("Load"))
        .with_panel(graph("Queue", "Requests decoding (running) and waiting for a place in the batch.", "short",
                          ["running", "waiting"], width=6))
        .with_panel(graph("KV cache used", "Per server. Full: requests wait, then running ones are preempted.",
                          "percentunit", ["kv_by_server"], width=6, max_value=1))
        .with_panel(graph("Preemptions", "Requests evicted from the KV cache per second, per server.", "short",
                          ["preemptions_by_server"], width=6))
        .with_panel(graph("Prefix cache hits", "Share of prompt tokens found in the prefix cache, per server.",
                          "percentunit", ["prefix_hits_by_server"], width=6, max_value=1))
    )  # fmt: skip


def gpus() -> builders.Dashboard:
    return (
        _dashboard(
            "llmfleet-gpus",
            "GPUs and their servers",
            "Each card's VRAM, load, power and temperature beside the engine metrics of the vLLM server using it.",
        )
        .with_variable(_variable(SERVER, "Server"))
        .with_row(builders.Row("Cards"))
        .with_panel(cards_table())
        .with_row(builders.Row("$server").repeat("server"))
        .with_panel(graph("Time to first token", "This server's TTFT.", "s",
                          ["server_ttft_p50", "server_ttft_p95", "server_ttft_p99"], width=6))
        .with_panel(graph("Inter-token latency", "This server's time between tokens.", "s",
                          ["server_itl_p50", "server_itl_p95", "server_itl_p99"], width=6))
        .with_panel(graph("Tokens/s", "Prompt tokens read and output tokens generated.", "short",
                          ["server_prompt_tokens", "server_generation_tokens"], width=6))
        .with_panel(graph("Queue and KV cache", "Requests running and waiting; KV cache used (right).", "short",
                          ["server_running", "server_waiting", "server_kv"], width=6)
                    .override_by_name("KV cache", [model.DynamicConfigValue("unit", "percentunit"),
                                                   model.DynamicConfigValue("custom.axisPlacement", "right")]))
        .with_panel(graph("VRAM", "Memory in use and in all, per card. vLLM reserves its share at start.",
                          "bytes", ["gpu_memory_used", "gpu_memory_total"], width=6))
        .with_panel(graph("GPU busy", "Share of time the card was computing.", "percentunit", ["gpu_utilization"],
                          width=6, max_value=1))
        .with_panel(graph("Power", "Draw and the enforced limit, per card.", "watt", ["gpu_power", "gpu_power_limit"],
                          width=6))
        .with_panel(graph("Temperature", "Core temperature and the card's own slowdown point.", "celsius",
                          ["gpu_temperature", "gpu_temperature_slowdown"], width=6))
        .with_panel(graph("Throttled", "1 while clocks are held down by heat or a power brake.", "short",
                          ["gpu_throttled"], width=6, max_value=1))
        .with_panel(graph("Output tokens per joule", "Tokens generated per second over the watts of the server's "
                          "cards.", "short", ["server_tokens_per_joule"], width=6))
        .with_panel(graph("End-to-end latency", "This server's time from a request's arrival to its last token.",
                          "s", ["server_e2e_p50", "server_e2e_p95", "server_e2e_p99"], width=6))
    )  # fmt: skip


def gateway() -> builders.Dashboard:
    return (
        _dashboard(
            "llmfleet-gateway",
            "Gateway",
            "The gateway: LiteLLM's traffic, errors, latency and what it adds over vLLM, its backends, and the router "
            "lane's.",
        )
        .with_row(builders.Row("Traffic"))
        .with_panel(graph("Requests by status", "Requests the gateway answered, by model and HTTP status.", "reqps",
                          ["requests_by_status"], width=8))
        .with_panel(graph("Error rate", "Share answered with 5xx or 429, and the objective SLO_ERROR_RATE.",
                          "percentunit", ["error_ratio", "slo_error_ratio"], width=8))
        .with_panel(graph("In flight", "Requests inside the gateway now.", "short", ["gateway_in_flight"], width=8))
        .with_row(builders.Row("Keys"))
        .with_panel(graph("Requests per key", "Requests by key name (llmfleet keys); the master key as master.",
                          "reqps", ["key_requests"], width=12))
        .with_panel(graph("Tokens per key", "Prompt and output tokens by key name, as LiteLLM counts them.",
                          "short", ["key_prompt_tokens", "key_completion_tokens"], width=12))
        .with_row(builders.Row("What the gateway adds"))
        .with_panel(graph("Mean latency", "Per request: at the gateway in all, in the gateway's call to vLLM, and "
                          "inside vLLM. The gaps are what the gateway and the hop add.", "s",
                          ["gateway_mean_total", "gateway_mean_upstream", "engine_mean_e2e"], width=8))
        .with_panel(graph("Gateway adds (mean)", "The gateway's total minus its call to vLLM; and minus vLLM's own "
                          "end-to-end time, which adds the network and HTTP.", "s",
                          ["gateway_added", "gateway_added_over_engine"], width=8))
        .with_panel(graph("Time to first token: the gateway's call and vLLM", "p95 of the first token as the gateway "
                          "sees it (streamed requests), beside vLLM's own.", "s",
                          ["gateway_upstream_ttft_p95", "engine_ttft_p95"], width=8))
        .with_panel(graph("Gateway latency", "A request's whole time at the gateway.", "s",
                          ["gateway_latency_p50", "gateway_latency_p95", "gateway_latency_p99"], width=12))
        .with_panel(graph("LiteLLM's own overhead (p95)", "LiteLLM's measure of its processing time; it records it "
                          "for requests that are not streamed.", "s", ["gateway_overhead_p95"], width=12))
        .with_row(builders.Row("Backends"))
        .with_panel(graph("Requests per backend", "Where the gateway sent requests: the balance between servers.",
                          "reqps", ["backend_requests"], width=8))
        .with_panel(graph("Failed attempts per backend", "Attempts a backend failed; the gateway retries them on "
                          "another, so clients may not see them.", "reqps", ["backend_failures"], width=8))
        .with_panel(backend_state())
        .with_row(builders.Row("Router lane (GATEWAY_DATA_PLANE=router)"))
        .with_panel(graph("Router: answers by status", "Completions the router (SMG) answered, by HTTP status. "
                          "The door answers a router 5xx that names a backend as a 503.", "reqps",
                          ["router_responses_by_status"], width=8))
        .with_panel(graph("Router: requests by model", "Completions the router routed, by model group.", "reqps",
                          ["router_requests"], width=8))
        .with_panel(graph("Router: request duration", "The router's measure of a request, to its answer's head "
                          "for a stream.", "s", ["router_duration_p50", "router_duration_p95"], width=8))
        .with_panel(graph("Router: requests per backend", "Where the router sent requests (power of two on the "
                          "engines' load): the balance between servers.", "reqps", ["router_backend_requests"],
                          width=8))
        .with_panel(graph("Router: in flight per backend", "Requests each backend holds for the router now.",
                          "short", ["router_backend_active"], width=8))
        .with_panel(router_rotation())
    )  # fmt: skip


DASHBOARDS = {"fleet-overview.json": overview, "gpus.json": gpus, "gateway.json": gateway}


def to_json(dashboard: builders.Dashboard) -> str:
    built = dashboard.build()
    for i, panel in enumerate(built.panels or [], start=1):  # stable ids: Grafana keys panel links and state on them
        panel.id_val = i
    return json.dumps(built, cls=JSONEncoder, indent=2, ensure_ascii=False) + "\n"


def render(root: Path) -> dict[Path, str]:
    return {root / DASHBOARDS_DIR / name: to_json(build()) for name, build in DASHBOARDS.items()}

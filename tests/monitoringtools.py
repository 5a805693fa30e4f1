"""What the monitoring tests share: the rule files read as data, the series names a PromQL expression reads, and
the checks run against a live Prometheus (tests/test_monitoring_live.py; reusable by any test holding a stack)."""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import httpx
import yaml

from llmfleet.dashboards.queries import QUERIES, VARIABLES
from llmfleet.exporter import METRIC_NAMES as EXPORTER_METRICS

ROOT = Path(__file__).resolve().parents[1]
RULES_DIR = ROOT / "monitoring" / "prometheus" / "rules"
RULE_TESTS_DIR = ROOT / "monitoring" / "prometheus" / "tests"
RUNBOOK = ROOT / "monitoring" / "runbook.md"
RUNBOOK_URL = "https://github.com/llmfleet/llmfleet/blob/main/monitoring/runbook.md"
# Every series in this file needs a GPU (our exporter); a CPU plan has none of them.
GPU_RULES_FILE = "gpu.rules.yaml"


@dataclass(frozen=True)
class Rule:
    file: str
    group: str
    name: str  # the recorded series, or the alert's name
    expr: str
    alert: bool
    data: dict

    @property
    def gpu_only(self) -> bool:
        return self.file == GPU_RULES_FILE


def rules() -> list[Rule]:
    found = []
    for path in sorted(RULES_DIR.glob("*.yaml")):
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                alert = "alert" in rule
                name = rule["alert" if alert else "record"]
                found.append(Rule(path.name, group["name"], name, rule["expr"], alert, rule))
    return found


def recorded() -> dict[str, Rule]:
    return {r.name: r for r in rules() if not r.alert}


def alerts() -> list[Rule]:
    return [r for r in rules() if r.alert]


# --- the series an expression reads ------------------------------------------------------------------------------

_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"')
_MATCHERS = re.compile(r"\{[^}]*\}")
_RANGES = re.compile(r"\[[^\]]*\]")
_LABEL_LISTS = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_KEYWORDS = {"and", "or", "unless", "bool", "offset", "inf", "nan", "Inf", "NaN"}


def series_names(expr: str) -> set[str]:
    """The metric names an expression selects (functions, keywords, labels and strings left out)."""
    text = _LABEL_LISTS.sub(" ", _RANGES.sub(" ", _MATCHERS.sub(" ", _STRINGS.sub('""', expr))))
    names = set()
    for match in _NAME.finditer(text):
        rest = text[match.end() :].lstrip()
        if rest.startswith("(") or match.group() in _KEYWORDS:
            continue  # a function or an aggregation
        if match.start() > 0 and (text[match.start() - 1].isdigit() or text[match.start() - 1] == "."):
            continue  # the exponent or unit of a number (1e-05)
        names.add(match.group())
    return names


def gpu_series() -> set[str]:
    """Names that exist only where the GPU exporter runs: its metrics and the rules built on them."""
    return set(EXPORTER_METRICS) | {r.name for r in rules() if r.gpu_only and not r.alert}


def reads_gpu_series(expr: str) -> bool:
    return bool(series_names(expr) & gpu_series())


# --- checks against a live Prometheus ----------------------------------------------------------------------------

# The value a panel's variables take in the live checks: "All", as the dashboards' allValue.
VARIABLE_VALUES = {f"${v.name}": ".*" for v in VARIABLES}


def for_prometheus(expr: str) -> str:
    for variable, value in VARIABLE_VALUES.items():
        expr = expr.replace(variable, value)
    return expr


def query(prometheus: str, expr: str) -> tuple[bool, list[dict], str]:
    """(parsed, result, error) of an instant query."""
    response = httpx.get(f"{prometheus}/api/v1/query", params={"query": expr}, timeout=30)
    body = response.json()
    if body.get("status") != "success":
        return False, [], f"{body.get('errorType')}: {body.get('error')}"
    return True, body["data"]["result"], ""


def has_numbers(result: list[dict]) -> bool:
    """Some sample is a number: a NaN (0/0 while idle) shows as nothing on a panel."""
    return any(not math.isnan(float(sample["value"][1])) for sample in result)


@dataclass(frozen=True)
class Check:
    what: str  # e.g. "panel query ttft_p95" or "recording rule server:vllm_requests:rate1m"
    expr: str
    gpu_only: bool  # reads series that only a plan on GPUs has (our exporter's)
    has_data: bool = True  # False for an alert's own expression: empty on a healthy stack

    def needs_data(self, gpus: bool) -> bool:
        """Whether it must return numbers on a stack with (or without) GPUs; otherwise it must parse."""
        return self.has_data and (gpus or not self.gpu_only)


def panel_checks() -> list[Check]:
    checks = [Check(f"panel query {name}", for_prometheus(q.expr), q.gpu_only) for name, q in QUERIES.items()]
    for v in VARIABLES:  # label_values(selector, label) has data when the selector's series carry the label
        checks.append(Check(f"variable {v.name}", for_prometheus(f"count by ({v.label}) ({v.selector})"), False))
    return checks


def rule_checks() -> list[Check]:
    """Each recording rule's expression and its recorded series; each alert's inputs (an alert's own expression
    is empty on a healthy stack, so it is checked for syntax, and its inputs for data)."""
    checks = []
    for rule in rules():
        if rule.alert:
            checks.append(Check(f"alert {rule.name}: its expression", rule.expr, rule.gpu_only, has_data=False))
            for name in sorted(series_names(rule.expr)):
                checks.append(Check(f"alert {rule.name}: reads {name}", name, gpu_only=name in gpu_series()))
        else:
            checks.append(Check(f"recording rule {rule.name}: its expression", rule.expr, rule.gpu_only))
            checks.append(Check(f"recording rule {rule.name}: its series", rule.name, rule.gpu_only))
    return checks


def run_checks(prometheus: str, checks: Iterable[Check], *, gpus: bool = False, deadline_s: float = 120,
               refresh: Callable[[], None] | None = None) -> list[str]:  # fmt: skip
    """Run every check until each parses and (where it must) returns numbers; return what still fails.

    A 1-minute rate needs traffic within the last minute: between rounds, `refresh` sends a little more."""
    pending = list(checks)
    problems: dict[str, str] = {}
    end = time.monotonic() + deadline_s
    while True:
        still = []
        for check in pending:
            parsed, result, error = query(prometheus, check.expr)
            if not parsed:
                problems[check.what] = f"does not parse: {error}\n    {check.expr}"  # waiting will not help
            elif not check.needs_data(gpus) or has_numbers(result):
                problems.pop(check.what, None)
            else:
                problems[check.what] = f"no data ({result or 'empty'})\n    {check.expr}"
                still.append(check)
        pending = still
        if not pending or time.monotonic() > end:
            return [f"{what}: {why}" for what, why in problems.items()]
        if refresh:
            refresh()
        time.sleep(10)  # two scrape and evaluation intervals


# --- traffic and the live Prometheus's own view -----------------------------------------------------------------


def send_traffic(gateway: str, key: str, model: str = "fleet-tiny") -> None:
    """A small burst through the gateway: plain and streamed completions, and one request for a model nobody
    serves (a client's 400). Small: the stack runs on 2 CPU cores."""
    import openai

    client = openai.OpenAI(base_url=f"{gateway}/v1", api_key=key, max_retries=0, timeout=60)
    messages = [{"role": "user", "content": "Count to five."}]
    for _ in range(3):
        client.chat.completions.create(model=model, messages=messages, max_tokens=8)  # type: ignore[arg-type]
        stream = client.chat.completions.create(
            model=model, messages=messages, max_tokens=16, stream=True,  # type: ignore[arg-type]
            stream_options={"include_usage": True},
        )  # fmt: skip
        for _chunk in stream:
            pass
    try:
        client.chat.completions.create(model="no-such-model", messages=messages, max_tokens=2)  # type: ignore[arg-type]
    except openai.APIStatusError as e:
        assert 400 <= e.status_code < 500, e
    else:
        raise AssertionError("the gateway served a model that does not exist")


def loaded_rules(prometheus: str) -> list[dict]:
    """Prometheus' rule groups, as /api/v1/rules reports them (with each rule's health and last error)."""
    return httpx.get(f"{prometheus}/api/v1/rules", timeout=30).json()["data"]["groups"]


def active_alerts(prometheus: str) -> list[dict]:
    return httpx.get(f"{prometheus}/api/v1/alerts", timeout=30).json()["data"]["alerts"]

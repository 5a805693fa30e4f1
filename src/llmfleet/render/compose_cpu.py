"""compose.cpu.yaml: the CPU variant of the Compose stack, rendered from the built-in CPU plan.

    docker compose -f compose.yaml -f compose.cpu.yaml up -d --wait

runs the smoke stack on a Docker host without a GPU. It is an override: the gateway, Prometheus, networks,
health checks and gateway settings stay those of compose.yaml; the plan's GPU services (and the GPU exporter)
are left out through a profile nobody enables, and the CPU plan's servers take their place, with the gateway's
model list and Prometheus' targets rendered for them.
"""

from __future__ import annotations

from llmfleet.plan.catalog import Catalog
from llmfleet.plan.schema import Plan
from llmfleet.plan.serving import BACKEND_GUARD, VLLM_CONTAINER_PORT, container_model_path, vllm_args
from llmfleet.render import rendered
from llmfleet.render.compose import cpu_service, router_service
from llmfleet.render.gateway import BORROWED_FILES, GATEWAY_FILES, compose_workers, container_command
from llmfleet.yamltext import Tagged

GPU_ONLY_PROFILE = "gpu"  # never in COMPOSE_PROFILES on a CPU host: what carries it does not start
MODELS_FILE = "gateway/models.cpu.yaml"
PROMETHEUS_FILE = "monitoring/prometheus/prometheus.cpu.yml"


def override(cpu: Plan, gpu: Plan, catalog: Catalog) -> str:
    services: dict[str, object] = {name: {"profiles": [GPU_ONLY_PROFILE]} for name, _ in gpu.named_servers()}
    services["gpu-exporter"] = {"profiles": [GPU_ONLY_PROFILE]}
    for name, server in cpu.named_servers():
        model = catalog.models[server.model]
        command = vllm_args(server, model, model_path=container_model_path(model), host="0.0.0.0",  # noqa: S104
                            port=VLLM_CONTAINER_PORT)  # fmt: skip
        # This file is read beside compose.yaml, so the secrets file is named from the project's folder.
        services[name] = cpu_service(
            name,
            server,
            command,
            model,
            secrets={"path": ".env.secrets.d/vllm.env", "required": True},
            guard_source=f"./vllm/{BACKEND_GUARD}",
        )
    # The gateway waits for the plan's backends, then for what gateway/compose.yaml has it wait for (Redis and the key
    # database): `!override` replaces that list, so it is said again here.
    backends = {name: {"condition": "service_healthy"} for name in (*(n for n, _ in cpu.named_servers()), "redis",
                                                                    "postgres")}  # fmt: skip
    services["gateway"] = {
        "command": Tagged("!override", container_command(compose_workers(cpu))),
        "depends_on": Tagged("!override", backends),
        "volumes": Tagged("!override", [
            *(f"./gateway/{name}:/etc/litellm/{name}:ro" for name in GATEWAY_FILES),
            *(f"./{path}:/etc/litellm/{path.name}:ro" for path in BORROWED_FILES),
            f"./{MODELS_FILE}:/etc/litellm/models.yaml:ro",
        ]),
    }  # fmt: skip
    router = router_service(cpu)  # the CPU plan's backends, not the GPU plan's
    services["router"] = {"command": Tagged("!override", router["command"]),
                          "depends_on": Tagged("!override", router["depends_on"])}  # fmt: skip
    services["prometheus"] = {
        "volumes": Tagged("!override", [
            f"./{PROMETHEUS_FILE}:/etc/prometheus/prometheus.yml:ro",
            "./monitoring/prometheus/rules:/etc/prometheus/rules:ro",
            "prometheus-data:/prometheus",
        ]),
    }  # fmt: skip
    return rendered({"services": services}, source="the built-in CPU plan (cpu_plan in src/llmfleet/plan/schema.py)")

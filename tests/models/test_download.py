"""`llmfleet download`: what can be tested here for real (huggingface.co cannot be reached from this machine).

Real: offline mode against a real cache layout, an unreachable endpoint (a closed port), a Hub that accepts the
connection and never answers (interrupted with Ctrl-C), the disk check against a real filesystem's free space
(and a 1 MiB tmpfs where this machine lets us mount one), ModelScope without its package.
Gated and missing repos also run end to end, against a tiny local HTTP server that answers every request with one
status and the Hub's error headers: snapshot_download wraps such answers (in a DryRunError) on the way out, which
only a real request shows. Through the mapping only: 429, 5xx, a bad token, a full disk. Those exceptions are made
by huggingface_hub's own `hf_raise_for_status` from real httpx2 responses, as it makes them from the Hub's answers.
"""

from __future__ import annotations

import errno
import json
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx2
import pytest
from conftest import ROOT, free_port
from huggingface_hub.errors import HfHubHTTPError, IncompleteSnapshotError
from huggingface_hub.utils import hf_raise_for_status
from modelfiles import SHARDS, hf_cache, truncate

from llmfleet.errors import FleetError
from llmfleet.models import download
from llmfleet.models.hfcache import HubSettings
from llmfleet.models.hub_errors import hub_error
from llmfleet.models.wanted import Wanted
from llmfleet.plan.catalog import load_catalog

MODEL = "Qwen2.5-7B-Instruct-AWQ"


@pytest.fixture
def hub_cli(cli, tmp_path):
    """The CLI with its own HF cache and a Hub endpoint that refuses connections (a closed port)."""
    cli.env["HF_CACHE"] = str(tmp_path / "hf")
    cli.env["HF_ENDPOINT"] = f"http://127.0.0.1:{free_port()}"
    cli.env["HF_HUB_OFFLINE"] = "0"
    cli.env.pop("HF_TOKEN", None)
    return cli


def test_offline_download_uses_the_cached_model_and_verifies_it(hub_cli, tmp_path):
    hf_cache(tmp_path / "hf")
    result = hub_cli("download", MODEL, "--offline")
    assert result.returncode == 0, result.stderr
    assert f"{MODEL}: complete" in result.stdout
    assert "found in the cache (offline)" in result.stdout


def test_offline_download_refuses_a_cached_model_with_a_truncated_shard(hub_cli, tmp_path):
    cached = hf_cache(tmp_path / "hf")
    truncate(cached.blob(SHARDS[0]), by=3)
    result = hub_cli("download", MODEL, "--offline")
    assert result.returncode == 1
    assert f"{SHARDS[0]}: truncated" in result.stderr


def test_offline_download_of_an_uncached_model_says_where_to_get_it(hub_cli):
    result = hub_cli("download", MODEL, "--offline")
    assert result.returncode == 1
    assert "offline mode forbids downloading it" in result.stderr
    assert "HF_HUB_OFFLINE=0" in result.stderr


def test_unreachable_hub_says_check_network_mirror_or_offline(hub_cli):
    result = hub_cli("download", MODEL)
    assert result.returncode == 1
    assert f"cannot reach {hub_cli.env['HF_ENDPOINT']}" in result.stderr
    assert "Connection refused" in result.stderr
    assert "HF_ENDPOINT=https://hf-mirror.com" in result.stderr
    assert "--offline" in result.stderr


def test_unreachable_hub_still_serves_a_complete_cached_copy(hub_cli, tmp_path):
    hf_cache(tmp_path / "hf")
    result = hub_cli("download", MODEL)
    assert result.returncode == 0, result.stderr
    assert "using the copy of" in result.stderr
    assert f"{MODEL}: complete" in result.stdout


def test_a_download_interrupted_with_ctrl_c_says_it_resumes(hub_cli):
    # A Hub that accepts the connection and never answers: the download waits, the user presses Ctrl-C.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        hub_cli.env["HF_ENDPOINT"] = f"http://127.0.0.1:{silent.getsockname()[1]}"
        proc = subprocess.Popen(
            [sys.executable, "-m", "llmfleet", "download", MODEL],
            cwd=ROOT, env=hub_cli.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            # Ctrl-C once the download is waiting on the Hub, not while Python still imports (typer exits 130
            # silently there): on a loaded machine the imports alone can take longer than any fixed sleep.
            silent.settimeout(60)
            waiting, _ = silent.accept()
            time.sleep(0.5)
            proc.send_signal(signal.SIGINT)
            _, stderr = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        waiting.close()
    assert proc.returncode == 1, stderr
    assert f"the download of {MODEL} was interrupted" in stderr
    assert f"run `llmfleet download {MODEL}` again: it resumes" in stderr


def test_disk_check_refuses_more_than_the_filesystem_has_free(tmp_path):
    free = shutil.disk_usage(tmp_path).free
    with pytest.raises(FleetError) as e:
        download.check_disk(free + 1024**3, tmp_path / "hub", "a model")
    assert f"the disk there ({tmp_path}) has {free / 1024**3:.1f} GiB free" in e.value.what
    assert "HF_CACHE" in e.value.fix
    download.check_disk(1024, tmp_path / "hub", "a small model")  # and lets a small one through


@pytest.fixture
def tiny_disk(tmp_path):
    mount = tmp_path / "small-disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True, check=False
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", str(mount)], check=True)


def test_download_refuses_before_any_network_when_the_disk_is_too_small(hub_cli, tiny_disk):
    hub_cli.env["HF_CACHE"] = str(tiny_disk)
    result = hub_cli("download", MODEL)
    assert result.returncode == 1
    assert f"{MODEL} (5.2 GiB by the catalog) needs 5.2 GiB" in result.stderr
    assert "has 0.0 GiB free" in result.stderr
    assert "cannot reach" not in result.stderr  # refused before asking the Hub


def test_modelscope_without_its_package_says_how_to_install_it(hub_cli):
    try:
        import modelscope  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("modelscope is installed here")
    result = hub_cli("download", MODEL, "--source", "modelscope")
    assert result.returncode == 1
    assert "pip install modelscope" in result.stderr


def test_unknown_model_names_the_catalog(hub_cli):
    result = hub_cli("download", "Qwen9-1T")
    assert result.returncode == 1
    assert "'Qwen9-1T' is not in the catalog" in result.stderr


def test_list_shows_size_cards_and_cache_state(hub_cli, tmp_path):
    cached = hf_cache(tmp_path / "hf")
    truncate(cached.blob(SHARDS[1]), by=1)
    result = hub_cli("download", "--list", "--json")
    assert result.returncode == 0, result.stderr
    rows = {r["name"]: r for r in json.loads(result.stdout)}
    assert set(rows) == set(load_catalog(ROOT).models)
    assert rows[MODEL]["weights_gib"] == load_catalog(ROOT).models[MODEL].weights_gib
    assert rows[MODEL]["fits"].startswith(("8 GiB and up", "12 GiB and up"))
    assert rows[MODEL]["cached"] == "incomplete (1 problem(s))"
    assert rows["fleet-tiny"]["cached"] == "built in"


@pytest.fixture
def hub_answering() -> Iterator:
    """Start a local endpoint that answers every request with `status` and `headers`; return its URL."""
    servers = []

    def start(status: int, headers: dict[str, str]) -> str:
        class Answer(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_HEAD = do_GET

            def log_message(self, *args: object) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Answer)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def test_gated_repo_end_to_end_says_accept_the_terms(hub_cli, hub_answering):
    hub_cli.env["HF_ENDPOINT"] = hub_answering(401, {"X-Error-Code": "GatedRepo"})
    result = hub_cli("download", MODEL)
    assert result.returncode == 1, result.stderr
    assert "Qwen/Qwen2.5-7B-Instruct-AWQ is gated" in result.stderr
    assert "accept the terms" in result.stderr and "HF_TOKEN" in result.stderr


def test_missing_repo_end_to_end_names_the_catalog_entry(hub_cli, hub_answering):
    hub_cli.env["HF_ENDPOINT"] = hub_answering(404, {"X-Error-Code": "RepoNotFound"})
    result = hub_cli("download", MODEL)
    assert result.returncode == 1, result.stderr
    assert "(HTTP 404)" in result.stderr
    assert f"where: vllm/catalog.yaml: models.{MODEL}.repo" in result.stderr


# --- huggingface_hub's answers, mapped to what to do ----------------------------------------------------------------


def hub_answer(status: int, headers: dict[str, str] | None = None, path: str = "/api/models/Qwen/X/revision/main"):
    """The exception huggingface_hub raises for this HTTP answer, made by its own hf_raise_for_status."""
    request = httpx2.Request("GET", f"https://huggingface.co{path}")
    response = httpx2.Response(status, headers=headers or {}, request=request)
    with pytest.raises(HfHubHTTPError) as caught:
        hf_raise_for_status(response)
    return caught.value


WANTED = Wanted(MODEL, "Qwen/Qwen2.5-7B-Instruct-AWQ", load_catalog(ROOT).models[MODEL])


def mapped(e: BaseException, offline: bool = False, tmp: Path | None = None) -> FleetError:
    return hub_error(e, WANTED, HubSettings(HF_CACHE=str(tmp or "/nonexistent")), offline=offline)


def test_gated_repo_says_accept_the_terms_and_set_a_token():
    e = mapped(hub_answer(403, {"X-Error-Code": "GatedRepo"}))
    assert "is gated" in e.what
    assert "https://huggingface.co/Qwen/Qwen2.5-7B-Instruct-AWQ" in e.fix
    assert "HF_TOKEN" in e.fix
    assert e.where == "HF_TOKEN (environment)"


def test_repo_not_found_401_says_check_the_name_or_sign_in():
    e = mapped(hub_answer(401, {"X-Error-Code": "RepoNotFound"}))
    assert "(HTTP 401)" in e.what and "name is wrong" in e.what
    assert e.where == f"vllm/catalog.yaml: models.{MODEL}.repo"


def test_bad_token_401_says_replace_the_token():
    e = mapped(hub_answer(401, {"X-Error-Message": "Invalid credentials in Authorization header"}))
    assert "refused the token (HTTP 401)" in e.what
    assert "wrong or expired" in e.fix


def test_rate_limit_says_wait_and_resume():
    e = mapped(hub_answer(429, path="/Qwen/X/resolve/main/config.json"))
    assert "rate-limiting" in e.what and "resumes" in e.fix


def test_hub_outage_suggests_the_mirror():
    e = mapped(hub_answer(503, path="/Qwen/X/resolve/main/config.json"))
    assert "HTTP 503" in e.what and "hf-mirror.com" in e.fix


def test_disk_full_during_download_says_free_space_and_resume(tmp_path):
    e = mapped(OSError(errno.ENOSPC, "No space left on device"), tmp=tmp_path)
    assert "filled up" in e.what and "resumes" in e.fix


def test_incomplete_cached_snapshot_offline_says_download_with_network():
    e = mapped(IncompleteSnapshotError("2 file(s) are missing", snapshot_path="/x"), offline=True)
    assert "incomplete" in e.what and "HF_HUB_OFFLINE=0" in e.fix


def test_an_unknown_error_is_not_dressed_up_as_advice():
    with pytest.raises(ZeroDivisionError):
        mapped(ZeroDivisionError("a bug"))

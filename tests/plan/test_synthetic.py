"""The synthetic model: created once, offline, with a tokenizer that speaks ChatML in English and Chinese."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tokenizers import Tokenizer

from llmfleet.plan import synthetic


@pytest.fixture
def model_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("LLMFLEET_CACHE_DIR", str(tmp_path))
    return synthetic.ensure_model()


def test_model_is_created_in_the_cache_outside_the_checkout(model_dir: Path, tmp_path: Path) -> None:
    assert model_dir.parent == tmp_path / "models"
    config = json.loads((model_dir / "config.json").read_text())
    assert config["architectures"] == ["Qwen2ForCausalLM"]
    assert config["hidden_size"] // config["num_attention_heads"] == config["head_dim"] == 64


def test_second_use_reuses_the_files(model_dir: Path) -> None:
    before = (model_dir / "tokenizer.json").stat().st_mtime_ns
    assert synthetic.ensure_model() == model_dir
    assert (model_dir / "tokenizer.json").stat().st_mtime_ns == before


def test_tokenizer_round_trips_english_and_chinese(model_dir: Path) -> None:
    tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    text = "Summarise the document. 请总结文档。"
    ids = tokenizer.encode(text).ids
    assert max(ids) < synthetic.VOCAB_SIZE
    assert tokenizer.decode(ids) == text


def test_chat_markers_are_single_tokens_and_eos_is_im_end(model_dir: Path) -> None:
    tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    assert tokenizer.token_to_id("<|im_end|>") == synthetic.CONFIG["eos_token_id"]
    assert tokenizer.encode("<|im_start|>").ids == [1]
    settings = json.loads((model_dir / "tokenizer_config.json").read_text())
    assert settings["eos_token"] == "<|im_end|>" and "<|im_start|>" in settings["chat_template"]


def test_every_place_that_shows_it_says_it_is_a_smoke_test_model(model_dir: Path) -> None:
    assert "smoke-test" in (model_dir / "README.md").read_text()
    from llmfleet.plan.catalog import load_catalog

    assert "smoke test" in load_catalog(Path(__file__).resolve().parents[2]).models["fleet-tiny"].description

"""src/ type-checks with mypy as pyproject.toml configures it (what `make lint` runs)."""

from __future__ import annotations

import pytest
from conftest import ROOT
from mypy import api


def test_mypy_finds_no_type_error_in_src(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)  # [tool.mypy] names src/ relative to the project
    report, errors, status = api.run([])
    assert status == 0, report + errors

"""The serving GC threshold (CANONIC_GC_GEN0_THRESHOLD) is applied for the app's lifetime only."""

from __future__ import annotations

import gc
from pathlib import Path

import httpx
import pytest
from pydantic import ValidationError

from gateway.app import create_app
from gateway.settings import Settings
from tests.harness import serve_app

REPO = Path(__file__).resolve().parents[2]


def _serve_and_read(tmp_path: Path, **overrides) -> tuple[int, int]:
    before = gc.get_threshold()[0]
    app = create_app(Settings(scope_dir=REPO, bindings_env={}, ledger_path=tmp_path / "l" / "d.jsonl", **overrides))
    with serve_app(app) as url:
        assert httpx.get(url + "/healthz", timeout=5).status_code == 200
        during = gc.get_threshold()[0]
    assert gc.get_threshold()[0] == before  # restored at shutdown
    return before, during


def test_threshold_applies_while_serving_and_is_restored(tmp_path):
    before, during = _serve_and_read(tmp_path, gc_gen0_threshold=12_345)
    assert during == 12_345 != before


def test_zero_keeps_the_interpreters_threshold(tmp_path):
    before, during = _serve_and_read(tmp_path, gc_gen0_threshold=0)
    assert during == before


def test_a_negative_threshold_is_refused_by_settings():
    with pytest.raises(ValidationError, match="gc_gen0_threshold"):
        Settings(gc_gen0_threshold=-1)

"""The gateway under uvicorn (in a thread, on a socket bound to a free loopback port) and a loopback
OTLP receiver. Every wait is bounded."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from gateway.app import create_app
from gateway.settings import Settings
from tests.fakes.otlp_receiver import OtlpReceiver
from tests.harness import serve_app

REPO = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 15.0

# Short OTel timings so exports happen within the tests' deadlines.
FAST = {
    "OTEL_BSP_SCHEDULE_DELAY": "50",
    "OTEL_METRIC_EXPORT_INTERVAL": "200",
    "OTEL_EXPORTER_OTLP_TIMEOUT": "500",
    "OTEL_BSP_EXPORT_TIMEOUT": "1000",
}


@contextmanager
def running_gateway(tmp_path: Path, env: dict[str, str], **overrides):
    """Yield (base_url, app) of a real gateway; stops it (running the lifespan's shutdown) on exit."""
    settings = Settings(
        scope_dir=REPO,
        bindings_env=env,
        ledger_path=tmp_path / "ledger" / "decisions.jsonl",
        **overrides,
    )
    app = create_app(settings)
    with serve_app(app, start_timeout_s=START_TIMEOUT_S) as url:
        yield url, app


@pytest.fixture
def receiver():
    with OtlpReceiver() as r:
        yield r


@pytest.fixture
def client():
    with httpx.Client(timeout=5.0) as c:
        yield c

"""The gateway under uvicorn (in a thread, on a socket bound to a free loopback port) and a loopback
OTLP receiver. Every wait is bounded."""

from __future__ import annotations

import socket
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import uvicorn

from gateway.app import create_app
from gateway.settings import Settings
from tests.fakes.otlp_receiver import OtlpReceiver

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
    # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY only on sockets whose proto is TCP (proto 0 -> +40 ms)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + START_TIMEOUT_S
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            thread.join(timeout=15)  # let a half-started lifespan shut down before the next test
            sock.close()
            raise RuntimeError("gateway did not start" + ("" if not thread.is_alive() else " (and did not stop)"))
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}", app
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        sock.close()
        assert not thread.is_alive(), "gateway did not stop in time"


@pytest.fixture
def receiver():
    with OtlpReceiver() as r:
        yield r


@pytest.fixture
def client():
    with httpx.Client(timeout=5.0) as c:
        yield c

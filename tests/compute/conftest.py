"""The gateway under uvicorn (thread, free loopback port) with the real local provider (llama.cpp +
Gemma 3 270M) in per-test directories. Every llama.cpp server a test starts is killed in a
finalizer, whatever happened to the test."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from gateway.app import create_app
from gateway.auth import SCOPES, mint_token
from gateway.settings import Settings
from providers.local import LocalBackend
from tests.harness import GatewayClient, serve_app
from tests.procs import kill_groups, processes_under

REPO = Path(__file__).resolve().parents[2]
SECRET = "test-secret-compute-0123456789abcdef"
START_TIMEOUT_S = 15.0
CANONIC = str(Path(sys.executable).with_name("canonic"))
SPEC = {"provider": "local", "gpu": "cpu", "disk": 1, "template": "gemma-3-270m"}


def local_available() -> bool:
    return LocalBackend(instances_dir=Path("/nonexistent")).available().ok


needs_local = pytest.mark.skipif(not local_available(), reason="llama-cpp-python[server] or the gemma package missing")


def servers_under(root: Path) -> list[int]:
    """Live processes whose working directory is under ``root`` (the llama.cpp servers)."""
    return processes_under(root)


def kill_servers(root: Path) -> list[int]:
    return kill_groups(lambda: processes_under(root))


def compute_settings(root: Path, env: dict[str, str] | None = None, **overrides) -> Settings:
    values = dict(
        scope_dir=REPO,
        bindings_env=dict(env or {}),
        GATEWAY_JWT_SECRET=SECRET,
        ledger_path=root / "ledger" / "decisions.jsonl",
        tracking_dir=root / "config",
        instances_dir=root / "instances",
        telemetry_enabled=False,
        spinup_timeout_s=60.0,
        health_gate_timeout_s=20.0,
        progress_interval_s=1.0,
        teardown_timeout_s=10.0,
    )
    values.update(overrides)
    return Settings(**values)


def cli_env(root: Path, env: dict[str, str] | None = None) -> dict[str, str]:
    """The environment a CLI subprocess reads its Settings and bindings from."""
    out = {k: v for k, v in os.environ.items() if not k.startswith(("CANONIC_", "LOCAL_", "ALLOWED_"))}
    out.update({
        "CANONIC_SCOPE_DIR": str(REPO),
        "CANONIC_LEDGER_PATH": str(root / "ledger" / "decisions.jsonl"),
        "CANONIC_TRACKING_DIR": str(root / "config"),
        "CANONIC_INSTANCES_DIR": str(root / "instances"),
        "CANONIC_TELEMETRY_ENABLED": "false",
        "CANONIC_SPINUP_TIMEOUT_S": "60",
        "CANONIC_HEALTH_GATE_TIMEOUT_S": "20",
        "CANONIC_PROGRESS_INTERVAL_S": "1",
        "CANONIC_TEARDOWN_TIMEOUT_S": "10",
    })
    out.update(env or {})
    return out


def run_cli(root: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 90.0,
            stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CANONIC, "compute", *args], capture_output=True, text=True, timeout=timeout,
                          env=cli_env(root, env), input=stdin if stdin is not None else "", cwd=root)


def ledger_records(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


class Gateway(GatewayClient):
    sdk_timeout_s = 60.0

    def http(self, scopes=SCOPES) -> httpx.Client:
        token = mint_token(self.settings, "tester", list(scopes), 600)
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {token}"}, timeout=90.0,
                            trust_env=False)

    def ledger(self) -> list[dict]:
        return ledger_records(self.settings.ledger_path)


@contextmanager
def running_gateway(root: Path, env: dict[str, str] | None = None, **overrides) -> Iterator[Gateway]:
    settings = compute_settings(root, env, **overrides)
    app = create_app(settings)
    token = mint_token(settings, "tester", ["inference"], 600)
    with serve_app(app, start_timeout_s=START_TIMEOUT_S, stop_timeout_s=60) as url:
        yield Gateway(url, app, settings, token)


@pytest.fixture
def root(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path
    kill_servers(tmp_path)


def wait_for(predicate, timeout_s: float, interval_s: float = 0.1):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval_s)
    raise AssertionError(f"condition not met within {timeout_s} s")

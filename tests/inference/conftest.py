"""The gateway under uvicorn (thread, free loopback port) in front of loopback fake vLLM servers.

``gateway(fallback=..., **env)`` starts a fresh gateway per test (circuits are per app, so no
state leaks between tests); ``primary`` and ``backup`` are fake vLLM servers, reset per test.
"""

from __future__ import annotations

import time
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest

from gateway.app import create_app
from gateway.auth import mint_token
from gateway.settings import Settings
from tests.fakes.fake_vllm import FakeVLLM
from tests.harness import GatewayClient, serve_app

REPO = Path(__file__).resolve().parents[2]
SECRET = "test-secret-inference-0123456789abcdef"
START_TIMEOUT_S = 15.0
UPSTREAM_KEY = "upstream-key-not-for-clients"


class Gateway(GatewayClient):
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def circuit(self, provider: str = "VASTAI") -> str:
        ups = self.app.state.upstreams.for_provider(provider)
        return ups[0].circuit.state


@contextmanager
def running_gateway(tmp_path: Path, env: dict[str, str], **overrides):
    settings = Settings(
        scope_dir=REPO,
        bindings_env=env,
        GATEWAY_JWT_SECRET=SECRET,  # jwt_secret= is ignored: the field has a validation alias
        ledger_path=tmp_path / "ledger" / "decisions.jsonl",
        telemetry_enabled=False,
        # compute state in the test's own directory: a DELETE /v1/compute/instances?confirm=true from
        # schemathesis must never reach a developer's running local model under the repo
        instances_dir=tmp_path / "instances",
        tracking_dir=tmp_path / "config",
        **overrides,
    )
    app = create_app(settings)
    token = mint_token(settings, "tester", ["inference"], 600)
    with serve_app(app, start_timeout_s=START_TIMEOUT_S) as url:
        yield Gateway(url, app, settings, token)


@pytest.fixture(scope="session")
def _fakes():
    primary = FakeVLLM(model="fake-model").start()
    backup = FakeVLLM(model="backup-model").start()
    yield primary, backup
    primary.stop()
    backup.stop()


@pytest.fixture
def primary(_fakes):
    fake = _fakes[0]
    fake.start()  # a test may have stopped it
    fake.reset()
    fake.faults.api_key = UPSTREAM_KEY
    yield fake
    fake.reset()


@pytest.fixture
def backup(_fakes):
    fake = _fakes[1]
    fake.start()
    fake.reset()
    yield fake
    fake.reset()


def base_env(primary: FakeVLLM, backup: FakeVLLM | None = None, **extra: str) -> dict[str, str]:
    env = {
        "VASTAI_BASE_URL": primary.base_url,
        "VASTAI_MODEL": primary.model,
        "VASTAI_API_KEY": UPSTREAM_KEY,
        "VASTAI_TIMEOUT_MS": "1000",
        "VASTAI_TRIES": "3",
        "VASTAI_RETRY_DELAY_MS": "10",
        "TOKENS_MAX": "256",
        "MAX_TOKENS": "16",
    }
    if backup is not None:
        env.update({"FALLBACK_PROVIDER": "BACKUP", "BACKUP_BASE_URL": backup.base_url,
                    "BACKUP_MODEL": backup.model})
    env.update(extra)
    return {k: v for k, v in env.items() if v is not None}


@pytest.fixture
def gateway(tmp_path, primary, backup):
    """gateway(fallback=False, **env) -> a running Gateway; stopped at the end of the test."""
    with ExitStack() as stack:

        def start(fallback: bool = False, **env: str) -> Gateway:
            return stack.enter_context(
                running_gateway(tmp_path / f"gw{len(stack._exit_callbacks)}",
                                base_env(primary, backup if fallback else None, **env))
            )

        yield start


def chat(**kw):
    body = {"model": "fake-model", "messages": [{"role": "user", "content": "say hello"}]}
    body.update(kw)
    return body


def ledger_records(gw: Gateway, want, timeout_s: float = 5.0) -> list[dict]:
    """The ledger's records once ``want(records)`` holds (polled: inference records lag by up to
    ledger_max_lag_ms); the last read when it never does."""
    import json

    path = gw.settings.ledger_path
    deadline = time.monotonic() + timeout_s
    while True:
        lines = path.read_text().splitlines() if path.exists() else []
        records = [json.loads(line) for line in lines if line.strip()]
        if want(records) or time.monotonic() > deadline:
            return records
        time.sleep(0.05)

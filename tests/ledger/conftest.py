"""Shared helpers for the ledger tests: settings rooted in tmp_path, the CLI as a subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.ledger import Ledger
from gateway.settings import Settings

CANONIC = str(Path(sys.executable).with_name("canonic"))


def make_settings(root: Path, **overrides) -> Settings:
    values = {
        "scope_dir": root,
        "ledger_path": Path("var/ledger/decisions.jsonl"),
        "ledger_max_lag_ms": 20,
        "ledger_queue_size": 1000,
        "ledger_max_bytes": 64 * 1024 * 1024,
    }
    values.update(overrides)
    return Settings(**values)


def ledger_path(settings: Settings) -> Path:
    return settings.resolve(settings.ledger_path)


def decision(i: int, **extra) -> dict:
    rec = {
        "decision_id": f"d{i:05d}",
        "principal": f"user{i % 7}",
        "action": "inference.chat",
        "model": "qwen",
        "provider": "vllm",
        "allow": i % 5 != 0,
        "rule_ids": [f"VASTAI.md:{10 + i % 3}"],
        "policy_revision": "ab" * 32,
        "trace_id": f"{i:032x}",
        "request_id": f"req-{i}",
        "outcome": f"n{i}",
        "latency_ms": 1.5,
    }
    rec.update(extra)
    return rec


def read_records(path: Path) -> list[dict]:
    """All records of the active file and its rotated predecessors, in chain order."""
    from gateway.ledger_verify import ledger_files

    out = []
    for f in ledger_files(path):
        out.extend(json.loads(line) for line in f.read_text().splitlines())
    return out


def run_cli(*args: str, env: dict | None = None, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run([CANONIC, *args], capture_output=True, text=True, timeout=timeout, env=env)


async def write_ledger(settings: Settings, n: int, *, durable: bool = True) -> list[str]:
    led = Ledger(settings)
    await led.start()
    try:
        return [await led.append(decision(i), durable=durable) for i in range(n)]
    finally:
        await led.stop()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path)

"""A bad OTEL_* value: one clear line naming the variable (no traceback, exit 2 from `canonic serve`),
and credentials in an endpoint URL never echoed or logged."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.settings import Settings
from gateway.telemetry import Telemetry
from gateway.telemetry_config import TelemetryConfigError, check_config

from .conftest import REPO, running_gateway

CANONIC = str(Path(sys.executable).with_name("canonic"))


def test_serve_with_a_bad_sampler_exits_2_with_one_line(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "OTEL_TRACES_SAMPLER": "bogus", "GATEWAY_JWT_SECRET": "x" * 40,
           "CANONIC_LEDGER_PATH": str(tmp_path / "ledger.jsonl")}
    proc = subprocess.run([CANONIC, "serve", "--port", str(port), "--scope", str(REPO), "--no-embedded-local"],
                          capture_output=True, text=True, timeout=60, env=env)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "OTEL_TRACES_SAMPLER" in lines[0] and "Traceback" not in proc.stderr, lines


def test_check_config_names_the_variable():
    for env, name in (({"OTEL_TRACES_SAMPLER": "bogus"}, "OTEL_TRACES_SAMPLER"),
                      ({"OTEL_EXPORTER_OTLP_PROTOCOL": "carrier-pigeon"}, "OTEL_EXPORTER_OTLP_PROTOCOL"),
                      ({"OTEL_BSP_SCHEDULE_DELAY": "soon"}, "OTEL_BSP_SCHEDULE_DELAY")):
        with pytest.raises(TelemetryConfigError) as info:
            check_config(Settings(scope_dir=REPO, bindings_env=env))
        assert name in str(info.value) and "\n" not in str(info.value)
    assert check_config(Settings(scope_dir=REPO, bindings_env={"OTEL_TRACES_SAMPLER": "bogus"},
                                 telemetry_enabled=False)) is None
    assert check_config(Settings(scope_dir=REPO, bindings_env={})) is not None


def test_endpoint_userinfo_is_never_echoed_or_logged(caplog):
    with pytest.raises(TelemetryConfigError) as info:
        check_config(Settings(scope_dir=REPO, bindings_env={
            "OTEL_EXPORTER_OTLP_ENDPOINT": "ftp://otel-user:hunter2-secret@collector.example:4318"}))
    assert "hunter2-secret" not in str(info.value) and "otel-user" not in str(info.value)
    assert "collector.example:4318" in str(info.value)

    caplog.set_level(logging.INFO)
    tel = Telemetry(Settings(scope_dir=REPO, bindings_env={
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://otel-user:hunter2-secret@127.0.0.1:9"}))
    try:
        logged = "\n".join(r.getMessage() for r in caplog.records)
        assert "-> http://127.0.0.1:9/v1/traces" in logged
        assert "hunter2-secret" not in logged and "otel-user" not in logged
    finally:
        tel.shutdown()


def test_a_gateway_that_cannot_start_releases_its_thread_and_socket(tmp_path):
    with pytest.raises(RuntimeError, match="did not start"):
        with running_gateway(tmp_path, {"OTEL_TRACES_SAMPLER": "bogus"}):
            pass
    # nothing left serving: the next gateway starts normally
    with running_gateway(tmp_path, {}) as (base, _app):
        assert base.startswith("http://127.0.0.1:")

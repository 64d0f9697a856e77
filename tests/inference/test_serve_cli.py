"""`canonic serve` as a subprocess: refuses a non-loopback host without a key (exit 2), refuses
an unusable key (exit 2), and on loopback prints an admin token the running gateway accepts."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import httpx

from tests.inference.conftest import REPO

SERVE_TIMEOUT_S = 30.0


def _env(tmp_path, **extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GATEWAY_JWT", "CANONIC_", "OTEL_"))}
    env.update({"CANONIC_LEDGER_PATH": str(tmp_path / "ledger.jsonl"), "CANONIC_TELEMETRY_ENABLED": "false",
                "CANONIC_INSTANCES_DIR": str(tmp_path / "instances"), "PYTHONUNBUFFERED": "1"})
    env.update(extra)
    return env


def _serve(tmp_path, *args, **env):
    return [sys.executable, "-m", "gateway.cli", "serve", "--scope", str(REPO), "--no-embedded-local", *args]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_non_loopback_host_without_a_key_exits_2(tmp_path):
    out = subprocess.run(_serve(tmp_path, "--host", "0.0.0.0", "--port", "1"), env=_env(tmp_path),
                         capture_output=True, text=True, timeout=SERVE_TIMEOUT_S)
    assert out.returncode == 2
    assert "refusing to start" in out.stderr and "not loopback" in out.stderr


def test_unusable_public_key_exits_2_naming_it(tmp_path):
    out = subprocess.run(_serve(tmp_path, "--port", "1"), capture_output=True, text=True, timeout=SERVE_TIMEOUT_S,
                         env=_env(tmp_path, GATEWAY_JWT_PUBLIC_KEY="not a key"))
    assert out.returncode == 2
    assert "GATEWAY_JWT_PUBLIC_KEY" in out.stderr and "refusing to start" in out.stderr


def test_loopback_run_prints_an_admin_token_the_gateway_accepts(tmp_path):
    port = _free_port()
    proc = subprocess.Popen(_serve(tmp_path, "--port", str(port), "--log-level", "warning"), env=_env(tmp_path),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        token = None
        deadline = time.monotonic() + SERVE_TIMEOUT_S
        while token is None and time.monotonic() < deadline:
            line = proc.stderr.readline()
            if not line:
                break
            if "export CANONIC_TOKEN=" in line:
                token = line.split("export CANONIC_TOKEN=", 1)[1].strip()
        assert token, "no admin token printed"
        r = None
        while time.monotonic() < deadline:
            try:
                r = httpx.get(f"http://127.0.0.1:{port}/governance", headers={"Authorization": f"Bearer {token}"},
                              timeout=2)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        assert r is not None and r.status_code == 200
        bad = httpx.get(f"http://127.0.0.1:{port}/governance", headers={"Authorization": "Bearer x.y.z"}, timeout=2)
        assert bad.status_code == 401
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        proc.stderr.close()

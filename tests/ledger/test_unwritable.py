"""Fail closed: when the ledger cannot be written, durable appends raise ServiceUnavailable (503 with
Retry-After), the ledger reports unavailable, the incident is logged once, and it recovers on its own
when the path is writable again, writing the record that failed (nothing silently lost).

Tests run as root, so chmod cannot make a write fail; we replace the ledger's parent directory with
a regular file instead (the writer notices the path no longer is its open file and must reopen)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from gateway.errors import ServiceUnavailable
from gateway.ledger import Ledger
from gateway.ledger_verify import verify_chain
from tests.ledger.conftest import decision, ledger_path, make_settings, read_records


async def _until(pred, timeout_s: float = 5.0) -> bool:
    for _ in range(int(timeout_s / 0.02)):
        if pred():
            return True
        await asyncio.sleep(0.02)
    return pred()


async def test_unwritable_at_start_then_recovers(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    path = ledger_path(settings)
    path.parent.parent.mkdir(parents=True)
    path.parent.write_text("a file where the ledger directory should be\n")
    led = Ledger(settings)
    await led.start()
    try:
        assert not led.available
        ready = led.readiness()
        assert ready["ok"] is False and "unavailable" in ready["detail"]
        with pytest.raises(ServiceUnavailable) as info:
            led.check_available()
        assert info.value.status == 503 and info.value.headers == {"Retry-After": "1"}
        assert info.value.message.startswith("decision ledger unavailable")
        with pytest.raises(ServiceUnavailable):
            await led.append(decision(1), durable=True)
        with pytest.raises(ServiceUnavailable):
            await led.append(decision(2), durable=False)
        assert led.drops == 2

        path.parent.unlink()
        path.parent.mkdir()
        assert await _until(lambda: led.available), led.readiness()
        await led.append(decision(3), durable=True)
    finally:
        await led.stop()
    result = verify_chain(path)
    assert result.ok and result.records == 1
    assert read_records(path)[0]["decision_id"] == "d00003"


async def test_failure_while_running_is_logged_once_and_recovers(tmp_path: Path, caplog) -> None:
    caplog.set_level(logging.WARNING, logger="canonic.ledger")
    settings = make_settings(tmp_path)
    path = ledger_path(settings)
    led = Ledger(settings)
    await led.start()
    moved = path.parent.with_name("ledger.moved")
    try:
        for i in range(5):
            await led.append(decision(i), durable=True)
        path.parent.rename(moved)
        path.parent.write_text("not a directory\n")

        with pytest.raises(ServiceUnavailable):
            await led.append(decision(5), durable=True)
        assert not led.available and led.readiness()["ok"] is False
        with pytest.raises(ServiceUnavailable):
            await led.append(decision(6), durable=True)  # refused up front, not chained
        assert await _until(lambda: led.write_failures >= 3)
        errors = [r for r in caplog.records if r.levelno == logging.ERROR and r.name == "canonic.ledger"]
        assert len(errors) == 1, [r.getMessage() for r in errors]
        assert led.incidents == 1

        path.parent.unlink()
        moved.rename(path.parent)
        assert await _until(lambda: led.available), led.readiness()
        await led.append(decision(7), durable=True)
    finally:
        await led.stop()
    assert any("recovered" in r.getMessage() for r in caplog.records)
    result = verify_chain(path)
    assert result.ok, result.describe()
    # the record whose durable write failed was retried and written; the refused one never existed
    assert [r["decision_id"] for r in read_records(path)] == [f"d{i:05d}" for i in (0, 1, 2, 3, 4, 5, 7)]
    assert "d00006" not in path.read_text()


async def test_ledger_path_is_a_directory(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    path = ledger_path(settings)
    path.mkdir(parents=True)
    led = Ledger(settings)
    await led.start()
    try:
        assert not led.available
        assert "IsADirectoryError" in led.readiness()["detail"]
        with pytest.raises(ServiceUnavailable):
            await led.append(decision(1), durable=True)
    finally:
        await led.stop()


async def test_secret_never_in_error_or_log(tmp_path: Path, caplog) -> None:
    caplog.set_level(logging.DEBUG, logger="canonic.ledger")
    settings = make_settings(tmp_path).model_copy(update={"jwt_secret": "jwt-secret-never-logged"})
    path = ledger_path(settings)
    path.mkdir(parents=True)
    led = Ledger(settings)
    await led.start()
    with pytest.raises(ServiceUnavailable) as info:
        await led.append(decision(1, outcome="jwt-secret-never-logged"), durable=True)
    await led.stop()
    assert "jwt-secret-never-logged" not in info.value.message
    assert all("jwt-secret-never-logged" not in r.getMessage() for r in caplog.records)


FULL_DISK_CHILD = r"""
import asyncio, json, resource, signal, sys, time
from pathlib import Path
from gateway.errors import ServiceUnavailable
from gateway.ledger import Ledger
from gateway.settings import Settings

async def main():
    s = Settings(scope_dir=Path(sys.argv[1]), ledger_path=Path("var/ledger/decisions.jsonl"), ledger_max_lag_ms=50)
    led = Ledger(s)
    await led.start()
    rec = lambda i: {"decision_id": f"f{i:03d}", "principal": "disk", "action": "compute.create", "outcome": "x" * 200}
    for i in range(10):
        await led.append(rec(i), durable=True)
    size = led.path.stat().st_size
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (size + 1000, resource.RLIM_INFINITY))  # the "disk" fills up
    for i in range(10, 30):
        await led.append(rec(i), durable=False)
    refused = 0
    try:
        await led.append(rec(30), durable=True)
    except ServiceUnavailable:
        refused = 1
    down = not led.available
    for _ in range(50):
        if led.write_failures >= 3:
            break
        await asyncio.sleep(0.02)
    resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    for _ in range(250):
        if led.available:
            break
        await asyncio.sleep(0.02)
    up = led.available
    await led.append(rec(31), durable=True)
    await led.stop()
    print(json.dumps({"refused": refused, "down": down, "up": up, "failures": led.write_failures}))

asyncio.run(main())
"""


async def test_disk_full_mid_batch_rewrites_nothing_twice(tmp_path: Path) -> None:
    """A write that fails part-way (file size limit, like a full disk) leaves complete and partial
    lines behind; the writer repairs the partial line and does not write the complete ones again."""
    import json
    import os
    import subprocess
    import sys

    script = tmp_path / "child.py"
    script.write_text(FULL_DISK_CHILD)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    proc = subprocess.run([sys.executable, str(script), str(tmp_path)], capture_output=True, text=True,
                          timeout=60, env=env)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout.splitlines()[-1])
    assert summary["refused"] == 1 and summary["down"] and summary["up"] and summary["failures"] >= 3
    path = make_settings(tmp_path).resolve(Path("var/ledger/decisions.jsonl"))
    result = verify_chain(path)
    assert result.ok, result.describe()
    assert [r["decision_id"] for r in read_records(path)] == [f"f{i:03d}" for i in range(32)]
    assert path.with_name("decisions.jsonl.corrupt").exists()  # the partial lines, kept for inspection


async def test_lagged_record_of_an_answered_request_survives_a_brief_outage(tmp_path: Path) -> None:
    """An inference that was admitted before the outage ends during it: its (non-durable) record is
    queued, not dropped, and written once the path is writable again."""
    settings = make_settings(tmp_path)
    path = ledger_path(settings)
    led = Ledger(settings)
    await led.start()
    moved = path.parent.with_name("ledger.moved")
    try:
        await led.append(decision(0), durable=True)
        path.parent.rename(moved)
        path.parent.write_text("not a directory\n")
        with pytest.raises(ServiceUnavailable):
            await led.append(decision(1), durable=True)  # the outage is noticed
        assert not led.available
        await led.append(decision(2), durable=False)  # the lagged record of a request already answered
        path.parent.unlink()
        moved.rename(path.parent)
        assert await _until(lambda: led.available and led.queue_depth == 0), led.readiness()
    finally:
        await led.stop()
    assert verify_chain(path).ok
    assert [r["decision_id"] for r in read_records(path)] == ["d00000", "d00001", "d00002"]

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

"""Rotation by size: decisions.jsonl -> decisions.jsonl.1, .2, ... (.1 oldest); the chain continues
across files, across restarts, and across a crash between the rename and the new file."""

from __future__ import annotations

import json
from pathlib import Path

from gateway.ledger import Ledger
from gateway.ledger_verify import canonical_json, ledger_files, verify_chain
from tests.ledger.conftest import decision, ledger_path, make_settings, read_records, run_cli, write_ledger


async def test_rotation_keeps_the_chain_verifiable(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, ledger_max_bytes=2000)
    await write_ledger(settings, 40)
    path = ledger_path(settings)
    files = ledger_files(path)
    assert len(files) >= 5
    assert files[0].name == "decisions.jsonl.1" and files[-1] == path
    assert [f.name for f in files[:-1]] == [f"decisions.jsonl.{i}" for i in range(1, len(files))]
    for f in files[:-1]:
        assert f.stat().st_size <= 2000
    result = verify_chain(path)
    assert result.ok and result.records == 40 and result.files == files
    first_of_second = json.loads(files[1].read_text().splitlines()[0])
    last_of_first = json.loads(files[0].read_text().splitlines()[-1])
    assert first_of_second["prev"] == last_of_first["hash"]
    assert first_of_second["seq"] == last_of_first["seq"] + 1


async def test_restart_after_rotation_and_after_losing_the_fresh_active_file(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, ledger_max_bytes=2000)
    await write_ledger(settings, 12)
    path = ledger_path(settings)
    # A crash right after renaming the active file away, before the new one was created:
    path.rename(path.with_name("decisions.jsonl." + str(len(ledger_files(path)))))
    assert not path.exists()
    led = Ledger(settings)
    await led.start()
    for i in range(12, 20):
        await led.append(decision(i), durable=i % 2 == 0)
    await led.stop()
    result = verify_chain(path)
    assert result.ok, result.describe()
    assert result.records == 20
    assert [r["decision_id"] for r in read_records(path)] == [f"d{i:05d}" for i in range(20)]


async def test_tampering_in_a_rotated_file_names_that_file(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, ledger_max_bytes=2000)
    await write_ledger(settings, 30)
    path = ledger_path(settings)
    second = path.with_name("decisions.jsonl.2")
    lines = second.read_text().splitlines()
    rec = json.loads(lines[1])
    rec["outcome"] = "rewritten"
    lines[1] = canonical_json(rec)
    second.write_text("\n".join(lines) + "\n")
    result = verify_chain(path)
    assert not result.ok and result.file == second and result.line == 2
    proc = run_cli("ledger", "verify", str(path))
    assert proc.returncode == 1 and f"{second}:2:" in proc.stdout


async def test_deleting_a_whole_rotated_file_is_detected(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, ledger_max_bytes=2000)
    await write_ledger(settings, 30)
    path = ledger_path(settings)
    path.with_name("decisions.jsonl.2").unlink()
    result = verify_chain(path)
    assert not result.ok and result.file == path.with_name("decisions.jsonl.3") and result.line == 1

"""`canonic ledger tail [-n N] [--json]`: the last records across rotated files, oldest first."""

from __future__ import annotations

import json
from pathlib import Path

from tests.ledger.conftest import ledger_path, make_settings, run_cli, write_ledger


async def test_tail_json_lines_across_rotation(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, ledger_max_bytes=2000)
    await write_ledger(settings, 25)
    path = ledger_path(settings)
    proc = run_cli("ledger", "tail", "-n", "7", "--json", str(path))
    assert proc.returncode == 0, proc.stderr
    recs = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [r["seq"] for r in recs] == list(range(19, 26))
    assert [r["decision_id"] for r in recs] == [f"d{i:05d}" for i in range(18, 25)]
    # more than exist: all of them
    proc = run_cli("ledger", "tail", "-n", "1000", "--json", str(path))
    assert len(proc.stdout.splitlines()) == 25


async def test_tail_table(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    await write_ledger(settings, 4)
    proc = run_cli("ledger", "tail", "-n", "2", str(ledger_path(settings)))
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "decision_id" in out and "principal" in out
    assert "d00002" in out and "d00003" in out and "d00001" not in out
    assert "VASTAI.md:12" in out and "inference.chat" in out


async def test_tail_skips_a_partial_last_line_and_missing_file_exits_2(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    await write_ledger(settings, 3)
    path = ledger_path(settings)
    path.write_bytes(path.read_bytes()[:-30])
    proc = run_cli("ledger", "tail", "--json", str(path))
    assert proc.returncode == 0
    assert [json.loads(line)["seq"] for line in proc.stdout.splitlines()] == [1, 2]
    missing = run_cli("ledger", "tail", str(tmp_path / "absent.jsonl"))
    assert missing.returncode == 2 and "cannot read ledger" in missing.stderr

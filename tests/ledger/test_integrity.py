"""Integrity beyond the hash: canonical lines only (duplicate-key forgery), one writer per ledger
(flock), and the anchor that catches removal of the newest records or of the active file."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

from gateway.ledger import Ledger
from gateway.ledger_verify import anchor_path, verify_chain
from tests.ledger.conftest import decision, ledger_path, make_settings, run_cli, write_ledger


def _edit_line(path: Path, index: int, edit) -> None:
    lines = path.read_text().splitlines()
    lines[index] = edit(lines[index])
    path.write_text("\n".join(lines) + "\n")


async def test_duplicate_key_forgery_is_detected(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    await write_ledger(settings, 5)
    path = ledger_path(settings)
    # A first-wins reader (grep, jq on some builds) sees principal "someone-else"; json.loads keeps
    # the last value, so the record still hashes right.
    _edit_line(path, 2, lambda s: s.replace('{"action":', '{"allow":true,"principal":"someone-else","action":', 1))
    result = verify_chain(path)
    assert not result.ok and result.line == 3, result.describe()
    assert "duplicate key" in result.problem
    proc = run_cli("ledger", "verify", str(path))
    assert proc.returncode == 1 and ":3: duplicate key" in proc.stdout, proc.stdout + proc.stderr


async def test_non_canonical_bytes_are_detected(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    await write_ledger(settings, 4)
    path = ledger_path(settings)
    edits = [
        lambda s: json.dumps(json.loads(s), sort_keys=True),  # whitespace after separators
        lambda s: s.replace('"qwen"', '"\\u0071wen"', 1),  # an escape that decodes to the same text
        lambda s: s + " ",  # trailing whitespace
    ]
    for edit in edits:
        original = path.read_text()
        _edit_line(path, 1, edit)
        result = verify_chain(path)
        assert not result.ok and result.line == 2, result.describe()
        assert "canonical" in result.problem
        path.write_text(original)
        assert verify_chain(path).ok


async def test_second_writer_on_the_same_ledger_is_refused(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    first, second = Ledger(settings), Ledger(settings)
    await first.start()
    await second.start()
    try:
        assert first.available and not second.available
        detail = second.readiness()["detail"]
        assert f"ledger locked by another process (pid {os.getpid()})" in detail, detail
        await first.append(decision(1), durable=True)
        await first.stop()
        for _ in range(150):  # the refused writer retries with bounded backoff (<= 1 s)
            if second.available:
                break
            await asyncio.sleep(0.02)
        assert second.available, second.readiness()
        await second.append(decision(2), durable=True)
    finally:
        await first.stop()
        await second.stop()
    result = verify_chain(ledger_path(settings))
    assert result.ok and result.records == 2, result.describe()


async def test_second_gateway_process_is_refused(tmp_path: Path) -> None:
    """The lock holds across processes: `canonic compute list` (which opens the ledger) while this
    process writes it cannot fork the chain."""
    settings = make_settings(tmp_path)
    led = Ledger(settings)
    await led.start()
    try:
        child = (
            "import asyncio, sys; sys.path.insert(0, sys.argv[1])\n"
            "from tests.ledger.conftest import make_settings\n"
            "from gateway.ledger import Ledger\n"
            "from pathlib import Path\n"
            "async def main():\n"
            "    led = Ledger(make_settings(Path(sys.argv[2])))\n"
            "    await led.start()\n"
            "    print(led.available, led.readiness()['detail'])\n"
            "    await led.stop()\n"
            "asyncio.run(main())\n"
        )
        import subprocess
        import sys

        repo = str(Path(__file__).resolve().parents[2])
        proc = subprocess.run([sys.executable, "-c", child, repo, str(tmp_path)], capture_output=True, text=True,
                              timeout=30)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.startswith("False") and f"(pid {os.getpid()})" in proc.stdout, proc.stdout
    finally:
        await led.stop()


async def _refused_at_start(settings) -> str:
    led = Ledger(settings)
    await led.start()
    try:
        assert not led.available
        return led.readiness()["detail"]
    finally:
        await led.stop()


async def test_removing_the_newest_records_is_detected_and_refused(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, ledger_max_bytes=2000)
    hashes = await write_ledger(settings, 30)
    path = ledger_path(settings)
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:-2]) + "\n")
    result = verify_chain(path)
    assert not result.ok and result.file == path and result.line == len(lines) - 1, result.describe()
    assert "chain ends at seq 28" in result.problem and "seq 30" in result.problem
    proc = run_cli("ledger", "verify", str(path))
    assert proc.returncode == 1 and "missing record(s)" in proc.stdout, proc.stdout + proc.stderr
    detail = await _refused_at_start(settings)
    assert "chain ends at seq 28" in detail and "records seq 30" in detail, detail
    assert len(path.read_text().splitlines()) == len(lines) - 2  # nothing written on top

    path.unlink()  # now the whole active file
    result = verify_chain(path)
    assert not result.ok and "missing record(s)" in result.problem, result.describe()
    assert "records seq 30" in await _refused_at_start(settings)
    assert not path.exists() or path.read_text() == ""

    # Remaining limit: with the anchor gone too, only an externally kept (seq, hash) catches it.
    anchor_path(path).unlink()
    assert verify_chain(path).ok
    proc = run_cli("ledger", "verify", str(path), "--expect-seq", "30", "--expect-hash", hashes[-1])
    assert proc.returncode == 1 and "--expect-seq" in proc.stdout, proc.stdout + proc.stderr


async def test_expect_seq_and_hash_on_an_intact_ledger(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    hashes = await write_ledger(settings, 5)
    path = str(ledger_path(settings))
    assert run_cli("ledger", "verify", path, "--expect-seq", "5", "--expect-hash", hashes[-1]).returncode == 0
    assert run_cli("ledger", "verify", path, "--expect-seq", "3", "--expect-hash", hashes[2]).returncode == 0
    assert run_cli("ledger", "verify", path, "--expect-hash", hashes[-1]).returncode == 0
    wrong = run_cli("ledger", "verify", path, "--expect-seq", "3", "--expect-hash", hashes[3])
    assert wrong.returncode == 1 and ":3: record seq 3 has hash" in wrong.stdout, wrong.stdout
    assert run_cli("ledger", "verify", path, "--expect-seq", "6").returncode == 1
    bad = run_cli("ledger", "verify", path, "--expect-hash", "xyz")
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1


def test_verify_with_a_bad_setting_exits_2_with_one_line(tmp_path: Path) -> None:
    env = {**os.environ, "CANONIC_LEDGER_MAX_BYTES": "abc"}
    for command in ("verify", "tail"):
        proc = run_cli("ledger", command, env=env)
        assert proc.returncode == 2, proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and "CANONIC_LEDGER_MAX_BYTES" in lines[0] and "Traceback" not in proc.stderr, lines
        assert "abc" not in proc.stderr  # the value is not echoed (settings may hold secrets)

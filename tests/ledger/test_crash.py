"""Crash safety: a real kill -9 of a process appending in a loop, and the repair of a partial last line."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

from gateway.ledger import Ledger
from gateway.ledger_verify import verify_chain
from tests.ledger.conftest import decision, ledger_path, make_settings, read_records, run_cli, write_ledger

CHILD = r"""
import asyncio, sys
from pathlib import Path
from gateway.errors import ServiceUnavailable
from gateway.ledger import Ledger
from gateway.settings import Settings

async def main():
    s = Settings(scope_dir=Path(sys.argv[1]), ledger_path=Path("var/ledger/decisions.jsonl"),
                 ledger_max_bytes=int(sys.argv[2]), ledger_max_lag_ms=5, ledger_queue_size=2000)
    led = Ledger(s)
    await led.start()
    for i in range(int(sys.argv[3])):
        rec = {"decision_id": f"c{i}", "principal": "crash", "action": "inference.chat", "outcome": f"n{i}"}
        if i % 25 == 0:
            await led.append(rec, durable=True)
            print(i, flush=True)  # every record up to and including c{i} is on disk now
        else:
            try:
                await led.append(rec, durable=False)
            except ServiceUnavailable:
                await asyncio.sleep(0.005)
                await led.append(rec, durable=True)
    print("done", flush=True)

asyncio.run(main())
"""


def _acked_until_killed(proc: subprocess.Popen, want: int, deadline_s: float) -> int:
    """Read acknowledgements until ``want`` have arrived (bounded in time), kill -9, read the rest."""
    acked, buf = -1, b""
    fd = proc.stdout.fileno()
    end = time.monotonic() + deadline_s
    count = 0
    while count < want and time.monotonic() < end:
        ready, _, _ = select.select([fd], [], [], max(end - time.monotonic(), 0))
        if not ready:
            break
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        buf += chunk
        count = buf.count(b"\n")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    buf += proc.stdout.read()
    for line in buf.decode().splitlines():
        if line.strip().isdigit():
            acked = max(acked, int(line))
    return acked


async def test_kill_9_mid_append_then_restart_keeps_every_acknowledged_record(tmp_path: Path) -> None:
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    proc = subprocess.Popen(
        [sys.executable, str(script), str(tmp_path), "200000", "100000"], stdout=subprocess.PIPE, env=env
    )
    try:
        acked = _acked_until_killed(proc, want=40, deadline_s=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGKILL, "the child finished before it was killed; raise its loop count"
    assert acked >= 25 * 39, acked

    settings = make_settings(tmp_path, ledger_max_bytes=200000)
    path = ledger_path(settings)
    before = run_cli("ledger", "verify", str(path))
    # Either the kill fell between writes (valid) or it left a partial last line (reported, exit 1).
    assert before.returncode in (0, 1), before.stderr
    if before.returncode == 1:
        assert "truncated" in before.stdout

    led = Ledger(settings)
    await led.start()
    assert led.available, led.readiness()
    await led.append(decision(1, decision_id="after-restart"), durable=True)
    await led.stop()

    result = verify_chain(path)
    assert result.ok, result.describe()
    records = read_records(path)
    ids = [r["decision_id"] for r in records]
    assert ids[-1] == "after-restart"
    # No earlier record lost: the first records are c0, c1, ... in order, through every acknowledged one.
    assert ids[:-1] == [f"c{i}" for i in range(len(ids) - 1)]
    assert len(ids) - 1 >= acked + 1
    assert len(result.files) > 1  # the run crossed at least one rotation


async def test_partial_last_line_is_moved_to_sidecar_and_truncated(tmp_path: Path) -> None:
    """What a kill mid-write leaves: every acknowledged record plus part of the next line (the
    anchor still names the last complete record, since it moves only after a whole batch)."""
    settings = make_settings(tmp_path)
    await write_ledger(settings, 6)
    path = ledger_path(settings)
    whole = path.read_bytes()
    partial = whole.splitlines()[-1][:-50]
    path.write_bytes(whole + partial)
    assert partial and not verify_chain(path).ok

    led = Ledger(settings)
    await led.start()
    sidecar = path.with_name(path.name + ".corrupt")
    assert sidecar.read_bytes() == partial + b"\n"
    assert verify_chain(path).ok and verify_chain(path).records == 6
    await led.append(decision(99), durable=True)
    await led.stop()
    result = verify_chain(path)
    assert result.ok and result.records == 7
    assert [r["decision_id"] for r in read_records(path)] == [f"d{i:05d}" for i in range(6)] + ["d00099"]


async def test_corrupt_last_complete_record_keeps_ledger_unavailable(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    await write_ledger(settings, 3)
    path = ledger_path(settings)
    lines = path.read_text().splitlines()
    rec = json.loads(lines[-1])
    rec["allow"] = not rec["allow"]
    lines[-1] = json.dumps(rec)
    path.write_text("\n".join(lines) + "\n")
    led = Ledger(settings)
    await led.start()
    try:
        assert not led.available
        assert "corrupt" in led.readiness()["detail"]
    finally:
        await led.stop()
    assert path.read_text().count("\n") == 3  # nothing written on top of a chain it cannot trust

"""Idempotency across processes: concurrent spinups, and a spinning-up process killed mid-way."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from providers.lifecycle import State

REPO = Path(__file__).resolve().parents[2]


def _worker(case, root: Path, slow: float = 0.0) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen(
        [sys.executable, "-m", "tests.providers.worker", case.name, str(root), "spinup", str(slow)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO, env=env,
    )


def _finish(process: subprocess.Popen[str]) -> dict:
    out, err = process.communicate(timeout=90)
    assert process.returncode == 0, (out, err)
    return json.loads(out.strip().splitlines()[-1])


def test_two_concurrent_spinups_with_one_identity_create_one_instance(case, provider, root):
    first, second = _worker(case, root), _worker(case, root)
    a, b = _finish(first), _finish(second)
    assert a["instance_id"] == b["instance_id"]
    assert [i.instance_id for i in provider.list()] == [a["instance_id"]]
    created = [e for e in provider.tracker.read().events if e["event"] == "created"]
    assert len(created) == 1
    assert len(case.leftovers(root)) == 1


def _wait_for_created(provider, timeout_s: float = 30.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        listed = provider.list()
        if listed:
            return listed[0]
        time.sleep(0.05)
    raise AssertionError("the worker never created an instance")


def test_killed_spinup_is_adopted_by_the_next_spinup(case, make_provider, root):
    observer = make_provider()
    worker = _worker(case, root, slow=2.0)
    try:
        started = _wait_for_created(observer)
        assert started.status == State.PENDING
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.communicate(timeout=10)
    adopted = observer.spinup(case.spec)
    assert adopted.instance_id == started.instance_id and adopted.status == State.RUNNING
    assert len(case.leftovers(root)) == 1
    events = [e["event"] for e in observer.tracker.read().events]
    assert events.count("created") == 1 and "adopted" in events
    observer.teardown(adopted.instance_id)
    assert observer.list() == [] and case.leftovers(root) == []

"""The tracked-instances log: append-only, locked, crash-safe, many writers."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import pytest

from providers.tracking import Tracker


def test_path_follows_the_seed_and_records_run_identity_cost(tmp_path):
    tracker = Tracker(tmp_path / "config", "vast", run_id="run-1")
    assert tracker.path == tmp_path / "config" / "vast_tracked_instances.jsonl"
    tracker.append("created", "123", identity="cg-x", cost_per_hour=0.38)
    tracker.append("destroyed", "123", identity="cg-x", billing_confirmed=True)
    log = tracker.read()
    assert log.skipped == []
    assert [e["event"] for e in log.events] == ["created", "destroyed"]
    assert log.events[0]["run_id"] == "run-1" and log.events[0]["cost_per_hour"] == 0.38
    assert log.events[0]["ts"].endswith("Z") and log.events[0]["provider"] == "vast"
    assert tracker.known("123") and not tracker.known("124")


def test_unknown_event_is_refused_and_nothing_written(tmp_path):
    tracker = Tracker(tmp_path, "local")
    with pytest.raises(ValueError, match="unknown tracking event 'exploded'"):
        tracker.append("exploded", "1")
    assert not tracker.path.exists()


def test_a_torn_last_line_is_skipped_reported_and_appending_resumes(tmp_path):
    tracker = Tracker(tmp_path, "local")
    tracker.append("created", "a")
    with tracker.path.open("ab") as handle:  # a writer that died mid-line
        handle.write(b'{"event": "state", "instance_id": "a", "fr')
    torn = tracker.read()
    assert [e["instance_id"] for e in torn.events] == ["a"]
    assert len(torn.skipped) == 1 and torn.skipped[0][0] == 2
    tracker.append("destroyed", "a")
    log = tracker.read()
    assert [e["event"] for e in log.events] == ["created", "destroyed"]
    assert len(log.skipped) == 1
    assert tracker.path.read_bytes().endswith(b"\n")


def _writer(directory: str, worker: int, count: int) -> None:
    tracker = Tracker(Path(directory), "local", run_id=f"w{worker}")
    for n in range(count):
        tracker.append("state", f"{worker}-{n}", payload="x" * 3000)  # lines past PIPE_BUF


def test_concurrent_writers_never_interleave(tmp_path):
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_writer, args=(str(tmp_path), w, 150)) for w in range(4)]
    for process in workers:
        process.start()
    for process in workers:
        process.join(timeout=60)
        assert process.exitcode == 0
    log = Tracker(tmp_path, "local").read()
    assert log.skipped == []
    assert len(log.events) == 600
    assert {e["instance_id"] for e in log.events} == {f"{w}-{n}" for w in range(4) for n in range(150)}

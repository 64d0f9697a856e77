"""The state machine, vendor status tables, identity labels and the one poll loop."""

from __future__ import annotations

import itertools
import re

import pytest

from providers.contract import Spec
from providers.errors import DeadlineExceeded, IllegalTransition
from providers.lifecycle import TRANSITIONS, State, StatusTable, poll, transition, with_retries
from providers.local import STATUSES

LEGAL = {
    (State.IDLE, State.PENDING),
    (State.PENDING, State.RUNNING),
    (State.PENDING, State.TERMINATED),
    (State.RUNNING, State.STOPPING),
    (State.STOPPING, State.TERMINATED),
}


@pytest.mark.parametrize("current,target", list(itertools.product(State, State)))
def test_transition_table_is_the_seeds(current, target):
    if current == target or (current, target) in LEGAL:
        assert transition(current, target) == target
    else:
        with pytest.raises(IllegalTransition, match=f"{current.value} -> {target.value}"):
            transition(current, target)


def test_table_has_no_shortcuts():
    assert {(a, b) for a, targets in TRANSITIONS.items() for b in targets} == LEGAL


def test_unknown_vendor_status_maps_to_pending_never_keyerror():
    table = StatusTable({"active": State.RUNNING, "terminated": State.TERMINATED})
    assert table.state("ACTIVE ") == State.RUNNING
    assert table.state("never-heard-of-it") == State.PENDING
    assert table.state(None) == State.PENDING
    assert table.state("") == State.PENDING
    assert STATUSES.state("running") == State.RUNNING and STATUSES.state("exited") == State.TERMINATED
    assert STATUSES.state("weird") == State.PENDING


def test_identity_ignores_budget_and_normalizes_the_spec():
    base = Spec("RTX_3090", 20, "pytorch/pytorch:2.3")
    label = base.identity("vast")
    assert Spec(" rtx_3090 ", 20.0, "pytorch/pytorch:2.3 ", budget=0.4).identity("vast") == label
    assert Spec("RTX_3090", 21, "pytorch/pytorch:2.3").identity("vast") != label
    assert Spec("RTX_3090", 20, "other").identity("vast") != label
    assert base.identity("basilica") != label
    assert re.fullmatch(r"[a-z0-9-]{1,63}", label), label
    long = Spec("G" * 200, 1, "t" * 300).identity("vast")
    assert len(long) <= 63 and re.fullmatch(r"[a-z0-9-]+", long)


@pytest.mark.parametrize(
    "spec,words",
    [(Spec("cpu", 0, "m"), "disk_gb"), (Spec("", 1, "m"), "gpu"), (Spec("cpu", 1, " "), "template"),
     (Spec("cpu", 1, "m", budget=-1), "budget")],
)
def test_invalid_specs_are_named(spec, words):
    with pytest.raises(ValueError, match=words):
        spec.normalized()


class FakeClock:
    """Time for the poll loop under test: sleep advances it, nothing really waits."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_poll_returns_the_first_value_and_reports_every_interval():
    clock = FakeClock()
    answers = iter([None] * 7 + ["ready"])
    messages: list[str] = []
    result = poll(lambda: next(answers), what="spinup of x", deadline_s=300, interval_s=20, progress=messages.append,
                  progress_every_s=60, describe=lambda: "status booting", clock=clock, sleep=clock.sleep)
    assert result == "ready"
    assert clock.now == 140
    assert messages == ["still pending: spinup of x after 60 s (status booting)",
                        "still pending: spinup of x after 120 s (status booting)"]


def test_poll_deadline_raises_with_the_last_status_and_never_oversleeps():
    clock = FakeClock()
    with pytest.raises(DeadlineExceeded) as exc:
        poll(lambda: None, what="teardown of y", deadline_s=100, interval_s=30, describe=lambda: "status terminating",
             clock=clock, sleep=clock.sleep)
    assert exc.value.seconds == 100 and exc.value.last == "status terminating"
    assert clock.now == 100 and clock.sleeps == [30, 30, 30, 10]
    assert "teardown of y did not finish within 100 s" in str(exc.value)


def test_poll_propagates_an_abort_from_check():
    def check():
        raise RuntimeError("allocation failed")

    with pytest.raises(RuntimeError, match="allocation failed"):
        poll(check, what="z", deadline_s=1, interval_s=0.1)


def test_with_retries_backs_off_then_gives_up():
    clock = FakeClock()
    calls: list[int] = []

    def connect() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionRefusedError("refused")
        return "connected"

    assert with_retries(connect, attempts=3, base_delay_s=1, retry_on=(OSError,), sleep=clock.sleep) == "connected"
    assert clock.sleeps == [1, 2]
    with pytest.raises(ConnectionRefusedError):
        with_retries(lambda: (_ for _ in ()).throw(ConnectionRefusedError("x")), attempts=3, base_delay_s=1,
                     retry_on=(OSError,), sleep=clock.sleep)
    with pytest.raises(ValueError, match="attempts"):
        with_retries(lambda: 1, attempts=0, base_delay_s=1, retry_on=(OSError,))

"""The one lifecycle: states, the transition table, vendor status tables, and the one poll loop."""

from __future__ import annotations

import enum
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TypeVar

from providers.errors import DeadlineExceeded, IllegalTransition

T = TypeVar("T")


class State(enum.StrEnum):
    IDLE = "IDLE"
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    STOPPING = "STOPPING"
    TERMINATED = "TERMINATED"


# Seed 001: IDLE -> PENDING -> RUNNING -> STOPPING -> TERMINATED, plus PENDING -> TERMINATED
# (timeout, allocation failure, or a teardown that cancels the pending allocation).
TRANSITIONS: Mapping[State, frozenset[State]] = MappingProxyType({
    State.IDLE: frozenset({State.PENDING}),
    State.PENDING: frozenset({State.RUNNING, State.TERMINATED}),
    State.RUNNING: frozenset({State.STOPPING}),
    State.STOPPING: frozenset({State.TERMINATED}),
    State.TERMINATED: frozenset(),
})

ACTIVE = frozenset({State.PENDING, State.RUNNING, State.STOPPING})


def transition(current: State, target: State) -> State:
    """Return ``target`` if the table allows ``current -> target`` (staying put is allowed)."""
    if target == current or target in TRANSITIONS[current]:
        return target
    raise IllegalTransition(current, target)


class StatusTable:
    """Maps one vendor's status strings to states. Unknown or missing -> PENDING, never KeyError."""

    def __init__(self, mapping: Mapping[str, State]) -> None:
        self._mapping = {key.strip().lower(): value for key, value in mapping.items()}

    def state(self, vendor_status: str | None) -> State:
        if vendor_status is None:
            return State.PENDING
        return self._mapping.get(str(vendor_status).strip().lower(), State.PENDING)

    def known(self) -> dict[str, State]:
        return dict(self._mapping)


@dataclass(frozen=True)
class Deadlines:
    """The seed's timeout table, in seconds. Tests pass small ones."""

    spinup_s: float = 300.0
    progress_every_s: float = 60.0
    teardown_s: float = 120.0
    force_grace_s: float = 15.0
    pull_s: float = 600.0
    ssh_connect_s: float = 10.0  # the connect timeout of one SSH attempt (adapters use it)
    ssh_attempts: int = 3
    ssh_backoff_s: float = 2.0  # sleep between SSH attempts: 2 s, then 4 s (not the connect timeout)
    lock_s: float = 330.0


def poll(
    check: Callable[[], T | None],
    *,
    what: str,
    deadline_s: float,
    interval_s: float,
    progress: Callable[[str], None] | None = None,
    progress_every_s: float = 60.0,
    describe: Callable[[], str] | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Call ``check`` until it returns a value, at most ``deadline_s`` seconds.

    ``check`` returns None to keep waiting and may raise to abort. Every ``progress_every_s`` the
    ``progress`` callback gets "still pending: <what> after N s (<describe()>)". Past the deadline
    :class:`DeadlineExceeded` is raised carrying ``describe()`` as the last thing seen.
    """
    started = clock()
    next_report = started + progress_every_s
    while True:
        result = check()
        if result is not None:
            return result
        now = clock()
        if now - started >= deadline_s:
            raise DeadlineExceeded(what, deadline_s, describe() if describe else None)
        if progress is not None and now >= next_report:
            detail = f" ({describe()})" if describe else ""
            progress(f"still pending: {what} after {now - started:.0f} s{detail}")
            next_report = now + progress_every_s
        remaining = deadline_s - (now - started)
        sleep(max(0.0, min(interval_s, remaining)))


def with_retries(
    call: Callable[[], T],
    *,
    attempts: int,
    base_delay_s: float,
    retry_on: tuple[type[BaseException], ...],
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Run ``call`` up to ``attempts`` times, sleeping base, 2*base, ... between tries (for SSH
    connects: each attempt bounded by its own connect timeout, 3 tries, ``Deadlines.ssh_backoff_s``
    between them). Never use it for creates: those are reconciled, not retried."""
    for attempt in range(1, attempts + 1):
        try:
            return call()
        except retry_on:
            if attempt == attempts:
                raise
            sleep(base_delay_s * 2 ** (attempt - 1))
    raise ValueError("attempts must be at least 1")

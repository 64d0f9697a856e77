"""A circuit breaker per upstream, kept in process and checked on every request.

closed    -> requests flow; consecutive failures (connection errors, timeouts, 5xx) are counted.
open      -> requests skip this upstream at no cost; after ``cooldown_s`` a probe is due.
half_open -> one probe (the forwarder's GET /health) is in flight; requests still skip. A
             healthy probe lets exactly one trial request through; its success closes the circuit.
A failed probe or a failed trial reopens the circuit with a doubled cooldown (capped); only a
real request's success resets the cooldown (a healthy /health alone proves little: vLLM's
/health answers 200 while its completions fail). A refused connection opens at once: vLLM does not listen while it is down
or loading. A 429 with Retry-After marks the upstream busy until then, without opening.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"


@dataclass
class Circuit:
    threshold: int = 3
    cooldown_s: float = 0.5
    max_cooldown_s: float = 15.0
    clock: object = field(default=time.monotonic, repr=False)
    state: str = CLOSED
    failures: int = 0
    opened_until: float = 0.0
    busy_until: float = 0.0
    _cooldown: float = 0.0
    _trial: str = ""  # half_open only: "" (probing), "ready" (probe passed), "taken" (trial in flight)

    def allows(self) -> bool:
        """True when a request may go to this upstream now (never blocks). In half_open after a
        healthy probe, True once: the caller's request is the trial."""
        if self.state == HALF_OPEN and self._trial == "ready":
            self._trial = "taken"
            return True
        if self.state != CLOSED:
            return False
        return self.busy_until <= self.clock()

    def abandon(self) -> None:
        """The trial request was abandoned (its client left) before it proved anything."""
        if self.state == HALF_OPEN and self._trial == "taken":
            self._trial = "ready"

    @property
    def cooldown_s_now(self) -> float:
        """The cooldown the circuit last opened with (0 while it never opened since a success)."""
        return self._cooldown

    def probe_due(self) -> bool:
        """True once per cooldown: the caller must then run a probe and report it."""
        if self.state == OPEN and self.clock() >= self.opened_until:
            self.state = HALF_OPEN
            self._trial = ""
            return True
        return False

    def retry_after_s(self) -> float:
        """Seconds until this upstream may be tried again (0 when it may be tried now)."""
        now = self.clock()
        if self.state == CLOSED:
            return max(0.0, self.busy_until - now)
        return max(0.0, self.opened_until - now)

    def success(self) -> None:
        self.state = CLOSED
        self.failures = 0
        self._cooldown = 0.0

    def failure(self, *, refused: bool = False) -> None:
        self.failures += 1
        if refused or self.failures >= self.threshold or self.state == HALF_OPEN:
            self._open()

    def busy(self, seconds: float) -> None:
        self.busy_until = max(self.busy_until, self.clock() + max(0.0, seconds))

    def probe_result(self, ok: bool) -> None:
        if self.state != HALF_OPEN:
            return
        if ok:
            self._trial = "ready"
        else:
            self._open()

    def _open(self) -> None:
        self._cooldown = min(self.max_cooldown_s, self._cooldown * 2 if self._cooldown else self.cooldown_s)
        self.state = OPEN
        self._trial = ""
        self.opened_until = self.clock() + self._cooldown

    def snapshot(self) -> dict:
        return {"state": self.state, "failures": self.failures, "retry_after_s": round(self.retry_after_s(), 3),
                "cooldown_s": round(self._cooldown, 3)}

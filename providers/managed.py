"""ManagedProvider: the six contract operations for any Backend, with one lifecycle for every cloud.

The provider's listing is the source of truth: idempotency finds instances by their identity
label, so a repeat from another process or after a crash finds what an earlier one created. One
fcntl lock per identity makes concurrent spinups of one identity create a single instance.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from providers.contract import Availability, Backend, Instance, Offer, Progress, Spec, SSHInfo, TeardownResult
from providers.errors import (
    BILLING_WARNING,
    DeadlineExceeded,
    InstanceNotFound,
    InstanceTerminated,
    ProviderError,
    ProviderUnavailable,
    Refused,
    SpinupFailed,
    SpinupTimeout,
    TeardownFailed,
)
from providers.lifecycle import Deadlines, State, poll, transition, with_retries
from providers.locks import exclusive
from providers.tracking import Tracker

log = logging.getLogger("canonic.providers")
Admit = Callable[[int], None]


class _Machine:
    """One instance's lifecycle as driven by this process; every step is checked and tracked."""

    def __init__(self, owner: ManagedProvider, instance_id: str, identity: str | None, state: State) -> None:
        self.owner, self.instance_id, self.identity, self.state = owner, instance_id, identity, state

    def to(self, target: State, **fields: object) -> None:
        previous = self.state
        self.state = transition(previous, target)
        if previous != target:
            # once: a teardown from another thread or process may already have tracked TERMINATED
            self.owner.tracker.append(
                "state", self.instance_id, once=target == State.TERMINATED, identity=self.identity,
                **{"from": previous.value, "to": target.value}, **fields
            )


class ManagedProvider:
    def __init__(
        self,
        backend: Backend,
        *,
        tracking_dir: Path,
        deadlines: Deadlines | None = None,
        run_id: str | None = None,
        lock_dir: Path | None = None,
    ) -> None:
        self.backend = backend
        self.name = backend.name
        self.billing_starts = backend.billing_starts
        self.deadlines = deadlines or Deadlines()
        self.tracker = Tracker(Path(tracking_dir), backend.name, run_id)
        self._lock_dir = Path(lock_dir) if lock_dir else Path(tracking_dir) / ".locks"

    # -- facts -------------------------------------------------------------------------------
    def available(self) -> Availability:
        return self.backend.available()

    def offers(self, spec: Spec | None = None) -> list[Offer]:
        return self.backend.offers(None if spec is None else self._normalize(spec))

    def list(self) -> list[Instance]:
        """Instances not yet TERMINATED, oldest first; ``[]`` when there are none."""
        live = [i for i in self.backend.instances() if i.status != State.TERMINATED]
        return sorted(live, key=_age_key)

    # -- spinup ------------------------------------------------------------------------------
    def active_others(self, identity: str) -> int:
        """PENDING or RUNNING instances of other identities (what an instance-count cap counts)."""
        return sum(1 for i in self.backend.instances()
                   if i.identity != identity and i.status in (State.RUNNING, State.PENDING))

    def spinup(self, spec: Spec, progress: Progress | None = None, admit: Admit | None = None) -> Instance:
        """Return the RUNNING instance for ``spec``'s identity, creating it if there is none.

        ``admit(count)`` (optional) is called right before a create, under a provider-wide lock
        that every process shares, with the number of other active instances; it raises to
        refuse. So a count cap checked there cannot be passed by two concurrent creates.
        """
        self._require_available()
        spec = self._normalize(spec)
        self.backend.check(spec)
        identity = spec.identity(self.name)
        with exclusive(self._lock_dir / f"{self.name}-{identity}.lock", deadline_s=self.deadlines.lock_s):
            same = [i for i in self.backend.instances() if i.identity == identity]
            running = [i for i in same if i.status == State.RUNNING]
            if running:
                found = min(running, key=_age_key)
                self.tracker.append("adopted", found.instance_id, identity=identity, status=found.status.value)
                return self._within_budget(found, spec, None)
            pending = [i for i in same if i.status == State.PENDING]
            if pending:
                found = min(pending, key=_age_key)
                self.tracker.append("adopted", found.instance_id, identity=identity, status=found.status.value)
                machine = _Machine(self, found.instance_id, identity, State.PENDING)
                return self._await_running(found.instance_id, identity, spec, machine, progress)
            with exclusive(self._lock_dir / f"{self.name}.create.lock", deadline_s=self.deadlines.lock_s):
                if admit is not None:
                    admit(self.active_others(identity))
                instance_id = self._create(spec, identity)
            machine = _Machine(self, instance_id, identity, State.IDLE)
            machine.to(State.PENDING)
            return self._await_running(instance_id, identity, spec, machine, progress)

    def _create(self, spec: Spec, identity: str) -> str:
        try:
            instance_id = self.backend.create(spec, identity)
        except ProviderError as exc:
            self._reconcile_failed_create(identity)
            raise exc
        except Exception as exc:
            # An ambiguous create (the reply was lost): whatever carries the label is destroyed.
            self._reconcile_failed_create(identity)
            raise SpinupFailed(f"create on {self.name} failed: {exc}") from exc
        self.tracker.append(
            "created", instance_id, identity=identity, spec={"gpu": spec.gpu, "disk_gb": spec.disk_gb,
                                                              "template": spec.template, "budget": spec.budget},
        )
        return instance_id

    def _reconcile_failed_create(self, identity: str) -> None:
        for leftover in self.backend.instances():
            if leftover.identity == identity and leftover.status != State.TERMINATED:
                self._destroy_and_confirm(leftover.instance_id, None)

    def _await_running(
        self, instance_id: str, identity: str, spec: Spec, machine: _Machine, progress: Progress | None
    ) -> Instance:
        seen: dict[str, Instance | None] = {"last": None}

        def check() -> Instance | None:
            current = self._find(instance_id)
            seen["last"] = current
            if current is None or current.status == State.TERMINATED:
                raise SpinupFailed(f"instance {instance_id} ended before it was RUNNING")
            return current if current.status == State.RUNNING else None

        def describe() -> str:
            last = seen["last"]
            return "status unknown" if last is None else f"status {last.vendor_status or last.status.value}"

        try:
            found = poll(
                check,
                what=f"spinup of {self.name} instance {instance_id}",
                deadline_s=self.deadlines.spinup_s,
                interval_s=self.backend.poll_interval_s,
                progress=progress,
                progress_every_s=self.deadlines.progress_every_s,
                describe=describe,
            )
        except DeadlineExceeded as exc:
            confirmed = self._fail(machine, "timeout", progress)
            raise SpinupTimeout(
                f"Instance {instance_id} did not reach RUNNING within {exc.seconds:g} s ({exc.last}); "
                f"it was moved to TERMINATED and destroyed. {self._cleanup_sentence(confirmed)}"
            ) from None
        except SpinupFailed:
            detail = self.backend.failure_detail(instance_id)
            confirmed = self._fail(machine, "failed", progress)
            raise SpinupFailed(
                f"Instance {instance_id} failed before RUNNING: {detail}. "
                f"It was moved to TERMINATED. {self._cleanup_sentence(confirmed)}"
            ) from None
        except BaseException:
            self._fail(machine, "interrupted", progress)
            raise
        machine.to(State.RUNNING, cost_per_hour=found.cost_per_hour)
        return self._within_budget(found, spec, machine)

    def _within_budget(self, found: Instance, spec: Spec, machine: _Machine | None) -> Instance:
        """Refuse an instance over ``spec.budget``; destroy it only if this spinup created it."""
        if spec.budget is None or found.cost_per_hour <= spec.budget:
            return found
        over = (f"Instance {found.instance_id} costs {found.cost_per_hour:g} USD/h, over the budget of "
                f"{spec.budget:g} USD/h")
        if machine is None:
            raise Refused(f"{over}; it already runs for this identity and was left as it is.")
        machine.to(State.STOPPING)
        confirmed = self._destroy_and_confirm(found.instance_id, None)
        if confirmed:
            machine.to(State.TERMINATED)
        raise Refused(f"{over}; it was destroyed. {self._cleanup_sentence(confirmed)}")

    def _fail(self, machine: _Machine, reason: str, progress: Progress | None) -> bool:
        confirmed = self._destroy_and_confirm(machine.instance_id, progress)
        if machine.state == State.PENDING:
            machine.to(State.TERMINATED, reason=reason)
        self.tracker.append("failed", machine.instance_id, identity=machine.identity, reason=reason,
                            billing_confirmed=confirmed)
        return confirmed

    @staticmethod
    def _cleanup_sentence(confirmed: bool) -> str:
        return "Billing confirmed stopped." if confirmed else BILLING_WARNING

    # -- teardown ----------------------------------------------------------------------------
    def teardown(self, instance_id: str, progress: Progress | None = None) -> TeardownResult:
        instance_id = str(instance_id)
        found = self._find(instance_id)
        if found is None and not self.tracker.known(instance_id):
            raise InstanceNotFound(instance_id, self.name)
        if found is None or found.status == State.TERMINATED:
            return TeardownResult(instance_id, State.TERMINATED, billing_confirmed=True, already_terminated=True)
        machine = _Machine(self, instance_id, found.identity, found.status)
        if found.status == State.RUNNING:
            machine.to(State.STOPPING)
        confirmed = self._destroy_and_confirm(instance_id, progress)
        if confirmed:
            machine.to(State.TERMINATED)
        self.tracker.append("destroyed", instance_id, identity=found.identity, billing_confirmed=confirmed,
                            cost_per_hour=found.cost_per_hour)
        final = State.TERMINATED if confirmed else machine.state
        return TeardownResult(instance_id, final, confirmed, warning=None if confirmed else BILLING_WARNING)

    def teardown_all(self, progress: Progress | None = None) -> list[TeardownResult]:
        results: list[TeardownResult] = []
        failures: list[str] = []
        for instance in self.list():
            try:
                results.append(self.teardown(instance.instance_id, progress))
            except ProviderError as exc:
                failures.append(f"{instance.instance_id}: {exc}")
        if failures:
            raise TeardownFailed(f"{len(failures)} instance(s) could not be destroyed: " + "; ".join(failures))
        return results

    def _destroy_and_confirm(self, instance_id: str, progress: Progress | None) -> bool:
        """Destroy (force after the teardown deadline), then read back: True when billing stopped."""

        def gone() -> bool | None:
            current = self._find(instance_id)
            return True if current is None or current.status == State.TERMINATED else None

        interval = self.backend.poll_interval_s
        self.backend.destroy(instance_id, force=False)
        try:
            poll(gone, what=f"teardown of {instance_id}", deadline_s=self.deadlines.teardown_s,
                 interval_s=interval, progress=progress, progress_every_s=self.deadlines.progress_every_s)
        except DeadlineExceeded:
            if progress:
                progress(f"teardown of {instance_id} passed {self.deadlines.teardown_s:g} s; forcing destroy")
            self.backend.destroy(instance_id, force=True)
            try:
                poll(gone, what=f"forced teardown of {instance_id}", deadline_s=self.deadlines.force_grace_s,
                     interval_s=interval)
            except DeadlineExceeded:
                pass
        current = self._find(instance_id)
        confirmed = current is None or current.status == State.TERMINATED
        if not confirmed:
            log.warning("instance %s: %s", instance_id, BILLING_WARNING)
            self.tracker.append("warning", instance_id, message=BILLING_WARNING)
            if progress:
                progress(BILLING_WARNING)
        return confirmed

    # -- pull and SSH ------------------------------------------------------------------------
    def pull(self, instance_id: str, remote: str, local: str) -> None:
        found = self._running(str(instance_id), "download from")
        self.backend.pull(found, remote, local, self.deadlines.pull_s)

    def ssh_info(self, instance_id: str) -> SSHInfo:
        """SSH details, through up to ``ssh_attempts`` tries of the backend (each bounded by its
        connect timeout) with backoff, retrying only the errors the backend names as transient."""
        instance_id = str(instance_id)
        found = self._find(instance_id)
        if found is None and not self.tracker.known(instance_id):
            raise InstanceNotFound(instance_id, self.name)
        if found is None or found.status == State.TERMINATED:
            raise InstanceTerminated(instance_id, "No SSH.")
        retry_on = tuple(getattr(self.backend, "ssh_retry_on", ()))
        return with_retries(lambda: self.backend.ssh_info(found, self.deadlines.ssh_connect_s),
                            attempts=max(1, self.deadlines.ssh_attempts), base_delay_s=self.deadlines.ssh_backoff_s,
                            retry_on=retry_on)

    def _running(self, instance_id: str, verb: str) -> Instance:
        found = self._find(instance_id)
        if found is None and not self.tracker.known(instance_id):
            raise InstanceNotFound(instance_id, self.name)
        if found is None or found.status == State.TERMINATED:
            raise InstanceTerminated(instance_id)
        if found.status != State.RUNNING:
            raise Refused(f"Instance {instance_id} is {found.status.value}; cannot {verb} it until it is RUNNING.")
        return found

    # -- helpers -----------------------------------------------------------------------------
    def _find(self, instance_id: str) -> Instance | None:
        return next((i for i in self.backend.instances() if i.instance_id == instance_id), None)

    def _require_available(self) -> None:
        availability = self.backend.available()
        if not availability.ok:
            raise ProviderUnavailable(self.name, availability.reason, availability.install_hint)

    @staticmethod
    def _normalize(spec: Spec) -> Spec:
        try:
            return spec.normalized()
        except (TypeError, ValueError) as exc:
            raise Refused(f"invalid spec: {exc}") from None


def _age_key(instance: Instance) -> tuple[float, str]:
    stamp = instance.started_at.timestamp() if instance.started_at else float("inf")
    return (stamp, instance.instance_id)

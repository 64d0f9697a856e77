"""The compute contract: the Provider Protocol, its value types, and the Backend an adapter writes.

A cloud adapter implements :class:`Backend` (one create call, a listing, a destroy, pull and SSH
details). :class:`providers.managed.ManagedProvider` turns any Backend into the six contract
operations with one lifecycle, one poll loop, idempotency and tracking.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, Protocol, runtime_checkable

from providers.lifecycle import State, StatusTable

BillingStarts = Literal["allocation", "ready"]
Progress = Callable[[str], None]

# The exact keys of the seed's spinup JSON, in its order.
INSTANCE_KEYS = (
    "instance_id",
    "provider",
    "gpu",
    "ssh_host",
    "ssh_port",
    "cost_per_hour",
    "status",
    "started_at",
)

_LABEL_UNSAFE = re.compile(r"[^a-z0-9-]+")


def _slug(text: str) -> str:
    return _LABEL_UNSAFE.sub("-", text.lower()).strip("-")


def iso_utc(moment: datetime) -> str:
    """ISO 8601 UTC with a ``Z`` suffix and whole seconds, e.g. ``2026-02-12T10:00:00Z``."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Spec:
    """What a spinup asks for. ``budget`` (USD/h) is a cap, never part of the identity."""

    gpu: str
    disk_gb: float
    template: str
    budget: float | None = None

    def normalized(self) -> Spec:
        gpu = " ".join(str(self.gpu).split())
        template = str(self.template).strip()
        if not gpu:
            raise ValueError("gpu must not be empty")
        if not template:
            raise ValueError("template must not be empty")
        disk = float(self.disk_gb)
        if not disk > 0:
            raise ValueError(f"disk_gb must be a positive number of GB, got {self.disk_gb!r}")
        if self.budget is not None and not float(self.budget) > 0:
            raise ValueError(f"budget must be a positive USD/h amount, got {self.budget!r}")
        budget = None if self.budget is None else float(self.budget)
        return Spec(gpu=gpu, disk_gb=disk, template=template, budget=budget)

    def identity(self, provider: str) -> str:
        """A deterministic label (``[a-z0-9-]``, at most 63 chars) from provider + gpu/disk/template."""
        spec = self.normalized()
        disk = int(spec.disk_gb) if spec.disk_gb.is_integer() else spec.disk_gb
        canonical = json.dumps(
            {"provider": provider, "gpu": spec.gpu.lower(), "disk_gb": disk, "template": spec.template},
            sort_keys=True,
        )
        digest = hashlib.sha256(canonical.encode()).hexdigest()[:10]
        readable = _slug(f"{provider}-{spec.gpu}-{disk}g-{spec.template}")[:48].strip("-")
        return f"cg-{readable}-{digest}"


@dataclass
class Instance:
    """One instance as the provider reports it. ``to_json()`` is exactly the seed's spinup JSON.

    ``ssh_host``/``ssh_port`` are None where the provider has no SSH (local); ``started_at`` is None
    only when the provider never reported a start time.
    """

    instance_id: str
    provider: str
    gpu: str
    status: State
    cost_per_hour: float = 0.0
    ssh_host: str | None = None
    ssh_port: int | None = None
    started_at: datetime | None = None
    identity: str | None = None
    vendor_status: str | None = None
    base_url: str | None = None
    model: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "instance_id": str(self.instance_id),
            "provider": self.provider,
            "gpu": self.gpu,
            "ssh_host": self.ssh_host,
            "ssh_port": None if self.ssh_port is None else int(self.ssh_port),
            "cost_per_hour": float(self.cost_per_hour),
            "status": self.status.value,
            "started_at": None if self.started_at is None else iso_utc(self.started_at),
        }


@dataclass(frozen=True)
class SSHInfo:
    host: str
    port: int
    user: str
    key_path: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"host": self.host, "port": self.port, "user": self.user, "key_path": self.key_path}


@dataclass(frozen=True)
class Offer:
    provider: str
    gpu: str
    cost_per_hour: float
    template: str | None = None
    disk_gb: float | None = None
    offer_id: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "provider": self.provider,
            "offer_id": self.offer_id,
            "gpu": self.gpu,
            "cost_per_hour": float(self.cost_per_hour),
            "template": self.template,
            "disk_gb": self.disk_gb,
        }


@dataclass(frozen=True)
class Availability:
    ok: bool
    reason: str = ""
    install_hint: str | None = None

    def __bool__(self) -> bool:
        return self.ok


@dataclass(frozen=True)
class TeardownResult:
    instance_id: str
    status: State
    billing_confirmed: bool
    already_terminated: bool = False
    warning: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "instance_id": self.instance_id,
            "status": self.status.value,
            "billing_confirmed": self.billing_confirmed,
            "already_terminated": self.already_terminated,
            "warning": self.warning,
        }


@runtime_checkable
class Provider(Protocol):
    """The six operations of the seed's contract, plus offers/availability/billing facts."""

    name: str
    billing_starts: BillingStarts

    def available(self) -> Availability: ...
    def offers(self, spec: Spec | None = None) -> list[Offer]: ...
    def spinup(self, spec: Spec, progress: Progress | None = None) -> Instance: ...
    def teardown(self, instance_id: str, progress: Progress | None = None) -> TeardownResult: ...
    def teardown_all(self, progress: Progress | None = None) -> list[TeardownResult]: ...
    def list(self) -> list[Instance]: ...
    def pull(self, instance_id: str, remote: str, local: str) -> None: ...
    def ssh_info(self, instance_id: str) -> SSHInfo: ...


class Backend(Protocol):
    """What one cloud adapter writes. Every method is a single vendor call or a pure check."""

    name: str
    billing_starts: BillingStarts
    statuses: StatusTable
    # Seconds between reads in the poll loop (a cloud wants a few seconds, local a fraction).
    poll_interval_s: float

    def available(self) -> Availability: ...
    def offers(self, spec: Spec | None) -> list[Offer]: ...
    def check(self, spec: Spec) -> None:
        """Raise Refused for a spec this provider cannot serve, before anything is created."""
    def create(self, spec: Spec, identity: str) -> str:
        """One create call (never retried blindly), labelled with ``identity``; returns the id."""
    def instances(self) -> list[Instance]:
        """The provider's listing (the source of truth), any state, with ``identity`` filled in."""
    def destroy(self, instance_id: str, force: bool = False) -> None:
        """Ask the provider to destroy or cancel; returns without waiting."""
    def failure_detail(self, instance_id: str) -> str:
        """A short human explanation of why an instance failed (log tail, vendor message)."""
    def pull(self, instance: Instance, remote: str, local: str, deadline_s: float) -> None:
        """Copy ``remote`` to ``local``; past ``deadline_s`` stop, remove the partial copy, raise PullFailed."""
    def ssh_info(self, instance: Instance, connect_timeout_s: float) -> SSHInfo:
        """SSH details, checked by one connect bounded by ``connect_timeout_s``. Errors of the
        classes in the backend's ``ssh_retry_on`` tuple (transient: refused, timed out) are retried
        by ManagedProvider with backoff; a backend without SSH has ``ssh_retry_on = ()``."""

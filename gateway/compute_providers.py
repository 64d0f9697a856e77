"""The compute providers a gateway drives, built from Settings and the bindings' values, and the
small pure helpers a provision needs (the normalized spec, the offer chosen)."""

from __future__ import annotations

from pathlib import Path

from gateway.errors import BadRequest
from gateway.settings import Settings
from providers.contract import Offer, Spec
from providers.lifecycle import Deadlines
from providers.local import LocalBackend
from providers.managed import ManagedProvider


def build_providers(settings: Settings) -> dict[str, ManagedProvider]:
    """The compute providers this gateway can drive, from Settings and the bindings' values."""
    values = settings.binding_values()
    model_path = (values.get("LOCAL_MODEL_PATH") or "").strip()
    try:
        n_ctx = int(values.get("LOCAL_N_CTX") or 2048)
    except ValueError:
        n_ctx = 2048  # the Policy reports the bad binding; the adapter keeps a sane default
    deadlines = Deadlines(
        spinup_s=settings.spinup_timeout_s,
        progress_every_s=settings.progress_interval_s,
        teardown_s=settings.teardown_timeout_s,
        pull_s=settings.pull_timeout_s,
        lock_s=settings.spinup_timeout_s + settings.health_gate_timeout_s + 30.0,
    )
    backend = LocalBackend(
        instances_dir=settings.resolve(settings.instances_dir),
        model=(values.get("LOCAL_MODEL") or "gemma-3-270m").strip(),
        model_path=Path(model_path) if model_path else None,
        n_ctx=n_ctx,
    )
    tracking = settings.resolve(settings.tracking_dir)
    return {"local": ManagedProvider(backend, tracking_dir=tracking, deadlines=deadlines)}


def make_spec(gpu: str, disk_gb: float, template: str, budget: float | None) -> Spec:
    try:
        return Spec(gpu=gpu, disk_gb=disk_gb, template=template, budget=budget).normalized()
    except (TypeError, ValueError) as exc:
        raise BadRequest(f"invalid spinup request: {exc}", code="invalid_value") from None


def choose_offer(offers: list[Offer], spec: Spec) -> Offer | None:
    matching = [o for o in offers if o.gpu.lower() == spec.gpu.lower()]
    return min(matching, key=lambda o: o.cost_per_hour) if matching else None

"""ComputeService: governed compute for the REST routes, the CLI and the embedded local default.

Every action is decided by the Policy on the facts of what would actually happen (the offer
chosen, the instances already running) and recorded in the decision ledger (durable) before it
runs; a provision gets a second record with its outcome (same decision id). Spinups of one
identity queue on an asyncio lock (one worker thread, not one per caller); the instance-count cap
is checked again under a provider-wide lock right before the create. A provision that is allowed
runs ``provider.spinup`` on the service's own pool, then the health gate, then registers the
instance as a routable upstream. The watcher (compute_base) keeps routing in step.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable
from typing import Any

from gateway.compute_base import INFERENCE_PROVIDER, ComputeBase
from gateway.compute_errors import AdmissionDenied, denial, not_found, translate, unavailable
from gateway.compute_providers import build_providers, choose_offer, make_spec
from gateway.errors import GatewayError, GatewayTimeout, ServiceUnavailable
from gateway.health_gate import GateFailed, health_gate
from gateway.settings import Settings
from gateway.telemetry import ATTR_INSTANCE_ID
from governance.decision import Facts
from providers.contract import Instance, Offer, Spec
from providers.errors import ProviderError
from providers.managed import ManagedProvider

log = logging.getLogger("canonic.compute")

__all__ = ["INFERENCE_PROVIDER", "ComputeService"]

# Providers whose instances are processes on this machine: the gateway tears down what it started.
EPHEMERAL = frozenset({"local"})
EMBEDDED_DISK_GB = 1.0
EMBEDDED_PRINCIPAL = "gateway:embedded"
THREAD_DRAIN_S = 60.0


class ComputeService(ComputeBase):
    def __init__(self, settings: Settings, policy: Any, registry: Any, ledger: Any, telemetry: Any = None, *,
                 providers: dict[str, ManagedProvider] | None = None, owns_instances: bool = True,
                 watch_interval_s: float = 1.0) -> None:
        super().__init__(settings, policy, registry, ledger, telemetry,
                         providers if providers is not None else build_providers(settings), watch_interval_s)
        self.owns_instances = owns_instances
        self._owned: set[tuple[str, str]] = set()  # (provider, identity) this gateway spun up
        self._tasks: list[asyncio.Task] = []

    # -- lifecycle -------------------------------------------------------------------------
    async def start(self) -> None:
        self._tasks.append(asyncio.create_task(self._watch(), name="compute-watch"))
        if self._wants_embedded():
            self.embedded = {"state": "starting", "detail": "local model starting"}
            self._tasks.append(asyncio.create_task(self._embedded(), name="compute-embedded"))

    async def stop(self) -> None:
        self._stopping = True
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            try:
                await task
            except (asyncio.CancelledError, Exception):
                pass
        self._tasks.clear()
        # A blocking spinup cannot be interrupted: destroying its instance makes its poll loop end,
        # then whatever it created after that first pass is destroyed once it returns.
        await self._teardown_owned()
        if self._threads:
            await asyncio.wait(list(self._threads), timeout=THREAD_DRAIN_S)
        await self._teardown_owned()
        self._owned.clear()
        self._pool.shutdown(wait=False, cancel_futures=True)

    async def _teardown_owned(self) -> None:
        """Shutdown teardowns are governed too: decided and ledgered as ``gateway:embedded``. The
        processes go whatever the ledger says (no process left behind); a failed record is logged."""
        for name, identity in sorted(self._owned):
            provider = self.providers[name]
            for instance in await self._call(provider.list):
                if instance.identity != identity:
                    continue
                self._unroute(instance.instance_id)
                started = time.perf_counter()
                facts = Facts(action="compute.teardown", principal=EMBEDDED_PRINCIPAL, provider=name)
                decision = self.policy.decide(facts)
                try:
                    await self._call(provider.teardown, instance.instance_id)
                    outcome, status = "teardown", 200
                except GatewayError as err:
                    log.warning("teardown of %s at shutdown failed: %s", instance.instance_id, err.message)
                    outcome, status = "failed", err.status
                try:
                    await self._record(decision, facts, request_id=None, started=started, outcome=outcome,
                                       status=status, instance=instance.instance_id)
                except GatewayError as err:
                    log.warning("shutdown teardown of %s not ledgered: %s", instance.instance_id, err.message)

    def _wants_embedded(self) -> bool:
        if not self.settings.embedded_local or "local" not in self.providers:
            return False
        bindings = getattr(self.policy, "providers", {}) or {}
        if "LOCAL" not in bindings or "local" not in (getattr(self.policy, "compute", {}) or {}):
            return False
        remote = any(b.base_url for b in bindings.values())
        return not remote or getattr(self.policy, "fallback_provider", None) == "LOCAL"

    async def _embedded(self) -> None:
        template = self.policy.providers["LOCAL"].model
        try:
            availability = await self._call(self.providers["local"].available)
            if not availability.ok:
                hint = f" {availability.install_hint}" if availability.install_hint else ""
                self.embedded = {"state": "unavailable", "detail": f"local model unavailable: {availability.reason}.{hint}"}
                return
            instance = await self.spinup(principal=EMBEDDED_PRINCIPAL, provider="local", gpu="cpu",
                                         disk_gb=EMBEDDED_DISK_GB, template=template, progress=log.info)
        except GatewayError as err:
            self.embedded = {"state": "failed", "detail": f"local model failed to start: {err.message}"}
            log.warning("embedded local model: %s", err.message)
            return
        self.embedded = {"state": "ready", "detail": f"local model {template} routable ({instance.instance_id})",
                         "instance_id": instance.instance_id}

    def readiness(self) -> dict[str, Any]:
        state = self.embedded["state"]
        return {"ok": state in ("off", "ready"), "detail": self.embedded["detail"]}

    # -- provision ---------------------------------------------------------------------------
    async def spinup(self, *, principal: str, provider: str, gpu: str, disk_gb: float, template: str,
                     budget: float | None = None, progress: Callable[[str], None] | None = None,
                     request_id: str | None = None) -> Instance:
        started = time.perf_counter()
        adapter = self.provider(provider)
        spec = make_spec(gpu, disk_gb, template, budget)
        identity = spec.identity(adapter.name)
        async with self.identity_lock(adapter.name, identity):
            return await self._spinup(adapter, spec, identity, principal, progress, request_id, started)

    async def _spinup(self, adapter: ManagedProvider, spec: Spec, identity: str, principal: str,
                      progress: Callable[[str], None] | None, request_id: str | None, started: float) -> Instance:
        provider = adapter.name
        availability = await self._call(adapter.available)
        if not availability.ok:
            raise translate(unavailable(provider, availability))
        offers = await self._call(adapter.offers, spec)
        offer = choose_offer(offers, spec)
        if offer is None:
            gpus = ", ".join(sorted({o.gpu for o in offers})) or "none"
            raise GatewayError(f"no {provider} offer for gpu {spec.gpu!r} (offered: {gpus})", status=409,
                               param="gpu", code="no_offer", headers={"x-should-retry": "false"})
        with self._span("compute.provision", {"canonic.compute.provider": provider, "canonic.compute.gpu": spec.gpu,
                                              "canonic.compute.identity": identity}) as span:
            async with self.provider_lock(provider):  # count, decide and ledger as one step
                others = await self._call(adapter.active_others, identity)
                facts = Facts(action="compute.provision", principal=principal, provider=provider,
                              model=spec.template if provider == "local" else None, gpu=offer.gpu,
                              cost_per_hour=offer.cost_per_hour, budget=spec.budget,
                              instance_count=others, template=spec.template)
                decision = await self._decide(facts, request_id=request_id, started=started)
                span.set_attribute("canonic.decision.id", decision.id)
                # durable BEFORE anything is created: a crash mid-spinup still leaves the decision
                await self._record(decision, facts, request_id=request_id, started=started, outcome="allowed",
                                   status=None)

            def admit(count: int) -> None:  # in the worker, under the provider-wide create lock
                if count != others:
                    again = self.policy.decide(dataclasses.replace(facts, instance_count=count))
                    if not again.allow:
                        raise AdmissionDenied(again, dataclasses.replace(facts, instance_count=count))

            def outcome(name: str, status: int, **kw: Any):
                return self._record(decision, facts, request_id=request_id, started=started, outcome=name,
                                    status=status, count=False, **kw)
            try:
                instance = await self._provision(adapter, spec, identity, progress, admit)
            except AdmissionDenied as refused:
                await outcome("denied_at_create", 403, error_type=refused.decision.reason_code)
                await self._record(refused.decision, refused.facts, request_id=request_id, started=started,
                                   outcome="denied", status=403)
                raise denial(refused.decision) from None
            except GatewayError as err:
                if self._stopping:
                    err = ServiceUnavailable(f"spinup cancelled by shutdown ({err.message})",
                                             code="spinup_cancelled")
                await outcome("cancelled" if self._stopping else "failed", err.status, error_type=err.code)
                raise err from None
            except asyncio.CancelledError:
                log.warning("spinup of %s cancelled by shutdown", identity)
                try:
                    await outcome("cancelled", 503, error_type="spinup_cancelled")
                finally:
                    raise
            span.set_attribute(ATTR_INSTANCE_ID, instance.instance_id)
            await outcome("created", 202, instance=instance.instance_id)
        return instance

    async def _provision(self, adapter: ManagedProvider, spec: Spec, identity: str,
                         progress: Callable[[str], None] | None, admit: Callable[[int], None]) -> Instance:
        provider = adapter.name
        if self.owns_instances and provider in EPHEMERAL:
            self._owned.add((provider, identity))
        instance = await self._call(adapter.spinup, spec, progress, admit)
        model = instance.model or spec.template
        expected = instance.extra.get("n_ctx") if provider == "local" else None
        if instance.base_url is None:
            return instance  # nothing to gate or route (a bare GPU box)
        try:
            reported = await health_gate(
                instance.base_url, model, expected_max_model_len=expected,
                timeout_s=self.settings.health_gate_timeout_s, progress=progress,
                progress_every_s=self.settings.progress_interval_s)
        except GateFailed as exc:
            self._unroute(instance.instance_id)
            result = await self._call(adapter.teardown, instance.instance_id)
            billing = "billing confirmed stopped" if result.billing_confirmed else result.warning
            raise GatewayTimeout(f"instance {instance.instance_id} failed the health gate and was destroyed "
                                 f"({billing}): {exc}", code="health_gate_failed") from None
        self._parked.pop(instance.instance_id, None)
        self._route(provider, instance, model, reported or expected)
        return instance

    # -- the other operations ----------------------------------------------------------------
    async def offers(self, *, principal: str, provider: str, request_id: str | None = None) -> list[Offer]:
        started = time.perf_counter()
        adapter = self.provider(provider)
        facts = Facts(action="compute.offers", principal=principal, provider=provider)
        decision = await self._decide(facts, request_id=request_id, started=started)
        try:
            availability = await self._call(adapter.available)
            if not availability.ok:
                raise translate(unavailable(adapter.name, availability))
            found = await self._call(adapter.offers, None)
        except GatewayError as err:
            await self._record(decision, facts, request_id=request_id, started=started, outcome="failed",
                               status=err.status, error_type=err.code)
            raise
        await self._record(decision, facts, request_id=request_id, started=started, outcome="listed", status=200)
        return found

    async def list(self, *, principal: str, provider: str | None = None,
                   request_id: str | None = None) -> list[Instance]:
        started = time.perf_counter()
        names = [self.provider(provider).name] if provider is not None else sorted(self.providers)
        facts = Facts(action="compute.read", principal=principal, provider=provider)
        decision = await self._decide(facts, request_id=request_id, started=started)
        found: list[Instance] = []
        for name in names:
            live = await self._call(self.providers[name].list)
            await self._observe(name, live)
            found.extend(live)
        await self._record(decision, facts, request_id=request_id, started=started, outcome="listed", status=200)
        return found

    async def _locate(self, instance_id: str, provider: str | None = None) -> tuple[str, Instance | None]:
        names = [self.provider(provider).name] if provider is not None else sorted(self.providers)
        for name in names:
            adapter = self.providers[name]
            live = await self._call(adapter.list)
            match = next((i for i in live if i.instance_id == instance_id), None)
            if match is not None:
                return name, match
            if adapter.tracker.known(instance_id):
                return name, None
        raise translate(not_found(instance_id, ", ".join(names)))

    async def get(self, *, principal: str, instance_id: str, provider: str | None = None,
                  request_id: str | None = None) -> Instance:
        started = time.perf_counter()
        name, found = await self._locate(instance_id, provider)
        facts = Facts(action="compute.read", principal=principal, provider=name)
        decision = await self._decide(facts, request_id=request_id, started=started)
        status = 200 if found is not None else 404
        await self._record(decision, facts, request_id=request_id, started=started, outcome="read", status=status,
                           instance=instance_id)
        if found is None:
            raise GatewayError(f"Instance {instance_id} is terminated.", status=404, code="instance_terminated",
                               param="instance_id")
        return found

    async def ssh_info(self, *, principal: str, instance_id: str, provider: str | None = None,
                       request_id: str | None = None) -> dict[str, Any]:
        return await self._act("compute.read", "ssh_info", principal, instance_id, provider, request_id,
                               lambda r: r.to_json())

    async def pull(self, *, principal: str, instance_id: str, remote: str, local: str, provider: str | None = None,
                   request_id: str | None = None) -> None:
        await self._act("compute.read", "pull", principal, instance_id, provider, request_id, lambda r: None,
                        remote, local)

    async def teardown(self, *, principal: str, instance_id: str, provider: str | None = None,
                       progress: Callable[[str], None] | None = None,
                       request_id: str | None = None) -> dict[str, Any]:
        # routing stops before the instance does, but only once the teardown is decided and located
        doc = await self._act("compute.teardown", "teardown", principal, instance_id, provider, request_id,
                              lambda r: r.to_json(), progress, before=lambda: self._unroute(instance_id))
        await self._after_teardown()
        return doc

    async def _act(self, action: str, op: str, principal: str, instance_id: str, provider: str | None,
                   request_id: str | None, shape: Callable[[Any], Any], *args: Any,
                   before: Callable[[], None] | None = None) -> Any:
        started = time.perf_counter()
        name, _ = await self._locate(instance_id, provider)
        facts = Facts(action=action, principal=principal, provider=name)
        decision = await self._decide(facts, request_id=request_id, started=started)
        if before is not None:
            before()
        try:
            result = await self._call(getattr(self.providers[name], op), instance_id, *args)
        except GatewayError as err:
            await self._record(decision, facts, request_id=request_id, started=started, outcome="failed",
                               status=err.status, instance=instance_id, error_type=err.code)
            raise
        await self._record(decision, facts, request_id=request_id, started=started, outcome=op, status=200,
                           instance=instance_id)
        return shape(result)

    async def teardown_all(self, *, principal: str, provider: str | None = None,
                           progress: Callable[[str], None] | None = None,
                           request_id: str | None = None) -> list[dict[str, Any]]:
        started = time.perf_counter()
        names = [self.provider(provider).name] if provider is not None else sorted(self.providers)
        results: list[dict[str, Any]] = []
        for name in names:
            facts = Facts(action="compute.teardown", principal=principal, provider=name)
            decision = await self._decide(facts, request_id=request_id, started=started)
            for instance_id, owner in list(self._routed.items()) + [(i, p[0]) for i, p in self._parked.items()]:
                if owner == name:
                    self._unroute(instance_id)
            try:
                done = await self._call(self.providers[name].teardown_all, progress)
            except GatewayError as err:
                await self._record(decision, facts, request_id=request_id, started=started, outcome="failed",
                                   status=err.status, error_type=err.code)
                raise
            await self._record(decision, facts, request_id=request_id, started=started, outcome="teardown_all",
                               status=200)
            results.extend(r.to_json() for r in done)
        await self._after_teardown()
        return results

    async def _after_teardown(self) -> None:
        """Gauges and readiness follow a teardown at once, not a watch interval later."""
        try:
            await self.reconcile()
        except (GatewayError, ProviderError, OSError) as exc:
            log.warning("reconcile after teardown: %s", exc)

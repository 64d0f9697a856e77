"""ComputeService: governed compute for the REST routes, the CLI and the embedded local default.

Every action is decided by the Policy on the facts of what would actually happen (the offer
chosen, the instances already running) and recorded in the decision ledger (durable) before the
caller hears back. A provision that is allowed runs ``provider.spinup`` (blocking, in a worker
thread), then the health gate, then registers the instance as a routable upstream. Instances
that die are removed from routing by a watcher; ``list`` reconciles too.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable
from typing import Any

from gateway.compute_errors import NullSpan, denial, not_found, translate, unavailable
from gateway.compute_providers import build_providers, choose_offer, make_spec
from gateway.errors import BadRequest, GatewayError, GatewayTimeout
from gateway.health_gate import GateFailed, health_gate
from gateway.settings import Settings
from governance.decision import Decision, Facts
from providers.contract import Instance, Offer, Spec
from providers.errors import ProviderError
from providers.lifecycle import State
from providers.managed import ManagedProvider

log = logging.getLogger("canonic.compute")

# Compute provider -> the inference provider whose upstreams its instances become.
INFERENCE_PROVIDER = {"local": "LOCAL", "vast": "VASTAI", "basilica": "BASILICA"}
# Providers whose instances are processes on this machine: the gateway tears down what it started.
EPHEMERAL = frozenset({"local"})
EMBEDDED_DISK_GB = 1.0
EMBEDDED_PRINCIPAL = "gateway:embedded"
THREAD_DRAIN_S = 60.0


class ComputeService:
    def __init__(self, settings: Settings, policy: Any, registry: Any, ledger: Any, telemetry: Any = None, *,
                 providers: dict[str, ManagedProvider] | None = None, owns_instances: bool = True,
                 watch_interval_s: float = 1.0) -> None:
        self.settings, self.policy, self.registry, self.ledger, self.telemetry = (
            settings, policy, registry, ledger, telemetry)
        self.providers = providers if providers is not None else build_providers(settings)
        self.owns_instances = owns_instances
        self.watch_interval_s = watch_interval_s
        self._routed: dict[str, str] = {}  # instance_id -> compute provider
        self._owned: set[tuple[str, str]] = set()  # (provider, identity) this gateway spun up
        self._threads: set[asyncio.Future] = set()
        self._tasks: list[asyncio.Task] = []
        self.embedded: dict[str, Any] = {"state": "off", "detail": "embedded local model not requested"}

    # -- lifecycle -------------------------------------------------------------------------
    async def start(self) -> None:
        self._tasks.append(asyncio.create_task(self._watch(), name="compute-watch"))
        if self._wants_embedded():
            self.embedded = {"state": "starting", "detail": "local model starting"}
            self._tasks.append(asyncio.create_task(self._embedded(), name="compute-embedded"))

    async def stop(self) -> None:
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

    async def _teardown_owned(self) -> None:
        for name, identity in sorted(self._owned):
            provider = self.providers[name]
            for instance in await asyncio.to_thread(provider.list):
                if instance.identity == identity:
                    self.registry.unregister(instance.instance_id)
                    self._routed.pop(instance.instance_id, None)
                    try:
                        await asyncio.to_thread(provider.teardown, instance.instance_id)
                    except ProviderError as exc:
                        log.warning("teardown of %s at shutdown failed: %s", instance.instance_id, exc)

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

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.watch_interval_s)
            try:
                await self.reconcile()
            except Exception as exc:  # the watcher must outlive a bad listing
                log.warning("compute watch: %s", type(exc).__name__)

    async def reconcile(self) -> None:
        """Unregister routed instances that are no longer RUNNING on their provider."""
        for name in sorted(set(self._routed.values())):
            live = await self._call(self.providers[name].list)
            self._observe(name, live)

    def _observe(self, name: str, live: list[Instance]) -> None:
        running = {i.instance_id for i in live if i.status == State.RUNNING}
        alive = {i.instance_id for i in live}
        for instance_id, owner in list(self._routed.items()):
            if owner == name and instance_id not in alive:
                self.registry.unregister(instance_id)
                del self._routed[instance_id]
                log.warning("instance %s on %s is gone; removed from routing", instance_id, name)
        if self.telemetry is not None:
            metrics = self.telemetry.metrics
            for state in (State.PENDING, State.RUNNING, State.STOPPING):
                metrics.set_instances(name, state.value, sum(1 for i in live if i.status == state))
            metrics.set_cost(name, sum(i.cost_per_hour for i in live if i.instance_id in running))

    # -- blocking calls and records ----------------------------------------------------------
    async def _call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run a blocking provider call in a worker thread; translate its errors."""
        future = asyncio.get_running_loop().run_in_executor(None, functools.partial(fn, *args))
        self._threads.add(future)
        future.add_done_callback(self._threads.discard)
        try:
            return await asyncio.shield(future)
        except ProviderError as exc:
            raise translate(exc) from None

    def provider(self, name: str) -> ManagedProvider:
        if not isinstance(name, str) or name not in self.providers:
            known = ", ".join(sorted(self.providers))
            raise BadRequest(f"unknown compute provider {name!r}; this gateway drives: {known}",
                             param="provider", code="unknown_provider")
        return self.providers[name]

    async def _decide(self, facts: Facts, *, request_id: str | None, started: float, **record: Any) -> Decision:
        self.ledger.check_available()  # fail closed: no ledger, no governed action
        decision = self.policy.decide(facts)
        if not decision.allow:
            await self._record(decision, facts, request_id=request_id, started=started, outcome="denied", status=403)
            raise denial(decision)
        return decision

    async def _record(self, decision: Decision, facts: Facts, *, request_id: str | None, started: float,
                      outcome: str, status: int, instance: str | None = None, error_type: str | None = None) -> None:
        trace_id = self.telemetry.trace_id() if self.telemetry is not None else None
        record = {
            "decision_id": decision.id, "principal": facts.principal, "action": decision.action,
            "model": facts.model or facts.template, "provider": facts.provider, "instance": instance,
            "allow": decision.allow, "rule_ids": list(decision.rule_ids), "policy_revision": decision.policy_revision,
            "trace_id": trace_id, "request_id": request_id, "outcome": outcome,
            "latency_ms": round((time.perf_counter() - started) * 1000, 3), "reason_code": decision.reason_code,
            "status": status,
        }
        if error_type:
            record["error_type"] = error_type
        await self.ledger.append(record, durable=True)
        if self.telemetry is not None:
            self.telemetry.metrics.record_decision(decision.action, decision.allow,
                                                   "" if decision.allow else ",".join(decision.rule_ids))

    def _span(self, name: str, attributes: dict[str, Any]):
        if self.telemetry is None:
            return NullSpan()
        return self.telemetry.span(name, {k: v for k, v in attributes.items() if v is not None})

    # -- provision ---------------------------------------------------------------------------
    async def spinup(self, *, principal: str, provider: str, gpu: str, disk_gb: float, template: str,
                     budget: float | None = None, progress: Callable[[str], None] | None = None,
                     request_id: str | None = None) -> Instance:
        started = time.perf_counter()
        adapter = self.provider(provider)
        spec = make_spec(gpu, disk_gb, template, budget)
        identity = spec.identity(adapter.name)
        availability = await self._call(adapter.available)
        if not availability.ok:
            raise translate(unavailable(adapter.name, availability))
        offers = await self._call(adapter.offers, spec)
        offer = choose_offer(offers, spec)
        if offer is None:
            gpus = ", ".join(sorted({o.gpu for o in offers})) or "none"
            raise GatewayError(f"no {provider} offer for gpu {spec.gpu!r} (offered: {gpus})", status=409,
                               param="gpu", code="no_offer", headers={"x-should-retry": "false"})
        live = await self._call(adapter.list)
        others = sum(1 for i in live if i.identity != identity and i.status in (State.RUNNING, State.PENDING))
        facts = Facts(action="compute.provision", principal=principal, provider=provider,
                      model=template if provider == "local" else None, gpu=spec.gpu,
                      cost_per_hour=offer.cost_per_hour, budget=spec.budget,
                      instance_count=others, template=spec.template)
        with self._span("compute.provision", {"canonic.compute.provider": provider, "canonic.compute.gpu": spec.gpu,
                                              "canonic.compute.identity": identity}) as span:
            decision = await self._decide(facts, request_id=request_id, started=started)
            span.set_attribute("canonic.decision.id", decision.id)
            try:
                instance = await self._provision(adapter, provider, spec, identity, progress)
            except GatewayError as err:
                await self._record(decision, facts, request_id=request_id, started=started, outcome="failed",
                                   status=err.status, error_type=err.code)
                raise
            span.set_attribute("canonic.compute.instance", instance.instance_id)
            await self._record(decision, facts, request_id=request_id, started=started, outcome="provisioned",
                               status=202, instance=instance.instance_id)
        return instance

    async def _provision(self, adapter: ManagedProvider, provider: str, spec: Spec, identity: str,
                         progress: Callable[[str], None] | None) -> Instance:
        if self.owns_instances and provider in EPHEMERAL:
            self._owned.add((provider, identity))
        instance = await self._call(adapter.spinup, spec, progress)
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
            self.registry.unregister(instance.instance_id)
            result = await self._call(adapter.teardown, instance.instance_id)
            billing = "billing confirmed stopped" if result.billing_confirmed else result.warning
            raise GatewayTimeout(f"instance {instance.instance_id} failed the health gate and was destroyed "
                                 f"({billing}): {exc}", code="health_gate_failed") from None
        self._route(provider, instance, model, reported or expected)
        return instance

    def _route(self, provider: str, instance: Instance, model: str, max_model_len: int | None) -> None:
        name = INFERENCE_PROVIDER.get(provider)
        binding = (getattr(self.policy, "providers", {}) or {}).get(name)
        if binding is None or binding.model != model:
            log.info("instance %s serves %s, which no inference binding routes to", instance.instance_id, model)
            return
        routed = {u.instance_id for u in self.registry.for_provider(name)}
        if instance.instance_id not in routed:
            self.registry.register(provider=name, model=model, base_url=instance.base_url,
                                   instance_id=instance.instance_id, max_model_len=max_model_len)
        self._routed[instance.instance_id] = provider

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
            self._observe(name, live)
            found.extend(live)
        await self._record(decision, facts, request_id=request_id, started=started, outcome="listed", status=200)
        return found

    async def _locate(self, instance_id: str) -> tuple[str, Instance | None]:
        for name in sorted(self.providers):
            provider = self.providers[name]
            live = await self._call(provider.list)
            match = next((i for i in live if i.instance_id == instance_id), None)
            if match is not None:
                return name, match
            if provider.tracker.known(instance_id):
                return name, None
        raise translate(not_found(instance_id, ", ".join(sorted(self.providers))))

    async def get(self, *, principal: str, instance_id: str, request_id: str | None = None) -> Instance:
        started = time.perf_counter()
        name, found = await self._locate(instance_id)
        facts = Facts(action="compute.read", principal=principal, provider=name)
        decision = await self._decide(facts, request_id=request_id, started=started)
        status = 200 if found is not None else 404
        await self._record(decision, facts, request_id=request_id, started=started, outcome="read", status=status,
                           instance=instance_id)
        if found is None:
            raise GatewayError(f"Instance {instance_id} is terminated.", status=404, code="instance_terminated",
                               param="instance_id")
        return found

    async def ssh_info(self, *, principal: str, instance_id: str, request_id: str | None = None) -> dict[str, Any]:
        return await self._act("compute.read", "ssh_info", principal, instance_id, request_id, lambda r: r.to_json())

    async def pull(self, *, principal: str, instance_id: str, remote: str, local: str,
                   request_id: str | None = None) -> None:
        await self._act("compute.read", "pull", principal, instance_id, request_id, lambda r: None, remote, local)

    async def teardown(self, *, principal: str, instance_id: str, progress: Callable[[str], None] | None = None,
                       request_id: str | None = None) -> dict[str, Any]:
        self.registry.unregister(instance_id)  # routing stops before the instance does
        self._routed.pop(instance_id, None)
        return await self._act("compute.teardown", "teardown", principal, instance_id, request_id,
                               lambda r: r.to_json(), progress)

    async def _act(self, action: str, op: str, principal: str, instance_id: str, request_id: str | None,
                   shape: Callable[[Any], Any], *args: Any) -> Any:
        started = time.perf_counter()
        name, _ = await self._locate(instance_id)
        facts = Facts(action=action, principal=principal, provider=name)
        decision = await self._decide(facts, request_id=request_id, started=started)
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
            for instance_id, owner in list(self._routed.items()):
                if owner == name:
                    self.registry.unregister(instance_id)
                    del self._routed[instance_id]
            try:
                done = await self._call(self.providers[name].teardown_all, progress)
            except GatewayError as err:
                await self._record(decision, facts, request_id=request_id, started=started, outcome="failed",
                                   status=err.status, error_type=err.code)
                raise
            await self._record(decision, facts, request_id=request_id, started=started, outcome="teardown_all",
                               status=200)
            results.extend(r.to_json() for r in done)
        return results

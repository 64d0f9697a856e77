"""The plumbing under ComputeService: its own worker pool for blocking provider calls, the
per-identity and per-provider asyncio locks, decisions and their ledger records, spans, and the
watcher that keeps routing, gauges and the embedded model's readiness in step with the providers.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from gateway.compute_errors import NullSpan, denial, translate
from gateway.errors import BadRequest
from gateway.health_gate import GateFailed, health_gate
from gateway.settings import Settings
from governance.decision import Decision, Facts
from providers.contract import Instance
from providers.errors import ProviderError
from providers.lifecycle import State
from providers.managed import ManagedProvider

log = logging.getLogger("canonic.compute")

# Compute provider -> the inference provider whose upstreams its instances become.
INFERENCE_PROVIDER = {"local": "LOCAL", "vast": "VASTAI", "basilica": "BASILICA"}
COMPUTE_THREADS = 4  # blocking provider calls; waits for one identity never take more than one
HEALTH_PATH = "/v1/models"  # relative to the server root; every OpenAI-compatible server answers it
REGATE_TIMEOUT_S = 3.0
# A server that is alive but does not answer its probe may just be busy (llama.cpp queues the
# probe behind a running stream): it leaves routing after this many passes in a row. An instance
# that is gone or STOPPING leaves at once.
UNANSWERED_PASSES = 5  # a RUNNING-again instance must pass the gate this fast to be routed again


class ComputeBase:
    def __init__(self, settings: Settings, policy: Any, registry: Any, ledger: Any, telemetry: Any,
                 providers: dict[str, ManagedProvider], watch_interval_s: float) -> None:
        self.settings, self.policy, self.registry, self.ledger, self.telemetry = (
            settings, policy, registry, ledger, telemetry)
        self.providers = providers
        self.watch_interval_s = watch_interval_s
        self._routed: dict[str, str] = {}  # instance_id -> compute provider
        # instances taken out of routing while not RUNNING: id -> (provider, model, max_model_len)
        self._parked: dict[str, tuple[str, str, int | None]] = {}
        self._misses: dict[str, int] = {}  # routed id -> passes in a row it was PENDING (unanswering)
        self._pool = ThreadPoolExecutor(max_workers=COMPUTE_THREADS, thread_name_prefix="canonic-compute")
        self._threads: set[asyncio.Future] = set()
        self._identity_locks: dict[tuple[str, str], asyncio.Lock] = {}
        self._provider_locks: dict[str, asyncio.Lock] = {}
        self._stopping = False
        self.embedded: dict[str, Any] = {"state": "off", "detail": "embedded local model not requested"}

    # -- blocking calls ------------------------------------------------------------------------
    async def _call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run a blocking provider call on the service's own pool; translate its errors.

        The call is shielded (a cancelled caller does not interrupt a provider mid-operation);
        its outcome is always retrieved, so a late failure is logged once, never left unretrieved.
        """
        future = asyncio.get_running_loop().run_in_executor(self._pool, functools.partial(fn, *args))
        self._threads.add(future)
        future.add_done_callback(self._settled)
        try:
            return await asyncio.shield(future)
        except ProviderError as exc:
            raise translate(exc) from None

    def _settled(self, future: asyncio.Future) -> None:
        self._threads.discard(future)
        if future.cancelled():
            return
        exc = future.exception()  # retrieved: no "Future exception was never retrieved"
        if exc is not None and self._stopping:
            log.info("compute call ended by shutdown: %s", exc)

    def identity_lock(self, provider: str, identity: str) -> asyncio.Lock:
        return self._identity_locks.setdefault((provider, identity), asyncio.Lock())

    def provider_lock(self, provider: str) -> asyncio.Lock:
        return self._provider_locks.setdefault(provider, asyncio.Lock())

    def provider(self, name: str | None) -> ManagedProvider:
        if not isinstance(name, str) or name not in self.providers:
            known = ", ".join(sorted(self.providers))
            raise BadRequest(f"unknown compute provider {name!r}; this gateway drives: {known}",
                             param="provider", code="unknown_provider")
        return self.providers[name]

    # -- decisions and records -------------------------------------------------------------------
    async def _decide(self, facts: Facts, *, request_id: str | None, started: float) -> Decision:
        self.ledger.check_available()  # fail closed: no ledger, no governed action
        decision = self.policy.decide(facts)
        if not decision.allow:
            await self._record(decision, facts, request_id=request_id, started=started, outcome="denied", status=403)
            raise denial(decision)
        return decision

    async def _record(self, decision: Decision, facts: Facts, *, request_id: str | None, started: float,
                      outcome: str, status: int | None, instance: str | None = None,
                      error_type: str | None = None, count: bool = True) -> None:
        """One durable ledger line; ``count`` (once per decision) feeds the decision metric."""
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
        if self.telemetry is not None and count:
            self.telemetry.metrics.record_decision(decision.action, decision.allow, _rule_label(decision))

    def _span(self, name: str, attributes: dict[str, Any]):
        if self.telemetry is None:
            return NullSpan()
        return self.telemetry.span(name, {k: v for k, v in attributes.items() if v is not None})

    # -- watching --------------------------------------------------------------------------------
    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.watch_interval_s)
            try:
                await self.reconcile()
            except Exception as exc:  # the watcher must outlive a bad listing
                log.warning("compute watch: %s", type(exc).__name__)

    async def reconcile(self, names: list[str] | None = None) -> None:
        """Read every provider (not only routed ones): routing, gauges and readiness follow it."""
        for name in names if names is not None else sorted(self.providers):
            live = await self._call(self.providers[name].list)
            await self._observe(name, live)

    async def _observe(self, name: str, live: list[Instance]) -> None:
        running = {i.instance_id: i for i in live if i.status == State.RUNNING}
        unanswering = {i.instance_id for i in live if i.status == State.PENDING}
        for instance_id, owner in list(self._routed.items()):
            if owner != name:
                continue
            if instance_id in running:
                self._misses.pop(instance_id, None)
                continue
            if instance_id in unanswering:
                self._misses[instance_id] = self._misses.get(instance_id, 0) + 1
                if self._misses[instance_id] < UNANSWERED_PASSES:
                    continue
            self._misses.pop(instance_id, None)
            upstream = next((u for u in self.registry.for_provider(INFERENCE_PROVIDER.get(name))
                             if u.instance_id == instance_id), None)
            self.registry.unregister(instance_id)
            del self._routed[instance_id]
            if upstream is not None and any(i.instance_id == instance_id for i in live):
                self._parked[instance_id] = (name, upstream.model, getattr(upstream, "max_model_len", None))
            log.warning("instance %s on %s is not RUNNING; removed from routing", instance_id, name)
        alive = {i.instance_id for i in live}
        for instance_id, (owner, model, max_len) in list(self._parked.items()):
            if owner != name:
                continue
            if instance_id not in alive:
                del self._parked[instance_id]
            elif instance_id in running:
                await self._regate(name, running[instance_id], model, max_len)
        if self.telemetry is not None:
            metrics = self.telemetry.metrics
            for state in (State.PENDING, State.RUNNING, State.STOPPING):
                metrics.set_instances(name, state.value, sum(1 for i in live if i.status == state))
            metrics.set_cost(name, sum(i.cost_per_hour for i in running.values()))
        if name == "local":
            self._embedded_follows(running)

    async def _regate(self, name: str, instance: Instance, model: str, max_len: int | None) -> None:
        try:
            await health_gate(instance.base_url, model, expected_max_model_len=max_len, timeout_s=REGATE_TIMEOUT_S)
        except GateFailed:
            return  # still parked; tried again on the next pass
        del self._parked[instance.instance_id]
        self._route(name, instance, model, max_len)
        log.info("instance %s on %s is RUNNING and gated again; routed", instance.instance_id, name)

    def _route(self, provider: str, instance: Instance, model: str, max_model_len: int | None) -> None:
        name = INFERENCE_PROVIDER.get(provider)
        binding = (getattr(self.policy, "providers", {}) or {}).get(name)
        if binding is None or binding.model != model:
            log.info("instance %s serves %s, which no inference binding routes to", instance.instance_id, model)
            return
        routed = {u.instance_id for u in self.registry.for_provider(name)}
        if instance.instance_id not in routed:
            # the instance's health probe: llama.cpp has no /health; /v1/models is what the gate checked
            self.registry.register(provider=name, model=model, base_url=instance.base_url,
                                   instance_id=instance.instance_id, max_model_len=max_model_len,
                                   health_path=HEALTH_PATH)
        self._routed[instance.instance_id] = provider

    def _unroute(self, instance_id: str) -> None:
        self._misses.pop(instance_id, None)
        self.registry.unregister(instance_id)
        self._routed.pop(instance_id, None)
        self._parked.pop(instance_id, None)

    def _embedded_follows(self, running: dict[str, Instance]) -> None:
        """The embedded model is ready while a local instance routed for LOCAL runs."""
        state = self.embedded.get("state")
        if state not in ("ready", "gone"):
            return
        routed = [i for i in running if self._routed.get(i) == "local"]
        current = self.embedded.get("instance_id")
        if current in routed:
            return
        if routed:
            self.embedded = {"state": "ready", "instance_id": routed[0],
                             "detail": f"local model routable ({routed[0]})"}
        elif state == "ready":
            self.embedded = {"state": "gone", "instance_id": current,
                             "detail": f"local model instance {current} is not running (torn down or died); "
                                       "POST /v1/compute/instances brings it back"}


def _rule_label(decision: Decision) -> str:
    try:
        from gateway.audit import rule_label
    except ImportError:
        return "" if decision.allow else ",".join(decision.rule_ids)
    return rule_label(decision)

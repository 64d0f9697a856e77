"""The gateway's metrics: one prometheus_client ``CollectorRegistry`` owned by this object, served at
``GET /metrics`` and, when a metrics exporter is configured, pushed over OTLP from the same registry
(``gateway/telemetry_push.py``): each measurement is recorded once.

Instruments are created once here; the request path only calls the ``record_*`` / ``set_*`` methods.
OTLP names are the Prometheus names without the ``_total`` suffix of counters.

Prometheus families (all prefixed ``canonic_``):
  request_duration_seconds{route,model,provider,status}       histogram
  time_to_first_token_seconds{route,model,provider,status}    histogram
  tokens_total{model,provider,type}                           counter, type = input | output
  decisions_total{action,allow,rule}                          counter, allow = true | false
  retries_total{provider}, fallbacks_total{from_provider,to_provider}
  circuit_state{upstream}                                     gauge, 0 closed, 1 half_open, 2 open
  exporter_failures_total{signal}                             counter, signal = traces | metrics
  compute_instances{provider,state}                           gauge
  compute_cost_per_hour_dollars{provider}                     gauge, $/h of the running instances
  <name> / <name>_total                                       callbacks registered with observe()
"""

from __future__ import annotations

import re
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

PREFIX = "canonic_"
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
TTFT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
CIRCUIT_STATES = {"closed": 0, "half_open": 1, "half-open": 1, "open": 2}
BOUND_MAX = 4096  # label sets of record_request kept bound; beyond that they are bound per call
_NAME = re.compile(r"^[a-z_][a-z0-9_]*$")


class _Callbacks:
    """A prometheus collector over the callbacks registered with ``Metrics.observe``."""

    def __init__(self) -> None:
        self.entries: dict[str, tuple[str, str, Callable[[], float]]] = {}

    def collect(self):
        for name, (kind, doc, fn) in list(self.entries.items()):
            try:
                value = float(fn())
            except Exception:  # a broken callback must not break /metrics
                continue
            family = CounterMetricFamily if kind == "counter" else GaugeMetricFamily
            yield family(name, doc, value=value)

    def describe(self):
        return []



class Metrics:
    """Prometheus metrics (the OTLP push reads ``registry``). With ``enabled=False`` every method
    is a no-op and ``/metrics`` shows empty families."""

    def __init__(self, *, enabled: bool = True) -> None:
        self.enabled = enabled
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        labels = ("route", "model", "provider", "status")
        self._duration = Histogram(
            PREFIX + "request_duration_seconds",
            "Request duration from first byte in to last byte out",
            labels,
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self._ttft = Histogram(
            PREFIX + "time_to_first_token_seconds",
            "Time from request start to the first content byte from the upstream",
            labels,
            buckets=TTFT_BUCKETS,
            registry=r,
        )
        self._tokens = Counter(PREFIX + "tokens", "Tokens used", ("model", "provider", "type"), registry=r)
        self._decisions = Counter(
            PREFIX + "decisions", "Policy decisions by action, outcome and rule", ("action", "allow", "rule"), registry=r
        )
        self._retries = Counter(PREFIX + "retries", "Upstream retries", ("provider",), registry=r)
        self._fallbacks = Counter(
            PREFIX + "fallbacks", "Fallbacks to another provider", ("from_provider", "to_provider"), registry=r
        )
        self._circuit = Gauge(
            PREFIX + "circuit_state", "Circuit state per upstream: 0 closed, 1 half_open, 2 open", ("upstream",), registry=r
        )
        self._exporter_failures = Counter(
            PREFIX + "exporter_failures", "Failed OTLP export batches", ("signal",), registry=r
        )
        self._instances = Gauge(
            PREFIX + "compute_instances", "Compute instances by provider and state", ("provider", "state"), registry=r
        )
        self._cost = Gauge(
            PREFIX + "compute_cost_per_hour_dollars", "Summed $/h of running instances", ("provider",), registry=r
        )
        self._callbacks = _Callbacks()
        r.register(self._callbacks)
        self._bound: dict[tuple, tuple] = {}
        self._children: dict[tuple, object] = {}  # (family, *labels) -> bound child, bounded like _bound
        self._circuit_last: dict[str, int] = {}

    # -- the request path --------------------------------------------------------------------
    def record_request(
        self, route: str, model: str, provider: str, status: int | str, duration_s: float, ttft_s: float | None = None
    ) -> None:
        if not self.enabled:
            return
        key = (route, model, provider, status)
        bound = self._bound.get(key)
        if bound is None:
            bound = self._bind(key)
        bound[0].observe(duration_s)
        if ttft_s is not None:
            bound[1].observe(ttft_s)

    def _bind(self, key: tuple) -> tuple:
        """The Prometheus children of one label set, made once (bounded: routes, models and
        providers are closed sets; statuses are few)."""
        route, model, provider, status = key
        s = str(status)
        bound = (self._duration.labels(route, model, provider, s), self._ttft.labels(route, model, provider, s))
        if len(self._bound) < BOUND_MAX:
            self._bound[key] = bound
        return bound

    def record_tokens(self, model: str, provider: str, input_tokens: int = 0, output_tokens: int = 0) -> None:
        if not self.enabled:
            return
        if input_tokens:
            self._child(self._tokens, model, provider, "input").inc(input_tokens)
        if output_tokens:
            self._child(self._tokens, model, provider, "output").inc(output_tokens)

    def record_decision(self, action: str, allow: bool, rule: str = "") -> None:
        if not self.enabled:
            return
        self._child(self._decisions, action, "true" if allow else "false", rule).inc()

    def _child(self, family, *labels: str):
        """``family.labels(*labels)``, looked up in a dict after the first time (``labels()``
        validates and locks on every call; the request path calls this a few times per request)."""
        key = (family, *labels)
        child = self._children.get(key)
        if child is None:
            child = family.labels(*labels)
            if len(self._children) < BOUND_MAX:
                self._children[key] = child
        return child

    def record_retry(self, provider: str) -> None:
        if not self.enabled:
            return
        self._retries.labels(provider).inc()

    def record_fallback(self, from_provider: str, to_provider: str) -> None:
        if not self.enabled:
            return
        self._fallbacks.labels(from_provider, to_provider).inc()

    def record_exporter_failure(self, signal: str) -> None:
        """Called from the export threads by the counting exporters."""
        self._exporter_failures.labels(signal).inc()

    def set_circuit(self, upstream: str, state: str | int) -> None:
        if not self.enabled:
            return
        value = CIRCUIT_STATES.get(state) if isinstance(state, str) else int(state)
        if value is None:
            raise ValueError(f"unknown circuit state {state!r}; expected one of closed, half_open, open")
        if self._circuit_last.get(upstream) == value:
            return  # called after every attempt; the state rarely changes
        self._circuit_last[upstream] = value
        self._circuit.labels(upstream).set(value)

    def set_instances(self, provider: str, state: str, n: int) -> None:
        if not self.enabled:
            return
        self._instances.labels(provider, state).set(n)

    def set_cost(self, provider: str, dollars_per_hour: float) -> None:
        if not self.enabled:
            return
        self._cost.labels(provider).set(dollars_per_hour)

    def observe(self, name: str, fn: Callable[[], float], *, kind: str = "gauge", description: str = "") -> None:
        """Register a callback read at scrape/export time, e.g. ``observe("ledger_queue_depth",
        ledger.queue_depth)`` or ``observe("ledger_drops", lambda: ledger.drops, kind="counter")``."""
        if kind not in ("gauge", "counter"):
            raise ValueError(f"observe kind must be 'gauge' or 'counter', got {kind!r}")
        if not _NAME.match(name) or name.endswith("_total"):
            raise ValueError(f"metric name {name!r} must match [a-z_][a-z0-9_]* and not end in _total")
        full = PREFIX + name
        if full in self._callbacks.entries or full in self.registry._names_to_collectors:
            raise ValueError(f"metric {full!r} is already registered")
        doc = description or name.replace("_", " ")
        self._callbacks.entries[full] = (kind, doc, fn)

"""OTLP metrics pushed from the Prometheus registry: one set of instruments, two ways out.

The request path records each measurement once, into the prometheus_client registry behind
``GET /metrics``. Every ``OTEL_METRIC_EXPORT_INTERVAL`` a daemon thread reads that registry and
pushes it through the configured OTLP exporter as cumulative data: counters as monotonic sums
(named without ``_total``), gauges as gauges, histograms as explicit-bucket histograms with the
same bounds. Recording into a second (OpenTelemetry SDK) instrument set on every request cost
more CPU per request than the Prometheus one (``bench/bench_inference.py``); reading the registry
once a minute costs nothing on the request path.

Histograms carry no min/max (Prometheus does not keep them; both fields are optional in OTLP).
A series' start time is its ``_created`` sample when prometheus_client provides one, else the
moment this pusher was made.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable

from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    Gauge,
    Histogram,
    HistogramDataPoint,
    Metric,
    MetricExporter,
    MetricsData,
    NumberDataPoint,
    ResourceMetrics,
    ScopeMetrics,
    Sum,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from prometheus_client import CollectorRegistry

log = logging.getLogger(__name__)

_UNITS = (("_seconds", "s"), ("_dollars", "USD/h"), ("tokens", "{token}"))
_CUMULATIVE = AggregationTemporality.CUMULATIVE


def _unit(name: str) -> str:
    for suffix, unit in _UNITS:
        if name.endswith(suffix):
            return unit
    return ""


def _key(labels: dict[str, str], drop: str | None = None) -> tuple:
    return tuple(sorted((k, v) for k, v in labels.items() if k != drop))


class _Family:
    """The series of one Prometheus family, grouped by label set."""

    def __init__(self, family) -> None:
        self.family = family
        self.created: dict[tuple, float] = {}
        for s in family.samples:
            if s.name.endswith("_created"):
                self.created[_key(s.labels)] = s.value

    def start(self, key: tuple, default_ns: int) -> int:
        created = self.created.get(key)
        return int(created * 1e9) if created is not None else default_ns


def _numbers(fam: _Family, suffix: str, start_ns: int, now_ns: int) -> list[NumberDataPoint]:
    points = []
    for s in fam.family.samples:
        if s.name == fam.family.name + suffix:
            key = _key(s.labels)
            points.append(NumberDataPoint(dict(key), fam.start(key, start_ns), now_ns, s.value))
    return points


def _histogram_points(fam: _Family, start_ns: int, now_ns: int) -> list[HistogramDataPoint]:
    name = fam.family.name
    buckets: dict[tuple, list[tuple[float, float]]] = {}
    counts: dict[tuple, float] = {}
    sums: dict[tuple, float] = {}
    for s in fam.family.samples:
        if s.name == name + "_bucket":
            buckets.setdefault(_key(s.labels, "le"), []).append((float(s.labels["le"]), s.value))
        elif s.name == name + "_count":
            counts[_key(s.labels)] = s.value
        elif s.name == name + "_sum":
            sums[_key(s.labels)] = s.value
    points = []
    for key, cumulative in buckets.items():
        cumulative.sort()
        bounds = [le for le, _ in cumulative if le != float("inf")]
        per_bucket, below = [], 0.0
        for _, c in cumulative:  # Prometheus buckets are cumulative, OTLP ones are not
            per_bucket.append(int(c - below))
            below = c
        points.append(
            HistogramDataPoint(
                attributes=dict(key),
                start_time_unix_nano=fam.start(key, start_ns),
                time_unix_nano=now_ns,
                count=int(counts.get(key, below)),
                sum=sums.get(key, 0.0),
                bucket_counts=per_bucket,
                explicit_bounds=bounds,
                min=None,
                max=None,
            )
        )
    return points


def registry_metrics(families: Iterable, start_ns: int, now_ns: int) -> list[Metric]:
    """The OTLP form of collected Prometheus families; families without samples are left out."""
    metrics = []
    for family in families:
        fam = _Family(family)
        data: Sum | Gauge | Histogram | None = None
        if family.type == "counter":
            points = _numbers(fam, "_total", start_ns, now_ns)
            data = Sum(points, _CUMULATIVE, is_monotonic=True) if points else None
        elif family.type == "gauge":
            points = _numbers(fam, "", start_ns, now_ns)
            data = Gauge(points) if points else None
        elif family.type == "histogram":
            points = _histogram_points(fam, start_ns, now_ns)
            data = Histogram(points, _CUMULATIVE) if points else None
        if data is not None:
            metrics.append(Metric(family.name, family.documentation, _unit(family.name), data))
    return metrics


class MetricPush:
    """A daemon thread pushing ``registry`` through ``exporter`` every ``interval_s``, and once
    more at ``shutdown()`` so the last interval is not lost."""

    def __init__(
        self,
        registry: CollectorRegistry,
        exporter: MetricExporter,
        resource: Resource,
        *,
        interval_s: float,
        timeout_s: float,
        scope_name: str = "canonic-gateway",
    ) -> None:
        self._registry = registry
        self._exporter = exporter
        self._resource = resource
        self._scope = InstrumentationScope(scope_name)
        self._interval_s = interval_s
        self._timeout_s = timeout_s
        self._start_ns = time.time_ns()
        self._stop = threading.Event()
        self._lock = threading.Lock()  # one export at a time (the thread and shutdown)
        self._thread = threading.Thread(target=self._run, name="canonic-otlp-metrics", daemon=True)
        self._thread.start()

    def collect(self) -> MetricsData:
        metrics = registry_metrics(self._registry.collect(), self._start_ns, time.time_ns())
        scope = ScopeMetrics(scope=self._scope, metrics=metrics, schema_url="")
        return MetricsData(resource_metrics=[ResourceMetrics(self._resource, [scope], schema_url="")])

    def export_once(self) -> None:
        with self._lock:
            try:
                data = self.collect()
            except Exception as exc:  # a collector bug must not kill the export thread
                log.warning("otlp metrics: collecting the registry failed: %s", type(exc).__name__)
                return
            if data.resource_metrics[0].scope_metrics[0].metrics:
                self._exporter.export(data, timeout_millis=self._timeout_s * 1000)

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            self.export_once()

    def shutdown(self) -> None:
        """Stop the thread, push what was recorded since the last push, close the exporter."""
        if self._stop.is_set():
            return
        self._stop.set()
        self._thread.join(self._timeout_s)
        self.export_once()
        try:
            self._exporter.shutdown(timeout_millis=self._timeout_s * 1000)
        except Exception as exc:
            log.warning("otlp metrics shutdown: %s", type(exc).__name__)

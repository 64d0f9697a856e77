"""The OTLP metrics push reads the same Prometheus registry that GET /metrics serves: the numbers
a collector receives are the numbers a scrape shows, in OTLP's shape (per-bucket histogram counts,
counters as cumulative monotonic sums named without ``_total``), and the last interval is pushed
at shutdown."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from gateway.telemetry_metrics import DURATION_BUCKETS
from gateway.telemetry_push import registry_metrics

from .conftest import FAST, running_gateway
from .helpers import sample, scrape

ROUTE = "/healthz"


def _latest(receiver, name: str, **attrs):
    points = [p for p in receiver.metric_points(name) if all(p.attributes.get(k) == v for k, v in attrs.items())]
    return points[-1] if points else None


def test_pushed_histogram_and_counters_equal_the_scrape(tmp_path, receiver, client):
    # a long interval: the only push is the one at shutdown, after the scrape below
    env = {**FAST, "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint, "OTEL_TRACES_EXPORTER": "none",
           "OTEL_METRIC_EXPORT_INTERVAL": "600000"}
    with running_gateway(tmp_path, env) as (base, app):
        for _ in range(5):
            assert client.get(base + ROUTE).status_code == 200
        app.state.telemetry.metrics.record_decision("chat", True, "VASTAI.md:L12")
        app.state.telemetry.metrics.record_decision("chat", True, "VASTAI.md:L12")
        app.state.telemetry.metrics.set_circuit("vastai/i-1", "open")
        text = scrape(client, base)
        assert not receiver.metric_points("canonic_request_duration_seconds")  # nothing pushed yet
    # the scrape request itself finished after the scrape's text was made: compare /healthz only
    hist = _latest(receiver, "canonic_request_duration_seconds", route=ROUTE, status="200")
    assert hist is not None, "shutdown did not push the last interval"
    assert hist.kind == "histogram" and hist.temporality == "CUMULATIVE" and hist.unit == "s"
    assert hist.value == sample(text, "canonic_request_duration_seconds_count", route=ROUTE, status="200") == 5
    assert abs(hist.sum - sample(text, "canonic_request_duration_seconds_sum", route=ROUTE, status="200")) < 1e-9
    assert hist.explicit_bounds == list(DURATION_BUCKETS)
    assert len(hist.bucket_counts) == len(DURATION_BUCKETS) + 1 and sum(hist.bucket_counts) == 5
    cumulative = 0
    for bound, count in zip(DURATION_BUCKETS, hist.bucket_counts, strict=False):
        cumulative += count
        le = str(bound)
        assert cumulative == sample(text, "canonic_request_duration_seconds_bucket", route=ROUTE, status="200", le=le)
    assert 0 < hist.start_ns <= hist.time_ns

    decisions = _latest(receiver, "canonic_decisions", rule="VASTAI.md:L12")
    assert decisions.kind == "sum" and decisions.monotonic is True and decisions.temporality == "CUMULATIVE"
    assert decisions.value == 2 and decisions.attributes == {"action": "chat", "allow": "true", "rule": "VASTAI.md:L12"}
    assert not receiver.metric_points("canonic_decisions_total")
    circuit = _latest(receiver, "canonic_circuit_state", upstream="vastai/i-1")
    assert circuit.kind == "gauge" and circuit.value == 2
    drops = _latest(receiver, "canonic_ledger_drops")  # a counter from a registered callback
    assert drops.kind == "sum" and drops.monotonic is True and drops.value == 0 and drops.attributes == {}
    assert _latest(receiver, "canonic_ledger_queue_depth").kind == "gauge"


def test_pushes_repeat_every_interval_and_stay_cumulative(tmp_path, receiver, client):
    env = {**FAST, "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint, "OTEL_TRACES_EXPORTER": "none"}
    with running_gateway(tmp_path, env) as (base, _app):
        client.get(base + ROUTE)

        def count_at_least(n):
            def check(rc):
                p = _latest(rc, "canonic_request_duration_seconds", route=ROUTE)
                return p if p is not None and p.value >= n else None
            return check

        first = receiver.wait_for(count_at_least(1))
        client.get(base + ROUTE)
        second = receiver.wait_for(count_at_least(2))
    assert second.start_ns == first.start_ns and second.time_ns > first.time_ns
    assert len([r for r in receiver.requests if r["path"] == "/v1/metrics"]) >= 2


def test_registry_conversion_buckets_are_per_bucket_and_empty_families_are_left_out():
    registry = CollectorRegistry()
    h = Histogram("x_seconds", "x", ("k",), buckets=(0.01, 0.1, 1.0), registry=registry)
    for value in (0.005, 0.05, 0.07, 5.0):
        h.labels("a").observe(value)
    Counter("y", "y", registry=registry).inc(3)
    Gauge("z", "z", ("k",), registry=registry)  # labelled, no child: no series, no metric
    metrics = {m.name: m for m in registry_metrics(registry.collect(), start_ns=1, now_ns=2)}
    assert set(metrics) == {"x_seconds", "y"}
    (point,) = metrics["x_seconds"].data.data_points
    assert list(point.bucket_counts) == [1, 2, 0, 1] and list(point.explicit_bounds) == [0.01, 0.1, 1.0]
    assert point.count == 4 and abs(point.sum - 5.125) < 1e-9 and point.attributes == {"k": "a"}
    assert point.min is None and point.max is None
    (total,) = metrics["y"].data.data_points
    assert total.value == 3 and metrics["y"].data.is_monotonic
    assert total.start_time_unix_nano > 2  # the counter's own _created time, not the fallback

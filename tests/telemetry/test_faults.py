"""A failing collector is counted and never hurts serving; disabled telemetry exports nothing;
a missing endpoint is not an error; bad OTEL_* values are refused with the variable's name."""

from __future__ import annotations

import time

import pytest

from gateway.telemetry_config import TelemetryConfigError, load_config

from .conftest import FAST, running_gateway
from .helpers import sample, scrape

ALWAYS = {"OTEL_TRACES_SAMPLER": "always_on", "OTEL_METRICS_EXPORTER": "none"}


def _failures(client, base) -> float:
    return sample(scrape(client, base), "canonic_exporter_failures_total", signal="traces")


def _wait_failures(client, base, above: float, timeout_s: float = 8.0) -> float:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert client.get(base + "/healthz").status_code == 200  # keeps serving throughout
        n = _failures(client, base)
        if n > above:
            return n
        time.sleep(0.05)
    raise AssertionError("exporter failures were not counted in time")


def test_collector_500_is_counted_and_serving_continues(tmp_path, receiver, client):
    receiver.mode = "500"
    env = {**FAST, **ALWAYS, "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint}
    with running_gateway(tmp_path, env) as (base, _app):
        assert _failures(client, base) == 0
        _wait_failures(client, base, 0)
        # recovery: the collector heals and spans flow again
        receiver.mode = "ok"
        client.get(base + "/healthz")
        receiver.wait_for(lambda rc: rc.spans_named("GET /healthz"), timeout_s=5)
    assert any(r["status"] == 500 for r in receiver.requests)


def test_refused_collector_is_counted_then_recovers(tmp_path, receiver, client):
    env = {**FAST, **ALWAYS, "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint}
    with running_gateway(tmp_path, env) as (base, _app):
        client.get(base + "/healthz")
        receiver.wait_for(lambda rc: rc.spans)
        receiver.refuse()
        n = _wait_failures(client, base, 0)
        receiver.accept()
        receiver.clear()
        client.get(base + "/healthz")
        receiver.wait_for(lambda rc: rc.spans_named("GET /healthz"), timeout_s=5)
        assert _failures(client, base) >= n


def test_slow_collector_does_not_slow_requests(tmp_path, receiver, client):
    receiver.mode, receiver.slow_s = "slow", 1.5  # longer than the 500 ms export timeout
    env = {**FAST, **ALWAYS, "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint}
    with running_gateway(tmp_path, env) as (base, _app):
        worst = 0.0
        deadline = time.monotonic() + 8
        while _failures(client, base) == 0 and time.monotonic() < deadline:
            t0 = time.perf_counter()
            assert client.get(base + "/healthz").status_code == 200
            worst = max(worst, time.perf_counter() - t0)
            time.sleep(0.02)
        assert _failures(client, base) > 0
        receiver.mode = "ok"
    assert worst < 0.5, f"a request took {worst:.3f}s while the collector hung"


def test_shutdown_gives_up_flushing_to_a_hung_collector_in_time(tmp_path, receiver, client, caplog):
    receiver.mode, receiver.slow_s = "slow", 20.0
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint, "OTEL_TRACES_SAMPLER": "always_on",
           "OTEL_EXPORTER_OTLP_TIMEOUT": "30000", "OTEL_METRIC_EXPORT_INTERVAL": "600000"}
    with running_gateway(tmp_path, env, telemetry_flush_timeout_s=1.0) as (base, _app):
        assert client.get(base + "/healthz").status_code == 200
        started = time.monotonic()
    took = time.monotonic() - started
    receiver.mode = "ok"
    assert took < 5, f"shutdown took {took:.1f}s with a 1 s flush limit"
    assert "gave up flushing" in caplog.text and receiver.endpoint.split("//")[1] in caplog.text


def test_disabled_telemetry_exports_nothing(tmp_path, receiver, client):
    env = {**FAST, "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint, "OTEL_TRACES_SAMPLER": "always_on"}
    with running_gateway(tmp_path, env, telemetry_enabled=False) as (base, app):
        assert not app.state.telemetry.tracing
        for _ in range(3):
            assert client.get(base + "/healthz").status_code == 200
        text = scrape(client, base)
    # the lifespan's shutdown has flushed by now: still nothing arrived
    assert receiver.requests == []
    assert sample(text, "canonic_request_duration_seconds_count") == 0


def test_no_endpoint_means_no_export_not_an_error(tmp_path, receiver, client):
    with running_gateway(tmp_path, {"OTEL_TRACES_SAMPLER": "always_on"}) as (base, app):
        cfg = app.state.telemetry.config
        assert cfg.traces is None and cfg.metrics is None
        assert client.get(base + "/healthz").status_code == 200
    assert receiver.requests == []


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"OTEL_EXPORTER_OTLP_PROTOCOL": "http/json", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://x"}, "OTEL_EXPORTER_OTLP_PROTOCOL"),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "localhost:4318"}, "OTEL_EXPORTER_OTLP_ENDPOINT"),
        ({"OTEL_TRACES_SAMPLER": "sometimes"}, "OTEL_TRACES_SAMPLER"),
        ({"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "2"}, "OTEL_TRACES_SAMPLER_ARG"),
        ({"OTEL_METRIC_EXPORT_INTERVAL": "soon"}, "OTEL_METRIC_EXPORT_INTERVAL"),
        ({"OTEL_TRACES_EXPORTER": "zipkin"}, "OTEL_TRACES_EXPORTER"),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://x", "OTEL_EXPORTER_OTLP_COMPRESSION": "br"}, "COMPRESSION"),
    ],
)
def test_bad_otel_values_name_the_variable(env, needle):
    with pytest.raises(TelemetryConfigError, match=needle):
        load_config(env)


def test_bad_header_entry_never_echoes_the_value():
    with pytest.raises(TelemetryConfigError) as info:
        load_config({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://x", "OTEL_EXPORTER_OTLP_HEADERS": "ok=1,tokensupersecret"})
    assert "entry 2" in str(info.value) and "supersecret" not in str(info.value)


def test_endpoint_resolution_and_sampler_defaults():
    cfg = load_config({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318/"})
    assert cfg.traces.endpoint == "http://127.0.0.1:4318/v1/traces"
    assert cfg.metrics.endpoint == "http://127.0.0.1:4318/v1/metrics"
    assert (cfg.sampler_name, cfg.sampler_arg) == ("parentbased_traceidratio", 0.01)
    grpc = load_config({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4317", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"})
    assert grpc.traces.endpoint == "http://127.0.0.1:4317" and grpc.traces.protocol == "grpc"
    assert load_config({"OTEL_EXPORTER_OTLP_TIMEOUT": "250", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://x"}).traces.timeout_s == 0.25


def test_http_protobuf_export_does_not_load_grpc():
    """grpc costs about 9 MB of RSS; a gateway exporting over HTTP must not import it."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from gateway.telemetry_config import load_config, span_exporter, metric_exporter\n"
        "cfg = load_config({'OTEL_EXPORTER_OTLP_ENDPOINT': 'http://127.0.0.1:4318'})\n"
        "span_exporter(cfg.traces); metric_exporter(cfg.metrics)\n"
        "print('grpc' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "False", out.stderr

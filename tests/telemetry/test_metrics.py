"""GET /metrics parsed with prometheus_client's parser: counters move as requests are made; the
same instruments reach the OTLP receiver as metrics."""

from __future__ import annotations

from fastapi import Request

from .conftest import FAST, running_gateway
from .helpers import sample, scrape


def test_request_counters_move_with_requests(tmp_path, client):
    with running_gateway(tmp_path, {}) as (base, _app):  # no OTLP endpoint: Prometheus only
        before = scrape(client, base)
        for _ in range(3):
            assert client.get(base + "/healthz").status_code == 200
        client.get(base + "/nowhere")
        after = scrape(client, base)
    count = "canonic_request_duration_seconds_count"
    assert sample(after, count, route="/healthz", status="200") - sample(before, count, route="/healthz", status="200") == 3
    assert sample(after, count, route="(unmatched)", status="404") == 1
    # the first scrape itself was counted by the time of the second
    assert sample(after, count, route="/metrics", status="200") >= 1
    assert sample(after, "canonic_request_duration_seconds_sum", route="/healthz") > 0


def test_explicit_recorders_and_callbacks_show_on_metrics(tmp_path, client):
    depth = {"n": 7}

    async def work(request: Request):
        tel = request.app.state.telemetry
        tel.annotate(request, model="tiny", provider="local", ttft_s=0.05)
        m = tel.metrics
        m.record_tokens("tiny", "local", input_tokens=12, output_tokens=5)
        m.record_decision("inference", True, "VASTAI.md:12")
        m.record_decision("inference", False, "VASTAI.md:30")
        m.record_retry("local")
        m.record_fallback("local", "vast")
        m.set_circuit("local-1", "open")
        m.set_instances("vast", "running", 2)
        m.set_cost("vast", 0.84)
        return {"ok": True}

    with running_gateway(tmp_path, {}) as (base, app):
        app.state.telemetry.metrics.observe("work_queue_depth", lambda: depth["n"])
        app.state.telemetry.metrics.observe("work_drops", lambda: 4, kind="counter")
        app.add_api_route("/work", work)
        for _ in range(2):
            assert client.get(base + "/work").status_code == 200
        depth["n"] = 9
        text = scrape(client, base)
    assert sample(text, "canonic_request_duration_seconds_count", route="/work", model="tiny", provider="local") == 2
    assert sample(text, "canonic_time_to_first_token_seconds_count", route="/work", model="tiny") == 2
    assert sample(text, "canonic_tokens_total", model="tiny", type="input") == 24
    assert sample(text, "canonic_tokens_total", model="tiny", type="output") == 10
    assert sample(text, "canonic_decisions_total", allow="true", rule="VASTAI.md:12") == 2
    assert sample(text, "canonic_decisions_total", allow="false", rule="VASTAI.md:30") == 2
    assert sample(text, "canonic_retries_total", provider="local") == 2
    assert sample(text, "canonic_fallbacks_total", from_provider="local", to_provider="vast") == 2
    assert sample(text, "canonic_circuit_state", upstream="local-1") == 2
    assert sample(text, "canonic_compute_instances", provider="vast", state="running") == 2
    assert sample(text, "canonic_compute_cost_per_hour_dollars", provider="vast") == 0.84
    assert sample(text, "canonic_work_queue_depth") == 9
    assert sample(text, "canonic_work_drops_total") == 4


def test_the_gateway_exports_its_ledger_state(tmp_path, client):
    """Registered by the gateway's own lifespan (nothing registered by the test): records written
    move with a governed request; queue depth, availability, drops, failures and incidents show."""
    from .conftest import REPO

    files = {name: (REPO / name).read_text() for name in ("CANON.md", "VASTAI.md")}
    with running_gateway(tmp_path, {}) as (base, _app):
        before = scrape(client, base)
        assert client.post(base + "/validate", json={"files": files}).status_code == 200
        after = scrape(client, base)
    for name in ("canonic_ledger_queue_depth", "canonic_ledger_drops_total", "canonic_ledger_write_failures_total",
                 "canonic_ledger_incidents_total"):
        assert f"\n{name} " in after, name
        assert sample(after, name) == 0
    assert sample(after, "canonic_ledger_available") == 1
    written = "canonic_ledger_records_written_total"
    assert sample(after, written) - sample(before, written) == 1  # /validate is a durable decision


def test_bad_metric_input_is_refused_clearly(tmp_path):
    with running_gateway(tmp_path, {}) as (_base, app):
        m = app.state.telemetry.metrics
        for call, needle in (
            (lambda: m.set_circuit("u", "ajar"), "unknown circuit state"),
            (lambda: m.observe("Bad-Name", lambda: 1), "must match"),
            (lambda: m.observe("x", lambda: 1, kind="summary"), "kind"),
        ):
            try:
                call()
            except ValueError as exc:
                assert needle in str(exc)
            else:
                raise AssertionError(f"expected ValueError containing {needle!r}")
        m.observe("dup", lambda: 1)
        try:
            m.observe("dup", lambda: 2)
        except ValueError as exc:
            assert "already registered" in str(exc)
        else:
            raise AssertionError("duplicate observe accepted")


def test_metrics_are_pushed_over_otlp(tmp_path, receiver, client):
    env = {**FAST, "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint, "OTEL_TRACES_EXPORTER": "none"}
    with running_gateway(tmp_path, env) as (base, app):
        app.state.telemetry.metrics.set_circuit("local-1", "half_open")
        for _ in range(2):
            client.get(base + "/healthz")

        def healthz_points(rc):
            pts = [
                p
                for p in rc.metric_points("canonic_request_duration_seconds")
                if p.attributes.get("route") == "/healthz"
            ]
            return pts if pts and pts[-1].value >= 2 else None

        points = receiver.wait_for(healthz_points)
        receiver.wait_for(lambda rc: rc.metric_points("canonic_ledger_queue_depth"))
    assert points[-1].kind == "histogram"
    assert points[-1].attributes["status"] == "200"
    circuit = receiver.metric_points("canonic_circuit_state")
    assert circuit and circuit[-1].value == 1 and circuit[-1].attributes == {"upstream": "local-1"}
    assert receiver.metric_points("canonic_ledger_queue_depth")[-1].value == 0  # the gateway's own callback
    assert not [r for r in receiver.requests if r["path"] == "/v1/traces"]

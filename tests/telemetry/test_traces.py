"""SERVER spans per request, W3C parent/child links, child spans and propagation, exported over
OTLP/HTTP to the loopback receiver and decoded from protobuf."""

from __future__ import annotations

from fastapi import Request
from opentelemetry.trace import SpanKind

from gateway.telemetry import GEN_AI_OPERATION_NAME, GEN_AI_REQUEST_MODEL, SERVER_ADDRESS

from .conftest import FAST, running_gateway
from .helpers import traceparent


def test_incoming_traceparent_makes_our_server_span_its_child(tmp_path, receiver, client):
    # Default sampler (parent-based ratio): a sampled incoming traceparent is always honoured.
    env = {**FAST, "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint, "OTEL_SERVICE_NAME": "gw-under-test"}
    header, trace_id, parent_id = traceparent()
    with running_gateway(tmp_path, env) as (base, _app):
        r = client.get(base + "/healthz", headers={"traceparent": header})
        assert r.status_code == 200
        spans = receiver.wait_for(lambda rc: [s for s in rc.spans if s.trace_id == trace_id])
    (span,) = spans  # only ours: the caller's span is theirs to end and export
    assert span.parent_span_id == parent_id
    assert span.span_id != parent_id
    assert span.kind == "SERVER"
    assert span.name == "GET /healthz"
    assert span.attributes["http.request.method"] == "GET"
    assert span.attributes["http.route"] == "/healthz"
    assert span.attributes["url.path"] == "/healthz"
    assert span.attributes["http.response.status_code"] == 200
    assert "error.type" not in span.attributes
    assert span.resource["service.name"] == "gw-under-test"


def test_unsampled_traceparent_is_honoured_too(tmp_path, receiver, client):
    env = {**FAST, "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint}
    header, trace_id, _ = traceparent(sampled=False)
    sampled_header, sampled_trace, _ = traceparent(sampled=True)
    with running_gateway(tmp_path, env) as (base, _app):
        client.get(base + "/healthz", headers={"traceparent": header})
        client.get(base + "/healthz", headers={"traceparent": sampled_header})
        receiver.wait_for(lambda rc: any(s.trace_id == sampled_trace for s in rc.spans))
    assert not [s for s in receiver.spans if s.trace_id == trace_id]


def test_healthz_metrics_and_unmatched_spans(tmp_path, receiver, client):
    env = {**FAST, "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint, "OTEL_TRACES_SAMPLER": "always_on"}
    with running_gateway(tmp_path, env) as (base, _app):
        assert client.get(base + "/metrics").status_code == 200
        assert client.get(base + "/healthz").status_code == 200
        assert client.get(base + "/no/such/path").status_code == 404
        receiver.wait_for(lambda rc: len({s.attributes.get("url.path") for s in rc.spans}) >= 3)
    by_path = {s.attributes["url.path"]: s for s in receiver.spans}
    m = by_path["/metrics"]
    assert (m.name, m.kind, m.attributes["http.route"], m.attributes["http.response.status_code"]) == (
        "GET /metrics",
        "SERVER",
        "/metrics",
        200,
    )
    assert m.parent_span_id == ""  # no traceparent: a root span
    miss = by_path["/no/such/path"]
    assert miss.name == "GET"  # low-cardinality name: no route matched
    assert "http.route" not in miss.attributes
    assert miss.attributes["http.response.status_code"] == 404
    assert miss.status != "ERROR"  # 4xx is not a server error


def test_child_spans_and_inject_propagate_the_client_span(tmp_path, receiver, client):
    env = {**FAST, "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint, "OTEL_TRACES_SAMPLER": "always_on"}
    seen: dict = {}

    async def probe(request: Request):
        tel = request.app.state.telemetry
        with tel.span("policy.decide", {"canonic.decision.allow": True}):
            pass
        with tel.span("chat tiny", {GEN_AI_OPERATION_NAME: "chat", GEN_AI_REQUEST_MODEL: "tiny"}, kind=SpanKind.CLIENT) as s:
            s.set_attribute(SERVER_ADDRESS, "127.0.0.1")
            seen["headers"] = tel.inject({})
            seen["trace_id"] = tel.trace_id()
        try:
            with tel.span("boom"):
                raise ValueError("x")
        except ValueError:
            pass
        return {"ok": True}

    header, trace_id, parent_id = traceparent()
    with running_gateway(tmp_path, env) as (base, app):
        app.add_api_route("/probe", probe)
        assert client.get(base + "/probe", headers={"traceparent": header}).status_code == 200
        receiver.wait_for(lambda rc: len([s for s in rc.spans if s.trace_id == trace_id]) >= 4)
    spans = {s.name: s for s in receiver.spans if s.trace_id == trace_id}
    server = spans["GET /probe"]
    assert server.parent_span_id == parent_id
    for name in ("policy.decide", "chat tiny", "boom"):
        assert spans[name].parent_span_id == server.span_id, name
    chat = spans["chat tiny"]
    assert chat.kind == "CLIENT"
    assert chat.attributes[GEN_AI_REQUEST_MODEL] == "tiny"
    assert chat.attributes[SERVER_ADDRESS] == "127.0.0.1"
    # what an upstream would receive: the CLIENT span as its parent, same trace
    assert seen["headers"]["traceparent"] == f"00-{trace_id}-{chat.span_id}-01"
    assert seen["trace_id"] == trace_id
    assert spans["boom"].status == "ERROR"
    assert spans["boom"].attributes["error.type"] == "ValueError"
    assert "exception" in spans["boom"].events


def test_headers_and_gzip_reach_the_collector(tmp_path, receiver, client):
    env = {
        **FAST,
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
        "OTEL_TRACES_SAMPLER": "always_on",
        "OTEL_EXPORTER_OTLP_HEADERS": "authorization=Bearer%20s3cret,x-tenant=canonic",
        "OTEL_EXPORTER_OTLP_COMPRESSION": "gzip",
    }
    with running_gateway(tmp_path, env) as (base, app):
        assert "s3cret" not in repr(app.state.telemetry.config)
        client.get(base + "/healthz")
        receiver.wait_for(lambda rc: rc.spans_named("GET /healthz"))
    trace_posts = [r for r in receiver.requests if r["path"] == "/v1/traces"]
    assert trace_posts[0]["headers"]["authorization"] == "Bearer s3cret"
    assert trace_posts[0]["headers"]["x-tenant"] == "canonic"
    assert trace_posts[0]["headers"]["content-encoding"] == "gzip"


def test_signal_specific_endpoint_wins(tmp_path, receiver, client):
    env = {
        **FAST,
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9",  # discard port: nothing listens
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": receiver.endpoint + "/v1/traces",
        "OTEL_TRACES_SAMPLER": "always_on",
        "OTEL_METRICS_EXPORTER": "none",
    }
    with running_gateway(tmp_path, env) as (base, _app):
        client.get(base + "/healthz")
        receiver.wait_for(lambda rc: rc.spans_named("GET /healthz"))


def test_grpc_protocol_exports_spans_and_metrics(tmp_path, client):
    from tests.fakes.otlp_receiver import OtlpGrpcReceiver

    with OtlpGrpcReceiver() as grpc_receiver:
        env = {
            **FAST,
            "OTEL_EXPORTER_OTLP_ENDPOINT": grpc_receiver.endpoint,
            "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
            "OTEL_EXPORTER_OTLP_HEADERS": "x-tenant=canonic",
            "OTEL_TRACES_SAMPLER": "always_on",
        }
        header, trace_id, parent_id = traceparent()
        with running_gateway(tmp_path, env) as (base, _app):
            client.get(base + "/healthz", headers={"traceparent": header})
            (span,) = grpc_receiver.wait_for(lambda rc: [s for s in rc.spans if s.trace_id == trace_id])
            grpc_receiver.wait_for(lambda rc: rc.metric_points("canonic_request_duration_seconds"))
    assert span.parent_span_id == parent_id and span.name == "GET /healthz"
    assert grpc_receiver.requests[0]["headers"]["x-tenant"] == "canonic"


def test_validate_has_a_governance_span_with_score_and_counts(tmp_path, receiver, client):
    from .conftest import REPO

    env = {**FAST, "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint, "OTEL_TRACES_SAMPLER": "always_on"}
    files = {name: (REPO / name).read_text() for name in ("CANON.md", "VASTAI.md")}
    header, trace_id, parent_id = traceparent()
    with running_gateway(tmp_path, env) as (base, _app):
        r = client.post(base + "/validate", json={"files": files}, headers={"traceparent": header})
        assert r.status_code == 200, r.text
        report = r.json()
        receiver.wait_for(lambda rc: len([s for s in rc.spans if s.trace_id == trace_id]) >= 3)
    spans = {s.name: s for s in receiver.spans if s.trace_id == trace_id}
    server, gov = spans["POST /validate"], spans["governance.validate"]
    assert server.parent_span_id == parent_id and gov.parent_span_id == server.span_id
    decide = spans["policy.decide"]  # /validate is a governed decision too
    assert decide.parent_span_id == server.span_id
    assert decide.attributes["canonic.decision.id"] == r.headers["x-canonic-decision-id"]
    assert decide.attributes["canonic.decision.allow"] is True
    assert decide.attributes["canonic.policy.revision"]
    assert gov.attributes["canonic.validate.score"] == report["score"]
    assert gov.attributes["canonic.validate.valid"] == report["valid"]
    errors = sum(1 for f in report["findings"] if f["severity"] == "error")
    assert gov.attributes["canonic.validate.errors"] == errors
    assert gov.attributes["canonic.validate.files"] >= 2

"""Traces of the inference path (issue 4 acceptance): the gateway under uvicorn in front of loopback
fake vLLM servers, exporting OTLP/HTTP to the loopback receiver with every span sampled. The span
tree, attributes and parent/child links are asserted from the decoded protobuf payloads."""

from __future__ import annotations

import openai
import pytest

from gateway.auth import mint_token
from tests.inference.conftest import SECRET, _fakes, backup, base_env, primary  # noqa: F401 - fixtures

from .conftest import FAST, running_gateway
from .helpers import sample, scrape, traceparent

MESSAGES = [{"role": "user", "content": "say hello"}]


@pytest.fixture
def traced(tmp_path, receiver, primary, backup):  # noqa: F811 - fixtures imported above
    """traced(fallback=False, **env) -> (base_url, openai client); always_on sampling."""
    started = []

    def start(fallback: bool = False, **env: str):
        full = {**FAST, **base_env(primary, backup if fallback else None, **env),
                "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint, "OTEL_TRACES_SAMPLER": "always_on"}
        cm = running_gateway(tmp_path / f"gw{len(started)}", full, GATEWAY_JWT_SECRET=SECRET)
        base, app = cm.__enter__()
        started.append(cm)
        token = mint_token(app.state.settings, "tracer", ["inference"], 600)
        return base, openai.OpenAI(base_url=base + "/v1", api_key=token, max_retries=0, timeout=10.0)

    yield start
    for cm in reversed(started):
        cm.__exit__(None, None, None)


def _trace(receiver, trace_id: str, n: int) -> dict[str, list]:
    spans = receiver.wait_for(lambda rc: (lambda got: got if len(got) >= n else None)(
        [s for s in rc.spans if s.trace_id == trace_id]))
    by_name: dict[str, list] = {}
    for s in spans:
        by_name.setdefault(s.name, []).append(s)
    return by_name


def test_streamed_chat_span_tree_and_propagation(traced, receiver, primary):  # noqa: F811
    base, client = traced()
    header, trace_id, caller_span = traceparent()
    stream = client.chat.completions.create(model="fake-model", messages=MESSAGES, stream=True,
                                            extra_headers={"traceparent": header, "x-request-id": "trace-a-1"})
    chunks = list(stream)
    assert any(c.choices and c.choices[0].delta.content for c in chunks)
    by_name = _trace(receiver, trace_id, 4)

    (server,) = by_name["POST /v1/chat/completions"]
    assert server.kind == "SERVER" and server.parent_span_id == caller_span  # child of the caller's span
    assert server.attributes["http.route"] == "/v1/chat/completions"
    assert server.attributes["http.response.status_code"] == 200
    assert server.attributes["canonic.request.id"] == "trace-a-1"  # joins the ledger record and the logs
    (auth,) = by_name["auth"]
    (decide,) = by_name["policy.decide"]
    (upstream,) = by_name["chat fake-model"]
    for child in (auth, decide, upstream):
        assert child.parent_span_id == server.span_id, child.name
    assert auth.attributes["canonic.principal"] == "tracer"
    assert decide.attributes["canonic.decision.allow"] is True
    assert decide.attributes["canonic.policy.revision"]
    assert decide.attributes["canonic.decision.id"]
    assert len(by_name) == 4 and sum(map(len, by_name.values())) == 4  # nothing else in the trace

    a = upstream.attributes
    assert upstream.kind == "CLIENT" and upstream.status != "ERROR"
    assert a["gen_ai.operation.name"] == "chat"
    assert a["gen_ai.request.model"] == "fake-model"
    assert a["gen_ai.response.model"] == "fake-model"
    assert a["gen_ai.provider.name"] == "VASTAI" and a["canonic.upstream.provider"] == "VASTAI"
    assert a["server.address"] == "127.0.0.1" and a["server.port"] == primary.port
    assert a["canonic.upstream.attempt"] == 1 and a["canonic.upstream.circuit_state"] == "closed"
    assert a["gen_ai.usage.input_tokens"] > 0 and a["gen_ai.usage.output_tokens"] > 0
    assert "error.type" not in a
    assert not any("say hello" in str(v) for s in receiver.spans for v in s.attributes.values())  # no prompt

    # The upstream got our CLIENT span as its parent, in the same trace.
    (sent,) = [r for r in primary.requests if r["path"] == "/v1/chat/completions"]
    version, sent_trace, sent_parent, flags = sent["traceparent"].split("-")
    assert (version, sent_trace, sent_parent, flags) == ("00", trace_id, upstream.span_id, "01")
    assert sent["x-request-id"] == "trace-a-1"


def test_non_stream_client_span_has_finish_reasons(traced, receiver):
    base, client = traced()
    header, trace_id, _ = traceparent()
    r = client.chat.completions.create(model="fake-model", messages=MESSAGES, max_tokens=4,
                                       extra_headers={"traceparent": header})
    (upstream,) = _trace(receiver, trace_id, 4)["chat fake-model"]
    assert upstream.attributes["gen_ai.response.finish_reasons"] == [r.choices[0].finish_reason]
    assert upstream.attributes["gen_ai.usage.output_tokens"] == r.usage.completion_tokens
    assert upstream.attributes["gen_ai.request.max_tokens"] == 4


def test_retried_then_fallen_back_call(traced, receiver, primary, backup):  # noqa: F811
    base, client = traced(fallback=True)
    http = client._client  # the SDK's own httpx client, for /metrics
    before = scrape(http, base)
    primary.faults.status = 500
    header, trace_id, _ = traceparent()
    r = client.chat.completions.with_raw_response.create(model="fake-model", messages=MESSAGES,
                                                         extra_headers={"traceparent": header})
    assert r.headers["x-canonic-provider"] == "BACKUP"
    by_name = _trace(receiver, trace_id, 6)
    (server,) = by_name["POST /v1/chat/completions"]
    attempts = sorted(by_name["chat fake-model"] + by_name["chat backup-model"],
                      key=lambda s: s.attributes["canonic.upstream.attempt"])
    assert [s.attributes["canonic.upstream.attempt"] for s in attempts] == [1, 2, 3]
    assert [s.attributes["canonic.upstream.provider"] for s in attempts] == ["VASTAI", "VASTAI", "BACKUP"]
    assert [s.attributes.get("error.type") for s in attempts] == ["http_500", "http_500", None]
    assert [s.status for s in attempts][:2] == ["ERROR", "ERROR"] and attempts[2].status != "ERROR"
    assert all(s.kind == "CLIENT" and s.parent_span_id == server.span_id for s in attempts)
    assert attempts[2].attributes["server.port"] == backup.port
    assert attempts[2].attributes["gen_ai.response.model"] == "backup-model"
    assert "gen_ai.usage.output_tokens" not in attempts[0].attributes
    # each attempt propagated its own CLIENT span
    sent = [q["traceparent"].split("-")[2] for q in primary.requests + backup.requests
            if q["path"] == "/v1/chat/completions"]
    assert sorted(sent) == sorted(s.span_id for s in attempts)

    after = scrape(http, base)
    assert sample(after, "canonic_retries_total", provider="VASTAI") - sample(
        before, "canonic_retries_total", provider="VASTAI") == 1
    fb = {"from_provider": "VASTAI", "to_provider": "BACKUP"}
    assert sample(after, "canonic_fallbacks_total", **fb) - sample(before, "canonic_fallbacks_total", **fb) == 1


def test_denied_call_has_decision_span_and_no_client_span(traced, receiver, primary):  # noqa: F811
    base, client = traced(ALLOWED_MODELS="some-other-model")
    header, trace_id, _ = traceparent()
    with pytest.raises(openai.PermissionDeniedError):
        client.chat.completions.create(model="fake-model", messages=MESSAGES, extra_headers={"traceparent": header})
    by_name = _trace(receiver, trace_id, 3)
    (server,) = by_name["POST /v1/chat/completions"]
    (decide,) = by_name["policy.decide"]
    assert decide.parent_span_id == server.span_id
    assert decide.attributes["canonic.decision.allow"] is False
    rules = decide.attributes["canonic.decision.rule_ids"]
    assert rules and all(":" in rule for rule in rules)  # FILE:LINE
    assert server.attributes["http.response.status_code"] == 403
    assert not [s for s in receiver.spans if s.trace_id == trace_id and s.kind == "CLIENT"]
    assert primary.count() == 0


def test_unsampled_call_propagates_flag_00_and_the_ledger_keeps_its_trace_id(tmp_path, receiver, primary):  # noqa: F811
    """Most requests are not sampled: no span is exported, yet the upstream still gets a
    traceparent in the caller's trace (flags 00, tracestate kept) and the ledger names the trace."""
    import json

    env = {**FAST, **base_env(primary, None), "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint}
    _header, trace_id, caller_span = traceparent(sampled=False)
    with running_gateway(tmp_path, env, GATEWAY_JWT_SECRET=SECRET) as (base, app):
        token = mint_token(app.state.settings, "tracer", ["inference"], 600)
        client = openai.OpenAI(base_url=base + "/v1", api_key=token, max_retries=0, timeout=10.0)
        client.chat.completions.create(model="fake-model", messages=MESSAGES, max_tokens=4,
                                       extra_headers={"traceparent": _header, "tracestate": "vendor=a1,other=b2",
                                                      "x-request-id": "unsampled-1"})
        root_header, root_trace, _ = traceparent(sampled=True)
        client.chat.completions.create(model="fake-model", messages=MESSAGES, max_tokens=4,  # a sampled one
                                       extra_headers={"traceparent": root_header})
        receiver.wait_for(lambda rc: [s for s in rc.spans if s.trace_id == root_trace and s.kind == "CLIENT"])
        ledger_path = app.state.settings.resolve(app.state.settings.ledger_path)
    assert not [s for s in receiver.spans if s.trace_id == trace_id]
    sent = [r for r in primary.requests if r["path"] == "/v1/chat/completions"][0]
    version, sent_trace, sent_parent, flags = sent["traceparent"].split("-")
    assert (version, sent_trace, flags) == ("00", trace_id, "00")
    assert sent_parent not in (caller_span, "0" * 16)  # the gateway's own (unrecorded) span
    assert sent.get("tracestate") == "vendor=a1,other=b2"
    records = [json.loads(line) for line in ledger_path.read_text().splitlines()]
    (mine,) = [r for r in records if r.get("request_id") == "unsampled-1"]
    assert mine["trace_id"] == trace_id

"""Opt-in content capture on the CLIENT attempt span, gen_ai.response.model from the upstream's
answer, and the decision and token counters moved by real requests through the fake vLLM."""

from __future__ import annotations

import json

import openai
import pytest

from gateway.auth import mint_token
from gateway.ledger_verify import read_tail
from tests.inference.conftest import SECRET, _fakes, base_env, primary  # noqa: F401 - fixtures

from .conftest import FAST, running_gateway
from .helpers import sample, scrape, traceparent

PROMPT = "CONTENT-PROBE-7f3a tell me"


def _client(app, base):
    token = mint_token(app.state.settings, "content", ["inference"], 600)
    return openai.OpenAI(base_url=base + "/v1", api_key=token, max_retries=0, timeout=10.0)


def _client_spans(receiver, trace_id: str, n: int = 1) -> list:
    return receiver.wait_for(lambda rc: (lambda got: got if len(got) >= n else None)(
        [s for s in rc.spans if s.trace_id == trace_id and s.kind == "CLIENT"]))


@pytest.mark.parametrize("capture", [True, False])
def test_content_capture_on_the_client_span_only_when_opted_in(tmp_path, receiver, primary, capture):  # noqa: F811
    env = {**FAST, **base_env(primary), "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
           "OTEL_TRACES_SAMPLER": "always_on"}
    with running_gateway(tmp_path, env, GATEWAY_JWT_SECRET=SECRET, telemetry_capture_content=capture) as (base, app):
        client = _client(app, base)
        h1, chat_trace, _ = traceparent()
        r = client.chat.completions.create(model="fake-model", messages=[{"role": "user", "content": PROMPT}],
                                           max_tokens=6, extra_headers={"traceparent": h1})
        h2, text_trace, _ = traceparent()
        c = client.completions.create(model="fake-model", prompt=PROMPT, max_tokens=6,
                                      extra_headers={"traceparent": h2})
        (chat_span,) = _client_spans(receiver, chat_trace)
        (text_span,) = _client_spans(receiver, text_trace)
    if not capture:
        assert not any(PROMPT in str(v) for s in receiver.spans for v in s.attributes.values())
        assert not any(r.choices[0].message.content in str(v) for s in receiver.spans for v in s.attributes.values())
        return
    assert json.loads(chat_span.attributes["gen_ai.input.messages"]) == [{"role": "user", "content": PROMPT}]
    out = json.loads(chat_span.attributes["gen_ai.output.messages"])
    assert out == [{"role": "assistant", "content": r.choices[0].message.content,
                    "finish_reason": r.choices[0].finish_reason}]
    assert json.loads(text_span.attributes["gen_ai.input.messages"]) == [{"role": "user", "content": PROMPT}]
    assert json.loads(text_span.attributes["gen_ai.output.messages"])[0]["content"] == c.choices[0].text
    # only on the CLIENT spans: never on the SERVER, auth or decision spans
    assert not any(PROMPT in str(v) for s in receiver.spans if s.kind != "CLIENT" for v in s.attributes.values())


def test_response_model_and_stream_finish_reasons_come_from_the_answer(tmp_path, receiver, primary):  # noqa: F811
    env = {**FAST, **base_env(primary), "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
           "OTEL_TRACES_SAMPLER": "always_on"}
    with running_gateway(tmp_path, env, GATEWAY_JWT_SECRET=SECRET) as (base, app):
        client = _client(app, base)
        h1, t1, _ = traceparent()
        r = client.chat.completions.create(model="fake-model", messages=[{"role": "user", "content": "hi"}],
                                           max_tokens=3, extra_headers={"traceparent": h1})
        h2, t2, _ = traceparent()
        chunks = list(client.chat.completions.create(model="fake-model", messages=[{"role": "user", "content": "hi"}],
                                                     max_tokens=3, stream=True, extra_headers={"traceparent": h2}))
        (plain,) = _client_spans(receiver, t1)
        (streamed,) = _client_spans(receiver, t2)
    assert plain.attributes["gen_ai.response.model"] == r.model
    assert plain.attributes["gen_ai.response.finish_reasons"] == [r.choices[0].finish_reason]
    reasons = [ch.choices[0].finish_reason for ch in chunks if ch.choices and ch.choices[0].finish_reason]
    assert streamed.attributes["gen_ai.response.model"] == chunks[0].model
    assert streamed.attributes["gen_ai.response.finish_reasons"] == reasons == ["length"]


def test_decision_and_token_counters_move_with_real_requests(tmp_path, receiver, primary):  # noqa: F811
    env = {**base_env(primary)}
    with running_gateway(tmp_path, env, GATEWAY_JWT_SECRET=SECRET) as (base, app):
        client = _client(app, base)
        http = client._client
        before = scrape(http, base)
        r = client.chat.completions.create(model="fake-model", messages=[{"role": "user", "content": "hi"}],
                                           max_tokens=4)
        with pytest.raises(openai.NotFoundError):  # an unbound model: denied by policy
            client.chat.completions.create(model="not-bound", messages=[{"role": "user", "content": "hi"}])
        after = scrape(http, base)
        records = read_tail(app.state.ledger.path, 2)
    allowed, denied = records
    assert allowed["allow"] is True and denied["allow"] is False and allowed["rule_ids"] and denied["rule_ids"]

    def moved(name, **labels):
        return sample(after, name, **labels) - sample(before, name, **labels)

    # both outcomes labelled by their first rule id (bounded by the policy's rules)
    assert moved("canonic_decisions_total", action="inference.chat", allow="true", rule=allowed["rule_ids"][0]) == 1
    assert moved("canonic_decisions_total", action="inference.chat", allow="false", rule=denied["rule_ids"][0]) == 1
    assert moved("canonic_tokens_total", model="fake-model", type="input") == r.usage.prompt_tokens
    assert moved("canonic_tokens_total", model="fake-model", type="output") == r.usage.completion_tokens

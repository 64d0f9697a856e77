"""Governed inference through the openai SDK (sync and async, stream and non-stream)."""

from __future__ import annotations

import base64
import json
import time

import httpx
import openai
import pytest
from jose import jwt

from gateway.auth import mint_token
from tests.inference.conftest import SECRET, UPSTREAM_KEY, chat


def test_chat_non_stream_passes_through_with_governance_headers(gateway, primary):
    gw = gateway()
    raw = gw.client().chat.completions.with_raw_response.create(
        model="fake-model", messages=[{"role": "user", "content": "say hello"}],
        extra_headers={"x-request-id": "req-abc-1"},
    )
    done = raw.parse()
    assert done.id.startswith("chatcmpl-")
    assert done.choices[0].message.content.startswith("Hello from the fake")
    assert done.usage.prompt_tokens == 2
    assert raw.headers["x-request-id"] == "req-abc-1"
    assert raw.headers["x-canonic-provider"] == "VASTAI"
    assert len(raw.headers["x-canonic-decision-id"]) >= 16
    assert raw.headers["x-canonic-max-tokens"] == "16"  # MAX_TOKENS default applied
    sent = primary.requests[-1]
    assert sent["x-request-id"] == "req-abc-1"
    assert sent["authorization"] == f"Bearer {UPSTREAM_KEY}"  # the caller's JWT never goes upstream
    assert sent["body"]["max_tokens"] == 16


def test_chat_stream_sync_has_one_role_chunk_and_no_usage_unless_asked(gateway, primary):
    gw = gateway()
    chunks = list(gw.client().chat.completions.create(
        model="fake-model", messages=[{"role": "user", "content": "hi"}], stream=True, max_tokens=5))
    roles = [c for c in chunks if c.choices and c.choices[0].delta.role]
    assert len(roles) == 1
    assert {c.id for c in chunks} == {chunks[0].id}
    assert chunks[-1].choices[0].finish_reason == "length"
    assert all(c.usage is None for c in chunks)  # usage was requested upstream for metering, then stripped
    assert primary.requests[-1]["body"]["stream_options"] == {"include_usage": True}


async def test_async_completions_stream_and_non_stream(gateway):
    gw = gateway()
    async with gw.aclient() as client:
        done = await client.completions.create(model="fake-model", prompt="one two three", max_tokens=4)
        assert done.object == "text_completion" and done.choices[0].text == "Hello from the fake"
        stream = await client.completions.create(model="fake-model", prompt="one two", max_tokens=3,
                                                 stream=True, stream_options={"include_usage": True})
        parts = [c async for c in stream]
    assert "".join(c.choices[0].text for c in parts if c.choices) == "Hello from the"
    assert parts[-1].usage.completion_tokens == 3


async def test_async_chat_stream_bytes_end_with_done(gateway):
    gw = gateway()
    async with httpx.AsyncClient(timeout=5) as client:
        async with client.stream("POST", gw.v1 + "/chat/completions", headers=gw.auth(),
                                 json=chat(stream=True)) as resp:
            assert resp.status_code == 200
            assert resp.headers["content-type"].startswith("text/event-stream")
            body = b"".join([b async for b in resp.aiter_bytes()])
    assert body.endswith(b"data: [DONE]\n\n")
    assert b"event:" not in body


def test_models_lists_governed_models_with_max_model_len(gateway, primary):
    gw = gateway()
    models = gw.client().models.list()
    cards = {m.id: m for m in models.data}
    assert set(cards) == {"fake-model"}
    assert cards["fake-model"].max_model_len == primary.max_model_len


def test_unbound_model_is_404_and_never_reaches_upstream(gateway, primary):
    gw = gateway()
    with pytest.raises(openai.NotFoundError) as err:
        gw.client().chat.completions.create(model="nope", messages=[{"role": "user", "content": "x"}])
    assert err.value.body["code"] == "model_not_bound"
    assert err.value.response.headers["x-canonic-decision-id"]
    assert primary.count() == 0


def test_model_denied_by_policy_is_403(gateway, primary):
    gw = gateway(ALLOWED_MODELS="some-other-model")
    with pytest.raises(openai.PermissionDeniedError) as err:
        gw.client().chat.completions.create(model="fake-model", messages=[{"role": "user", "content": "x"}])
    assert err.value.body["code"] == "model_not_allowed"
    assert "rule" in err.value.message
    assert primary.count() == 0


def test_max_tokens_clamped_to_ceiling(gateway, primary):
    gw = gateway()
    raw = gw.client().chat.completions.with_raw_response.create(
        model="fake-model", messages=[{"role": "user", "content": "x"}], max_tokens=100000)
    assert raw.headers["x-canonic-max-tokens"] == "256"
    assert primary.requests[-1]["body"]["max_tokens"] == 256


def test_invalid_max_tokens_is_400_with_param(gateway, primary):
    gw = gateway()
    with pytest.raises(openai.BadRequestError) as err:
        gw.client().chat.completions.create(model="fake-model", messages=[{"role": "user", "content": "x"}],
                                            max_tokens=0)
    assert err.value.param == "max_tokens"
    assert primary.count() == 0


def test_context_overflow_rejected_locally_with_vllm_message(gateway, primary):
    primary.max_model_len = 64
    try:
        gw = gateway()
        client = gw.client()
        with pytest.raises(openai.BadRequestError) as err:
            client.chat.completions.create(model="fake-model", messages=[{"role": "user", "content": "w " * 64}])
        assert err.value.param == "input_tokens"
        assert err.value.body["message"].startswith("This model's maximum context length is 64 tokens. However, your "
                                            "request has 64 input tokens.")
        with pytest.raises(openai.BadRequestError) as err:
            client.completions.create(model="fake-model", prompt="w " * 10, max_tokens=60, stream=True)
        assert err.value.param == "max_tokens"
        assert "is too large: 60" in err.value.message and "(60 > 64 - 10)" in err.value.message
        assert primary.count("/v1/completions") == 0 and primary.count() == 0
        done = client.completions.create(model="fake-model", prompt="w " * 10, max_tokens=54)  # n + m == L
        assert done.choices[0].text
    finally:
        primary.max_model_len = 4096


def test_upstream_400_passes_through_without_retry(gateway, primary):
    primary.faults.models_max_len = 1_000_000  # the gateway believes the window is larger than it is
    primary.max_model_len = 32
    try:
        gw = gateway()
        with pytest.raises(openai.BadRequestError) as err:
            gw.client(max_retries=2).chat.completions.create(
                model="fake-model", messages=[{"role": "user", "content": "x"}], max_tokens=100)
        assert err.value.param == "max_tokens" and "maximum context length is 32" in err.value.message
        assert primary.count() == 1
    finally:
        primary.max_model_len = 4096


def _unsigned(claims: dict) -> str:
    def b64(d: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(d).encode()).rstrip(b"=").decode()

    return f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64(claims)}."


@pytest.mark.parametrize("kind", ["none", "garbage", "expired", "alg-none", "wrong-secret"])
def test_bad_tokens_are_401(gateway, primary, kind):
    gw = gateway()
    now = int(time.time())
    claims = {"sub": "x", "scope": "inference", "aud": "canonic-gateway", "iss": "canonic", "exp": now + 60}
    token = {
        "none": "",
        "garbage": "not-a-jwt",
        "expired": jwt.encode({**claims, "exp": now - 3600}, SECRET, algorithm="HS256"),
        "alg-none": _unsigned(claims),
        "wrong-secret": jwt.encode(claims, "another-secret-0123456789abcdef", algorithm="HS256"),
    }[kind]
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    r = httpx.post(gw.v1 + "/chat/completions", json=chat(), headers=headers, timeout=5)
    assert r.status_code == 401
    assert set(r.json()["error"]) >= {"message", "type", "param", "code"}
    assert r.headers["x-request-id"]
    assert primary.count() == 0


def test_missing_scope_is_403(gateway):
    gw = gateway()
    token = mint_token(gw.settings, "reader", ["compute:read"], 60)
    with pytest.raises(openai.PermissionDeniedError):
        gw.client(api_key=token).chat.completions.create(model="fake-model",
                                                         messages=[{"role": "user", "content": "x"}])


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (b'{"model": "fake-model", "messages": [', None),
        (b'{"model": "fake-model"}', "messages"),
        (b'{"model": "fake-model", "messages": [{"role": "user", "content": "x"}], "max_tokens": "5"}',
         "max_tokens"),
        (b'{"model": 5, "messages": [{"role": "user", "content": "x"}]}', "model"),
        (b'{"model": "fake-model", "messages": [{"content": "x"}]}', "messages"),
        (b'[1, 2]', None),
    ],
)
def test_bad_bodies_are_400_openai_shaped(gateway, primary, body, param):
    gw = gateway()
    r = httpx.post(gw.v1 + "/chat/completions", content=body,
                   headers={**gw.auth(), "Content-Type": "application/json"}, timeout=5)
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["type"] == "invalid_request_error"
    assert err["param"] == param
    assert primary.count() == 0


def test_huge_body_is_413(gateway, primary):
    gw = gateway()
    big = b'{"model": "fake-model", "messages": [{"role": "user", "content": "' + b"x" * 1_100_000 + b'"}]}'
    r = httpx.post(gw.v1 + "/chat/completions", content=big,
                   headers={**gw.auth(), "Content-Type": "application/json"}, timeout=10)
    assert r.status_code == 413
    assert r.json()["error"]["type"] == "invalid_request_error"
    assert primary.count() == 0


def test_no_provider_bound_starts_and_answers_503(gateway, primary):
    gw = gateway(VASTAI_BASE_URL=None, VASTAI_MODEL=None, VASTAI_API_KEY=None)
    ready = httpx.get(gw.url + "/readyz", timeout=5).json()
    assert ready["checks"]["upstreams"]["ok"] is False
    assert "no inference provider is bound" in ready["checks"]["upstreams"]["detail"]
    r = httpx.post(gw.v1 + "/chat/completions", json=chat(), headers=gw.auth(), timeout=5)
    assert r.status_code == 503
    assert "VASTAI_BASE_URL" in r.json()["error"]["message"]
    assert r.headers["x-should-retry"] == "false"


def test_missing_fallback_binding_is_503_naming_it(gateway, primary):
    gw = gateway(FALLBACK_PROVIDER="NOPE")
    r = httpx.post(gw.v1 + "/chat/completions", json=chat(), headers=gw.auth(), timeout=5)
    assert r.status_code == 503
    assert "NOPE_BASE_URL" in r.json()["error"]["message"]
    ready = httpx.get(gw.url + "/readyz", timeout=5).json()
    assert "NOPE_BASE_URL" in ready["checks"]["upstreams"]["detail"]
    assert primary.count() == 0

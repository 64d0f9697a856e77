"""Upstream faults: retries, budget, Retry-After, circuit, fallback, first-byte commit, in-band errors.

Gateway timings under test (VASTAI_TIMEOUT_MS=1000): connect 50 ms, first byte 500 ms, idle
250 ms, total 1 s; VASTAI_TRIES=3, VASTAI_RETRY_DELAY_MS=10.
"""

from __future__ import annotations

import json
import time

import httpx
import openai
import pytest

from tests.inference.conftest import chat


def _post(gw, body=None, headers=None, timeout=10):
    return httpx.post(gw.v1 + "/chat/completions", json=body or chat(), headers={**gw.auth(), **(headers or {})},
                      timeout=timeout)


def _events(raw: bytes) -> list:
    out = []
    for block in raw.split(b"\n\n"):
        if block.startswith(b"data: "):
            data = block[6:]
            out.append("DONE" if data == b"[DONE]" else json.loads(data))
    return out


def _stream(gw, body=None, timeout=10) -> tuple[httpx.Response, list]:
    with httpx.stream("POST", gw.v1 + "/chat/completions", json=body or chat(stream=True), headers=gw.auth(),
                      timeout=timeout) as resp:
        raw = b"".join(resp.iter_bytes())
    return resp, _events(raw)


def test_5xx_retried_then_success(gateway, primary):
    gw = gateway()
    primary.faults.status, primary.faults.fail_next = 500, 2
    done = gw.client().chat.completions.create(model="fake-model", messages=[{"role": "user", "content": "x"}])
    assert done.choices[0].message.content
    assert primary.count() == 3


@pytest.mark.parametrize("style", ["vllm", "flat", "plain"])
def test_exhaustion_is_final_and_sdk_retries_do_not_multiply(gateway, primary, style):
    gw = gateway()
    primary.faults.status, primary.faults.body_style = 502, style
    with pytest.raises(openai.InternalServerError) as err:
        gw.client(max_retries=2).chat.completions.create(model="fake-model",
                                                         messages=[{"role": "user", "content": "x"}])
    resp = err.value.response
    assert resp.status_code == 502
    assert resp.headers["x-should-retry"] == "false"
    assert primary.count() == 3  # the gateway's budget, not 3 x 3
    assert "127.0.0.1" not in resp.text and str(primary.port) not in resp.text


def test_client_retry_count_is_subtracted(gateway, primary):
    gw = gateway()
    primary.faults.status = 500
    r = _post(gw, headers={"x-stainless-retry-count": "2"})
    assert r.status_code == 502 and primary.count() == 1
    assert primary.requests[-1]["x-stainless-retry-count"] is None  # not forwarded


def test_429_long_retry_after_passed_through_without_waiting(gateway, primary):
    gw = gateway()
    primary.faults.status, primary.faults.retry_after = 429, "30"
    t0 = time.monotonic()
    with pytest.raises(openai.RateLimitError) as err:
        gw.client(max_retries=2).chat.completions.create(model="fake-model",
                                                         messages=[{"role": "user", "content": "x"}])
    assert time.monotonic() - t0 < 1.0
    assert err.value.response.headers["retry-after"] == "30"
    assert err.value.response.headers["x-should-retry"] == "false"
    assert primary.count() == 1


def test_429_short_retry_after_is_waited_out(gateway, primary):
    gw = gateway()
    primary.faults.status, primary.faults.fail_next, primary.faults.retry_after_ms = 429, 1, "50"
    r = _post(gw)
    assert r.status_code == 200 and primary.count() == 2


def test_503_carries_retry_after(gateway, primary):
    gw = gateway()
    primary.faults.status = 503
    r = _post(gw)
    assert r.status_code == 503
    assert r.headers["retry-after"] and r.headers["x-should-retry"] == "false"
    assert r.json()["error"]["type"] == "service_unavailable"


def test_circuit_opens_and_open_circuit_costs_nothing(gateway, primary):
    gw = gateway(VASTAI_RETRY_DELAY_MS="1")
    primary.faults.status = 500
    assert _post(gw).status_code == 502
    assert primary.count() == 3 and gw.circuit() == "open"
    t0 = time.monotonic()
    r = _post(gw)
    assert time.monotonic() - t0 < 0.2
    assert r.status_code == 503 and int(r.headers["retry-after"]) >= 1
    assert primary.count() == 3  # no attempt while open


def test_half_open_probe_on_health_closes_the_circuit(gateway, primary):
    gw = gateway(VASTAI_RETRY_DELAY_MS="1")
    primary.faults.status = 500
    _post(gw)
    assert gw.circuit() == "open"
    primary.faults.status = None
    deadline = time.monotonic() + 5
    while gw.circuit() != "closed" and time.monotonic() < deadline:
        _post(gw)  # a request after the cooldown triggers the probe (and is not held by it)
        time.sleep(0.1)
    assert primary.hits["/health"] >= 1
    assert gw.circuit() == "closed"
    assert _post(gw).status_code == 200


def test_dead_primary_fails_over_fast_then_skips_it(gateway, primary, backup):
    gw = gateway(fallback=True)
    gw.client().models.list()  # warm: the gateway's connections and the learned windows
    primary.stop()
    client = gw.client()
    t0 = time.monotonic()
    raw = client.chat.completions.with_raw_response.create(model="fake-model",
                                                           messages=[{"role": "user", "content": "x"}])
    elapsed = time.monotonic() - t0
    assert raw.headers["x-canonic-provider"] == "BACKUP"
    assert raw.parse().model == "backup-model"
    assert elapsed < 0.1, elapsed
    assert gw.circuit("VASTAI") == "open"
    for _ in range(3):
        t0 = time.monotonic()
        assert _post(gw).headers["x-canonic-provider"] == "BACKUP"
        assert time.monotonic() - t0 < 0.1
    assert backup.count() == 4


def test_fallback_after_primary_budget_spent(gateway, primary, backup):
    gw = gateway(fallback=True)
    primary.faults.status = 500
    r = _post(gw)
    assert r.status_code == 200 and r.headers["x-canonic-provider"] == "BACKUP"
    assert primary.count() == 2 and backup.count() == 1  # one budget of 3 shared by retries and fallback


def test_no_fallback_on_4xx(gateway, primary, backup):
    gw = gateway(fallback=True)
    primary.faults.models_max_len, primary.max_model_len = 1_000_000, 8
    try:
        r = _post(gw, chat(max_tokens=100))
        assert r.status_code == 400 and r.json()["error"]["param"] == "max_tokens"
        assert primary.count() == 1 and backup.count() == 0
    finally:
        primary.max_model_len = 4096


def test_slow_first_byte_non_stream_times_out_504(gateway, primary):
    gw = gateway(VASTAI_TRIES="1")
    primary.faults.first_byte_delay_ms = 1500
    t0 = time.monotonic()
    r = _post(gw)
    assert r.status_code == 504 and r.headers["x-should-retry"] == "false"
    assert time.monotonic() - t0 < 1.4


def test_slow_first_token_stream_fails_over_with_one_role_chunk(gateway, primary, backup):
    gw = gateway(fallback=True)
    primary.faults.first_byte_delay_ms = 900  # over the 500 ms first-byte timeout
    resp, events = _stream(gw)
    assert resp.headers["x-canonic-provider"] == "BACKUP"
    chunks = [e for e in events if e != "DONE"]
    assert len({c["id"] for c in chunks}) == 1
    assert sum(1 for c in chunks if c["choices"] and c["choices"][0]["delta"].get("role")) == 1
    assert events[-1] == "DONE" and chunks[-1]["choices"][0]["finish_reason"]


def test_cut_after_role_chunk_fails_over_invisibly(gateway, primary, backup):
    gw = gateway(fallback=True)
    primary.faults.cut_after = 1  # the role chunk, then a clean close
    chunks = list(gw.client().chat.completions.create(model="fake-model", stream=True,
                                                      messages=[{"role": "user", "content": "x"}]))
    assert {c.model for c in chunks} == {"backup-model"}
    assert len({c.id for c in chunks}) == 1
    assert sum(1 for c in chunks if c.choices and c.choices[0].delta.role) == 1


def test_malformed_first_chunk_is_retried(gateway, primary):
    gw = gateway()
    primary.faults.malformed_after = 0
    resp, events = _stream(gw)
    assert resp.status_code == 502  # every try broke before the first token
    assert primary.count() == 3 and gw.circuit() == "open"


@pytest.mark.parametrize("fault", ["cut_after", "reset_after", "stall_after", "malformed_after",
                                   "inband_error_after"])
def test_failure_after_first_token_is_in_band_error_then_done(gateway, primary, fault):
    gw = gateway()
    setattr(primary.faults, fault, 3)  # role chunk + 2 content chunks, then the fault
    t0 = time.monotonic()
    resp, events = _stream(gw)
    assert time.monotonic() - t0 < 1.5
    assert resp.status_code == 200
    assert events[-1] == "DONE"
    assert "error" in events[-2]
    assert sum(1 for e in events[:-1] if "choices" in e and e["choices"][0]["delta"].get("role")) == 1
    assert primary.count() == 1  # no retry after the commit
    with pytest.raises(openai.APIError):
        setattr(primary.faults, fault, 3)
        for _ in gw.client().chat.completions.create(model="fake-model", stream=True,
                                                     messages=[{"role": "user", "content": "x"}]):
            pass


def test_stream_split_events_pass_through_intact(gateway, primary):
    gw = gateway()
    primary.faults.split_events = True
    resp, events = _stream(gw, chat(stream=True, stream_options={"include_usage": True}))
    assert events[-1] == "DONE"
    assert events[-2]["usage"]["completion_tokens"] == len(primary.reply.split()[:16])

"""Upstreams that hang: learning max_model_len never holds a request for long, a connect
timeout on 127.0.0.1 (a full accept queue), and a stream's total timeout (T=1 s)."""

from __future__ import annotations

import json
import time

import httpx

from tests.fakes.silent import FullBacklog, SilentServer
from tests.inference.conftest import UPSTREAM_KEY, chat, running_gateway


def _env(primary_url, backup=None, **extra):
    env = {"VASTAI_BASE_URL": primary_url, "VASTAI_MODEL": "fake-model", "VASTAI_TIMEOUT_MS": "1000",
           "VASTAI_TRIES": "3", "VASTAI_RETRY_DELAY_MS": "10", "TOKENS_MAX": "256", "MAX_TOKENS": "16"}
    if backup is not None:
        env.update({"FALLBACK_PROVIDER": "BACKUP", "BACKUP_BASE_URL": backup.base_url, "BACKUP_MODEL": backup.model})
    env.update(extra)
    return env


def _timed(fn):
    t0 = time.monotonic()
    result = fn()
    return result, time.monotonic() - t0


def test_hung_primary_with_fallback_is_served_promptly(tmp_path, backup):
    with SilentServer() as silent, running_gateway(tmp_path, _env(silent.base_url, backup)) as gw:
        body = {"model": "fake-model", "messages": [{"role": "user", "content": "hi"}]}
        first, t_first = _timed(lambda: httpx.post(gw.v1 + "/chat/completions", json=body, headers=gw.auth(),
                                                   timeout=10))
        assert first.status_code == 200 and first.headers["x-canonic-provider"] == "BACKUP"
        assert t_first < 2.8, t_first  # two 1 s primary tries + the fallback; /v1/models added <= 0.25 s
        assert gw.circuit() == "open"  # the hung /v1/models read counted toward it
        second, t_second = _timed(lambda: httpx.post(gw.v1 + "/chat/completions", json=body,
                                                     headers=gw.auth(), timeout=10))
        assert second.status_code == 200 and t_second < 0.5, t_second
        models, t_models = _timed(lambda: httpx.get(gw.v1 + "/models", headers=gw.auth(), timeout=10))
        assert models.status_code == 200 and t_models < 0.5, t_models


def test_connect_timeout_is_503_unreachable_and_fast(tmp_path):
    with FullBacklog() as full, running_gateway(tmp_path, _env(full.base_url)) as gw:
        r, took = _timed(lambda: httpx.post(gw.v1 + "/chat/completions", json=chat(), headers=gw.auth(),
                                            timeout=10))
        assert r.status_code == 503 and "unreachable" in r.json()["error"]["message"]
        assert took < 1.0, took  # three 50 ms connect timeouts, not the 1 s total
        assert r.headers["retry-after"]


def test_stream_past_the_total_timeout_ends_with_an_in_band_timeout(gateway, primary):
    gw = gateway()
    primary.faults.chunk_delay_ms = 150  # every gap under the 250 ms idle timeout; 12 words > 1 s
    t0 = time.monotonic()
    with httpx.stream("POST", gw.v1 + "/chat/completions", json=chat(stream=True, max_tokens=64),
                      headers=gw.auth(), timeout=10) as resp:
        raw = b"".join(resp.iter_bytes())
    took = time.monotonic() - t0
    events = [b[6:] for b in raw.split(b"\n\n") if b.startswith(b"data: ")]
    assert events[-1] == b"[DONE]"
    err = json.loads(events[-2])["error"]
    assert err["type"] == "timeout_error" and "total timeout" in err["message"]
    assert 0.9 <= took < 1.6, took
    assert any(b'"content"' in e for e in events[:-2])  # tokens arrived before the cut
    assert UPSTREAM_KEY not in raw.decode()

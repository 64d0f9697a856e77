"""Compute instances registered at run time become routable upstreams (and stop being so)."""

from __future__ import annotations

import time

import httpx

from tests.fakes.fake_vllm import FakeVLLM


def test_registered_instance_serves_its_provider_then_unregisters(gateway):
    gw = gateway(LOCAL_MODEL="local-model")
    body = {"model": "local-model", "messages": [{"role": "user", "content": "hi"}]}
    r = httpx.post(gw.v1 + "/chat/completions", json=body, headers=gw.auth(), timeout=5)
    assert r.status_code == 503 and "no routable upstream" in r.json()["error"]["message"]
    with FakeVLLM(model="local-model", max_model_len=2048) as local:
        registry = gw.app.state.upstreams
        registry.register(provider="LOCAL", model="local-model", base_url=f"http://127.0.0.1:{local.port}",
                          instance_id="inst-1", max_model_len=None)
        r = httpx.post(gw.v1 + "/chat/completions", json=body, headers=gw.auth(), timeout=5)
        assert r.status_code == 200 and r.headers["x-canonic-provider"] == "LOCAL"
        assert local.count() == 1
        models = httpx.get(gw.v1 + "/models", headers=gw.auth(), timeout=5).json()
        assert {"id": "local-model", "max_model_len": 2048}.items() <= next(
            m for m in models["data"] if m["id"] == "local-model").items()
        assert registry.unregister("inst-1") is True
        assert registry.unregister("inst-1") is False
        r = httpx.post(gw.v1 + "/chat/completions", json=body, headers=gw.auth(), timeout=5)
        assert r.status_code == 503 and local.count() == 1


def test_an_open_circuit_of_an_instance_without_health_recovers_through_its_health_path(gateway):
    """llama.cpp's server has no /health (404): a registered instance probes the path it was
    gated on, so its circuit closes again once the server answers."""
    gw = gateway(LOCAL_MODEL="local-model", VASTAI_RETRY_DELAY_MS="1")
    body = {"model": "local-model", "messages": [{"role": "user", "content": "hi"}]}
    with FakeVLLM(model="local-model", max_model_len=2048) as local:
        local.faults.health_status = 404  # like llama_cpp.server
        registry = gw.app.state.upstreams
        upstream = registry.register(provider="LOCAL", model="local-model", base_url=f"http://127.0.0.1:{local.port}",
                                     instance_id="inst-2", health_path="/v1/models")
        local.faults.status = 500
        httpx.post(gw.v1 + "/chat/completions", json=body, headers=gw.auth(), timeout=5)
        assert upstream.circuit.state == "open"
        local.faults.status = None
        deadline = time.monotonic() + 8
        statuses = []
        while time.monotonic() < deadline:
            r = httpx.post(gw.v1 + "/chat/completions", json=body, headers=gw.auth(), timeout=5)
            statuses.append(r.status_code)
            if r.status_code == 200:
                break
            time.sleep(0.1)
        assert statuses[-1] == 200, statuses
        assert local.hits["/v1/models"] >= 1 and local.hits["/health"] == 0
        registry.unregister("inst-2")

"""Compute instances registered at run time become routable upstreams (and stop being so)."""

from __future__ import annotations

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

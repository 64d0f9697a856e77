"""End to end through the gateway to the real local model (llama.cpp + Gemma 3 270M): REST spinup,
health gate, routing, the openai SDK sync and async, stream and non-stream; then the model server
is killed underneath the gateway and brought back."""

from __future__ import annotations

import asyncio
import os
import signal
import threading

import httpx
import openai
import pytest

from providers.contract import INSTANCE_KEYS
from tests.compute.conftest import SPEC, needs_local, running_gateway, servers_under, wait_for

pytestmark = [needs_local, pytest.mark.timeout(240)]

MODEL = "gemma-3-270m"
CLAMP = 8
ENV = {"LOCAL_TOKENS_MAX": str(CLAMP)}


@pytest.fixture(scope="module")
def gw(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    from tests.compute.conftest import kill_servers

    try:
        with running_gateway(root, ENV) as gateway:
            with gateway.http() as http:
                response = http.post("/v1/compute/instances", json=SPEC)
                assert response.status_code == 202, response.text
                gateway.instance = response.json()
                gateway.root = root
                yield gateway
                http.delete("/v1/compute/instances?confirm=true")
    finally:
        assert not kill_servers(root), "a llama.cpp server was left running after the gateway stopped"


def test_spinup_returns_the_seed_json_and_is_routable(gw):
    body = gw.instance
    assert tuple(body) == INSTANCE_KEYS
    assert body["provider"] == "local" and body["gpu"] == "cpu" and body["status"] == "RUNNING"
    assert body["cost_per_hour"] == 0.0 and body["ssh_host"] is None and body["ssh_port"] is None
    assert body["started_at"].endswith("Z")
    routed = [u for u in gw.app.state.upstreams.for_provider("LOCAL")]
    assert [u.instance_id for u in routed] == [body["instance_id"]]
    records = [r for r in gw.ledger() if r["action"] == "compute.provision"]
    assert records and records[-1]["allow"] is True and records[-1]["instance"] == body["instance_id"]
    assert records[-1]["status"] == 202 and records[-1]["rule_ids"]


def test_repeat_spinup_returns_the_same_instance(gw):
    with gw.http() as http:
        again = http.post("/v1/compute/instances", json=SPEC)
        assert again.status_code == 202, again.text
        assert again.json()["instance_id"] == gw.instance["instance_id"]
        listed = http.get("/v1/compute/instances").json()
    assert [i["instance_id"] for i in listed] == [gw.instance["instance_id"]]
    assert len(servers_under(gw.root)) == 1


def test_sync_chat_non_stream(gw):
    raw = gw.client().chat.completions.with_raw_response.create(
        model=MODEL, messages=[{"role": "user", "content": "Say hello."}], max_tokens=64)
    assert raw.headers["x-canonic-max-tokens"] == str(CLAMP)  # 64 asked, the policy clamps to 8
    assert raw.headers["x-canonic-provider"] == "LOCAL"
    completion = raw.parse()
    assert completion.choices[0].message.content.strip()
    assert completion.usage.prompt_tokens > 0 and 0 < completion.usage.completion_tokens <= CLAMP
    # the decision ledger's inference record carries the usage the model reported
    request_id = raw.headers["x-request-id"]
    record = wait_for(lambda: next((r for r in gw.ledger() if r.get("request_id") == request_id
                                    and r.get("input_tokens") is not None), None), 10)
    assert record["input_tokens"] > 0 and 0 < record["output_tokens"] <= CLAMP


def test_sync_completion_stream(gw):
    stream = gw.client().completions.create(model=MODEL, prompt="The sky is", max_tokens=5, stream=True,
                                            stream_options={"include_usage": True})
    text, usage = "", None
    for chunk in stream:
        if chunk.choices:
            text += chunk.choices[0].text or ""
        if chunk.usage:
            usage = chunk.usage
    assert text.strip()
    # llama.cpp ignores stream_options, so a local stream carries no usage chunk and the gateway
    # cannot invent one; where a server does send usage, it must be real.
    assert usage is None or usage.completion_tokens > 0


def test_async_chat_stream_and_non_stream(gw):
    async def go():
        client = gw.aclient()
        done = await client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "Name a colour."}], max_tokens=6)
        stream = await client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "Count to three."}], max_tokens=6, stream=True)
        parts = [c.choices[0].delta.content or "" async for c in stream if c.choices]
        await client.close()
        return done, "".join(parts)

    done, streamed = asyncio.run(go())
    assert done.choices[0].message.content.strip() and done.usage.total_tokens > 0
    assert streamed.strip()


def test_a_probe_during_a_stream_does_not_cut_it_short(gw):
    """llama.cpp's default interrupts a running stream when any request arrives (a health probe)."""
    port = gw.app.state.upstreams.for_provider("LOCAL")[0].base_url.rsplit(":", 1)[1].split("/")[0]
    stream = gw.client().chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Write a long story."}], max_tokens=CLAMP, stream=True)
    probe = None
    finish, chunks = None, 0
    for chunk in stream:
        if probe is None:
            probe = threading.Thread(target=httpx.get, args=(f"http://127.0.0.1:{port}/v1/models",),
                                     kwargs={"timeout": 30, "trust_env": False})
            probe.start()
        if chunk.choices:
            chunks += bool(chunk.choices[0].delta.content)
            finish = chunk.choices[0].finish_reason or finish
    probe.join(timeout=30)
    assert finish == "length" and chunks >= CLAMP - 1


def test_killed_model_fails_closed_then_spinup_brings_it_back(gw):
    victim = gw.instance["instance_id"]
    pid = servers_under(gw.root)[0]
    os.killpg(pid, signal.SIGKILL)
    wait_for(lambda: not gw.app.state.upstreams.for_provider("LOCAL"), 10)  # the watcher unregisters it
    with pytest.raises(openai.APIStatusError) as caught:
        gw.client().chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}])
    assert caught.value.status_code == 503
    assert "LOCAL" in caught.value.message and "gemma-3-270m" in caught.value.message
    with gw.http() as http:
        assert http.get("/v1/compute/instances").json() == []
        back = http.post("/v1/compute/instances", json=SPEC)
        assert back.status_code == 202, back.text
    assert back.json()["instance_id"] != victim
    gw.instance = back.json()
    answer = gw.client().chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}])
    assert answer.choices[0].message.content.strip()

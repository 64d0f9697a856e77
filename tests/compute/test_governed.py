"""Governance on compute through REST (denials create nothing and are recorded), the routes'
statuses for bad input and provider errors, and the embedded local default with its shutdown."""

from __future__ import annotations

import httpx
import pytest

from tests.compute.conftest import SPEC, needs_local, running_gateway, servers_under, wait_for

pytestmark = [needs_local, pytest.mark.timeout(240)]


def _denied(response: httpx.Response, code: str) -> dict:
    assert response.status_code == 403, response.text
    error = response.json()["error"]
    assert error["code"] == code and error["type"] == "permission_error"
    assert "(rule " in error["message"] and ".md:L" in error["message"]
    assert response.headers.get("x-canonic-decision-id")
    return error


def _nothing_started(gw, root) -> None:
    assert servers_under(root) == []
    assert not list((root / "instances").glob("*")) if (root / "instances").exists() else True
    assert gw.app.state.upstreams.all() == []


def test_denials_create_nothing_and_land_in_the_ledger(root):
    with running_gateway(root, {"ALLOWED_MODELS": "some-other-model"}) as gw, gw.http() as http:
        _denied(http.post("/v1/compute/instances", json=SPEC), "model_not_allowed")
        _denied(http.post("/v1/compute/instances", json={**SPEC, "template": "llama-3-70b"}), "template_not_allowed")
        _nothing_started(gw, root)
        denials = [r for r in gw.ledger() if r["action"] == "compute.provision" and not r["allow"]]
        assert [r["reason_code"] for r in denials] == ["model_not_allowed", "template_not_allowed"]
        assert all(r["rule_ids"] and r["status"] == 403 for r in denials)


def test_budget_and_count_caps(root):
    with running_gateway(root) as gw, gw.http() as http:
        # A budget of 0 is no USD/h cap at all: the schema refuses it (400), the policy is not asked.
        zero = http.post("/v1/compute/instances", json={**SPEC, "budget": 0})
        assert zero.status_code == 400 and zero.json()["error"]["param"] == "budget", zero.text
        _nothing_started(gw, root)
        # the gpu is matched case-insensitively: "CPU" is the local provider's cpu offer
        first = http.post("/v1/compute/instances", json={**SPEC, "gpu": "CPU"})
        assert first.status_code == 202, first.text
        # LOCAL_MAX_INSTANCES=1: a second identity (another disk size) is over the count cap.
        error = _denied(http.post("/v1/compute/instances", json={**SPEC, "disk": 2}), "instance_cap")
        assert "the cap is 1" in error["message"]
        assert len(servers_under(root)) == 1
        # The same identity again (gpu in any case) is not a new instance: it returns the same one.
        again = http.post("/v1/compute/instances", json=SPEC)
        assert again.status_code == 202 and again.json()["instance_id"] == first.json()["instance_id"]
        assert http.delete("/v1/compute/instances", params={"confirm": "true"}).status_code == 200
        assert servers_under(root) == []
        assert gw.app.state.upstreams.all() == []


def test_route_statuses(root):
    with running_gateway(root) as gw, gw.http() as http:
        assert http.get("/v1/compute/instances").json() == []
        offers = http.get("/v1/compute/offers", params={"provider": "local"})
        assert offers.status_code == 200 and offers.json()[0]["gpu"] == "cpu"
        cases = [
            (http.get("/v1/compute/offers", params={"provider": "nope"}), 400, "unknown_provider"),
            (http.post("/v1/compute/instances", json={**SPEC, "gpu": "h100"}), 409, "no_offer"),
            (http.post("/v1/compute/instances", json={**SPEC, "disk": 999_999}), 409, "refused"),
            (http.post("/v1/compute/instances", json={**SPEC, "disk": -1}), 400, "invalid_value"),
            (http.post("/v1/compute/instances", json={**SPEC, "extra": 1}), 400, "invalid_value"),
            (http.post("/v1/compute/instances", content=b"{not json", headers={"content-type": "application/json"}),
             400, "invalid_value"),
            (http.get("/v1/compute/instances/local-nope"), 404, "instance_not_found"),
            (http.get("/v1/compute/instances/local-nope/ssh"), 404, "instance_not_found"),
            (http.delete("/v1/compute/instances/local-nope"), 404, "instance_not_found"),
            (http.delete("/v1/compute/instances"), 400, "confirmation_required"),
        ]
        for response, status, code in cases:
            assert response.status_code == status, (response.request.url, response.text)
            assert response.json()["error"]["code"] == code, response.text
        with gw.http(scopes=["compute:read"]) as reader:
            assert reader.post("/v1/compute/instances", json=SPEC).status_code == 403
            assert reader.get("/v1/compute/instances").status_code == 200
        assert httpx.get(gw.url + "/v1/compute/instances", trust_env=False).status_code == 401
        _nothing_started(gw, root)


def test_provider_unavailable_and_spinup_timeout(root):
    with running_gateway(root, {"LOCAL_MODEL_PATH": str(root / "absent.gguf")}) as gw, gw.http() as http:
        response = http.post("/v1/compute/instances", json=SPEC)
        assert response.status_code == 503 and response.json()["error"]["code"] == "provider_unavailable"
        assert "LOCAL_MODEL_PATH" in response.json()["error"]["message"]
    with running_gateway(root, spinup_timeout_s=0.3) as gw, gw.http() as http:
        response = http.post("/v1/compute/instances", json=SPEC)
        assert response.status_code == 504, response.text
        assert "destroyed" in response.json()["error"]["message"]
        assert servers_under(root) == []
        assert http.get("/v1/compute/instances").json() == []
        failed = [r for r in gw.ledger() if r["action"] == "compute.provision"][-1]
        assert failed["allow"] is True and failed["outcome"] == "failed" and failed["status"] == 504


def test_embedded_local_default_serves_then_leaves_nothing_behind(root):
    with running_gateway(root, embedded_local=True) as gw:
        first = httpx.get(gw.url + "/readyz", trust_env=False)
        if first.status_code == 503:
            assert first.json()["checks"]["compute"]["detail"] == "local model starting"
        wait_for(lambda: httpx.get(gw.url + "/readyz", trust_env=False).status_code == 200, 60, 0.2)
        answer = gw.client().chat.completions.create(model="gemma-3-270m", max_tokens=4,
                                                     messages=[{"role": "user", "content": "hi"}])
        assert answer.choices[0].message.content.strip()
        assert len(servers_under(root)) == 1
        embedded = [r for r in gw.ledger() if r["action"] == "compute.provision"]
        assert embedded and embedded[0]["principal"] == "gateway:embedded" and embedded[0]["allow"] is True
    assert servers_under(root) == []  # shutdown tore the embedded instance down


def test_embedded_is_skipped_when_a_remote_provider_is_bound(root):
    env = {"VASTAI_BASE_URL": "http://127.0.0.1:9/v1", "VASTAI_MODEL": "remote-model"}
    with running_gateway(root, env, embedded_local=True) as gw:
        assert gw.app.state.compute.readiness()["ok"] is True
        assert gw.app.state.compute.embedded["state"] == "off"
    assert servers_under(root) == []


def test_fallback_to_the_embedded_local_model_when_the_remote_primary_is_down(root):
    import socket

    with socket.socket() as dead:  # a loopback port nothing listens on
        dead.bind(("127.0.0.1", 0))
        port = dead.getsockname()[1]
    env = {"VASTAI_BASE_URL": f"http://127.0.0.1:{port}/v1", "VASTAI_MODEL": "remote-model",
           "FALLBACK_PROVIDER": "LOCAL"}
    with running_gateway(root, env, embedded_local=True) as gw:
        wait_for(lambda: gw.app.state.compute.embedded["state"] != "starting", 60, 0.2)
        assert gw.app.state.compute.embedded["state"] == "ready", gw.app.state.compute.embedded
        raw = gw.client().chat.completions.with_raw_response.create(
            model="remote-model", max_tokens=4, messages=[{"role": "user", "content": "hi"}])
        assert raw.headers["x-canonic-provider"] == "LOCAL", dict(raw.headers)
        assert raw.parse().choices[0].message.content is not None
        assert len(servers_under(root)) == 1
    assert servers_under(root) == []

"""Routing follows the instance: the provision decision is ledgered before the spinup, a teardown
that could not be decided leaves routing alone, a stopped server leaves routing and comes back
once RUNNING and gated again, and readiness follows a teardown of the embedded model at once."""

from __future__ import annotations

import os
import signal
import threading

import httpx
import pytest

from tests.compute.conftest import SPEC, needs_local, running_gateway, servers_under, wait_for
from tests.providers.cases import make_local

pytestmark = [needs_local, pytest.mark.timeout(180)]


def _routed(gw) -> list[str]:
    return [u.instance_id for u in gw.app.state.upstreams.all()]


def test_the_allowed_provision_is_ledgered_before_the_spinup(root):
    with running_gateway(root) as gw, gw.http() as http:
        gw.app.state.compute.providers["local"] = make_local(root, slow_start_s=3.0)
        done: dict = {}
        worker = threading.Thread(target=lambda: done.update(r=http.post("/v1/compute/instances", json=SPEC)))
        worker.start()
        wait_for(lambda: list((root / "instances").glob("*/instance.json")), 20, 0.02)  # created, PENDING
        early = [r for r in gw.ledger() if r["action"] == "compute.provision"]
        assert [r["outcome"] for r in early] == ["allowed"] and early[0]["allow"] is True
        worker.join(60)
        assert done["r"].status_code == 202, done["r"].text
        records = [r for r in gw.ledger() if r["action"] == "compute.provision"]
        assert [r["outcome"] for r in records] == ["allowed", "created"]
        assert records[0]["decision_id"] == records[1]["decision_id"]
        assert records[1]["instance"] == done["r"].json()["instance_id"]


def test_teardown_that_cannot_be_decided_keeps_routing(root):
    with running_gateway(root) as gw, gw.http() as http:
        instance_id = http.post("/v1/compute/instances", json=SPEC).json()["instance_id"]
        assert _routed(gw) == [instance_id]
        ledger_dir = gw.settings.ledger_path.parent
        ledger_dir.rename(root / "ledger.moved")
        ledger_dir.write_text("not a directory\n")
        try:
            wait_for(lambda: http.get("/v1/compute/instances").status_code == 503, 10, 0.1)
            refused = http.delete(f"/v1/compute/instances/{instance_id}")
            assert refused.status_code == 503 and refused.json()["error"]["code"] == "ledger_unavailable"
            assert _routed(gw) == [instance_id] and len(servers_under(root)) == 1
        finally:
            ledger_dir.unlink()
            (root / "ledger.moved").rename(ledger_dir)
        wait_for(lambda: http.get("/v1/compute/instances").status_code == 200, 20, 0.2)
        assert http.delete(f"/v1/compute/instances/{instance_id}").status_code == 200
        assert _routed(gw) == [] and servers_under(root) == []


def test_a_stopped_server_leaves_routing_and_returns(root):
    with running_gateway(root) as gw, gw.http() as http:
        instance_id = http.post("/v1/compute/instances", json=SPEC).json()["instance_id"]
        (pid,) = servers_under(root)
        os.kill(pid, signal.SIGSTOP)
        try:
            # alive but not answering its probe: not RUNNING; out of routing after a few passes
            wait_for(lambda: _routed(gw) == [], 30, 0.1)
        finally:
            os.kill(pid, signal.SIGCONT)
        wait_for(lambda: _routed(gw) == [instance_id], 20, 0.1)
        answer = gw.client().chat.completions.create(model="gemma-3-270m", max_tokens=3,
                                                     messages=[{"role": "user", "content": "hi"}])
        assert answer.choices[0].message.content is not None
        assert http.delete(f"/v1/compute/instances/{instance_id}").status_code == 200


def test_readiness_follows_a_teardown_of_the_embedded_model(root):
    with running_gateway(root, embedded_local=True) as gw, gw.http() as http:
        wait_for(lambda: httpx.get(gw.url + "/readyz", trust_env=False).status_code == 200, 60, 0.2)
        instance_id = gw.app.state.compute.embedded["instance_id"]
        assert http.delete(f"/v1/compute/instances/{instance_id}").status_code == 200
        ready = httpx.get(gw.url + "/readyz", trust_env=False)  # at once, not a watch interval later
        assert ready.status_code == 503, ready.text
        assert "not running" in ready.json()["checks"]["compute"]["detail"]
        again = http.post("/v1/compute/instances", json=SPEC)
        assert again.status_code == 202
        wait_for(lambda: httpx.get(gw.url + "/readyz", trust_env=False).status_code == 200, 10, 0.2)
        assert http.delete("/v1/compute/instances", params={"confirm": "true"}).status_code == 200
        assert httpx.get(gw.url + "/readyz", trust_env=False).status_code == 503
    assert servers_under(root) == []

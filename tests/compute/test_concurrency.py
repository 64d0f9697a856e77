"""Concurrency on the governed compute path: spinups waiting for one identity do not starve the
gateway (its ledger, inference denials and listings stay fast), and the instance-count cap holds
when two different identities race."""

from __future__ import annotations

import threading
import time

import pytest

from tests.compute.conftest import SPEC, needs_local, running_gateway, servers_under
from tests.providers.cases import make_local

pytestmark = [needs_local, pytest.mark.timeout(180)]


def _post_all(gw, bodies: list[dict]) -> list[tuple[int, dict]]:
    results: list[tuple[int, dict]] = []
    lock = threading.Lock()

    def post(body: dict) -> None:
        with gw.http() as http:
            response = http.post("/v1/compute/instances", json=body)
        with lock:
            results.append((response.status_code, response.json()))

    threads = [threading.Thread(target=post, args=(body,), daemon=True) for body in bodies]
    for thread in threads:
        thread.start()
    return results, threads


def test_spinups_of_one_identity_do_not_starve_the_gateway(root):
    with running_gateway(root) as gw, gw.http() as http:
        service = gw.app.state.compute
        # the real local provider, but its server starts 6 s late: the spinups wait a while
        service.providers["local"] = make_local(root, slow_start_s=6.0)
        results, threads = _post_all(gw, [SPEC] * 7)
        time.sleep(1.0)
        started = time.monotonic()
        denied = http.post("/v1/chat/completions", headers={"Authorization": f"Bearer {gw.token}"},
                           json={"model": "unbound-model", "messages": [{"role": "user", "content": "x"}]})
        denied_s = time.monotonic() - started
        # a governed refusal (ledgered durably), not a ledger that could not keep up
        assert 400 <= denied.status_code < 600 and denied.json()["error"]["code"] != "ledger_unavailable", denied.text
        assert any(r.get("model") == "unbound-model" for r in gw.ledger()), "the denial was not ledgered"
        assert denied_s < 2.0, f"a denied chat took {denied_s:.1f} s while spinups waited"
        started = time.monotonic()
        listed = http.get("/v1/compute/instances")
        assert listed.status_code == 200 and time.monotonic() - started < 2.0
        ready = http.get("/readyz").json()["checks"]["ledger"]
        assert ready["ok"] is True, ready
        for thread in threads:
            thread.join(60)
        assert not any(t.is_alive() for t in threads)
        assert [status for status, _ in results] == [202] * 7, results
        assert len({doc["instance_id"] for _, doc in results}) == 1
        assert len(servers_under(root)) == 1
        assert http.delete("/v1/compute/instances", params={"confirm": "true"}).status_code == 200


def test_count_cap_holds_when_two_identities_race(root):
    with running_gateway(root) as gw, gw.http() as http:  # LOCAL_MAX_INSTANCES=1 (the shipped value)
        results, threads = _post_all(gw, [{**SPEC, "disk": 1}, {**SPEC, "disk": 2}])
        for thread in threads:
            thread.join(90)
        assert not any(t.is_alive() for t in threads)
        statuses = sorted(status for status, _ in results)
        assert statuses == [202, 403], results
        refused = next(doc for status, doc in results if status == 403)["error"]
        assert refused["code"] == "instance_cap" and "the cap is 1" in refused["message"]
        assert len(servers_under(root)) == 1
        provisions = [r for r in gw.ledger() if r["action"] == "compute.provision"]
        assert any(r["allow"] is False and r["reason_code"] == "instance_cap" for r in provisions)
        assert http.delete("/v1/compute/instances", params={"confirm": "true"}).status_code == 200
        assert servers_under(root) == []

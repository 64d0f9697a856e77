"""Half-open circuit: a healthy /health lets one trial request through; a failed trial reopens
with a doubled cooldown; only a real success closes it and resets the cooldown. The upstream
here is vLLM's worst case: completions fail (500) while /health says 200."""

from __future__ import annotations

import time

import httpx

from tests.inference.conftest import chat


def _post(gw):
    return httpx.post(gw.v1 + "/chat/completions", json=chat(), headers=gw.auth(), timeout=5)


def _circuit(gw):
    return gw.app.state.upstreams.for_provider("VASTAI")[0].circuit


def test_healthy_probe_with_failing_completions_stays_bounded_and_backs_off(gateway, primary):
    gw = gateway(VASTAI_RETRY_DELAY_MS="1")
    primary.faults.status = 500  # /health stays 200
    statuses = []
    end = time.monotonic() + 4.0
    while time.monotonic() < end:
        statuses.append(_post(gw).status_code)
        time.sleep(0.02)
    # cooldowns 0.5, 1, 2 s: the opening three tries, then one trial per healthy probe
    assert primary.count() <= 3 + 3, primary.count()
    assert primary.hits["/health"] <= 3, primary.hits["/health"]
    assert _circuit(gw).cooldown_s_now >= 2.0  # grew: a healthy probe did not reset it
    assert set(statuses) <= {502, 503} and 503 in statuses

    primary.faults.status = None  # the upstream recovers: the next trial succeeds and closes it
    end = time.monotonic() + 5.0
    while gw.circuit() != "closed" and time.monotonic() < end:
        _post(gw)
        time.sleep(0.05)
    assert gw.circuit() == "closed" and _circuit(gw).cooldown_s_now == 0.0
    assert _post(gw).status_code == 200


def test_flapping_health_never_lets_more_than_one_trial_through(gateway, primary):
    gw = gateway(VASTAI_RETRY_DELAY_MS="1")
    primary.faults.status, primary.faults.health_flap = 500, True
    end = time.monotonic() + 2.5
    while time.monotonic() < end:
        _post(gw)
        time.sleep(0.02)
    probes = primary.hits["/health"]
    assert probes >= 1 and primary.fault_hits["health_flap"] == probes
    assert primary.count() <= 3 + probes // 2  # one trial per healthy probe (every second one)
    assert gw.circuit() != "closed"

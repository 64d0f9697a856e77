"""What is retried and what is final: permanent 5xx, HTTP-date Retry-After, oversized upstream
bodies, bad bindings (503 naming them), method errors, and the fake's own vLLM-style 400."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import openai
import pytest

from tests.inference.conftest import chat


def _post(gw, body=None, timeout=10):
    return httpx.post(gw.v1 + "/chat/completions", json=body or chat(), headers=gw.auth(), timeout=timeout)


@pytest.mark.parametrize("status", [501, 505])
def test_permanent_5xx_is_answered_once_and_never_opens_the_circuit(gateway, primary, status):
    gw = gateway()
    primary.faults.status, primary.faults.fail_next = status, 1
    r = _post(gw)
    assert r.status_code == 502 and r.headers["x-should-retry"] == "false"
    assert f"HTTP {status}" in r.json()["error"]["message"]
    assert primary.count() == 1 and gw.circuit() == "closed"
    assert _post(gw).status_code == 200  # the next caller is served, not refused by an open circuit


def test_http_date_retry_after_is_honoured_not_retried(gateway, primary):
    gw = gateway()
    date = "Wed, 21 Oct 2099 07:28:00 GMT"
    primary.faults.status, primary.faults.retry_after = 429, date
    with pytest.raises(openai.RateLimitError) as err:
        gw.client().chat.completions.create(model="fake-model", messages=[{"role": "user", "content": "x"}])
    assert err.value.response.headers["retry-after"] == date
    assert primary.count() == 1  # far in the future: passed through, not retried


def test_near_http_date_retry_after_is_waited_out(gateway, primary):
    gw = gateway()
    when = datetime.now(UTC) + timedelta(seconds=2)
    primary.faults.status, primary.faults.fail_next = 429, 1
    primary.faults.retry_after = format_datetime(when, usegmt=True)
    t0 = time.monotonic()
    r = _post(gw)
    assert r.status_code == 200 and primary.count() == 2
    assert time.monotonic() - t0 >= 0.8  # waited until the date (1-2 s: the date has 1 s resolution)


def test_oversized_upstream_body_is_502_not_retried(gateway, primary):
    gw = gateway(VASTAI_TIMEOUT_MS="20000")
    primary.faults.huge_body_bytes = 65 * 1024 * 1024
    r = _post(gw, timeout=30)
    assert r.status_code == 502 and "byte limit" in r.json()["error"]["message"]
    assert primary.count() == 1


@pytest.mark.parametrize("env, name", [
    ({"VASTAI_TRIES": "abc"}, "VASTAI_TRIES"),
    ({"VASTAI_BASE_URL": "not a url"}, "VASTAI_BASE_URL"),
])
def test_bad_binding_is_503_naming_it_never_403(gateway, primary, env, name):
    gw = gateway(**env)
    r = _post(gw)
    assert r.status_code == 503, r.text
    err = r.json()["error"]
    assert err["code"] == "binding_missing" and name in err["message"]
    assert "COVERAGE_DRIFT" not in err["message"]
    assert int(r.headers["retry-after"]) > 0
    assert primary.count() == 0


def test_wrong_method_is_405_invalid_request(gateway):
    gw = gateway()
    r = httpx.get(gw.v1 + "/chat/completions", headers=gw.auth(), timeout=5)
    assert r.status_code == 405
    assert r.json()["error"]["type"] == "invalid_request_error"


@pytest.mark.parametrize("value", ["5", 2.5, [1]])
def test_fake_answers_non_integer_max_tokens_like_vllm(primary, value):
    r = httpx.post(primary.base_url + "/chat/completions", timeout=5,
                   headers={"Authorization": f"Bearer {primary.faults.api_key}"},
                   json={**chat(), "max_tokens": value})
    assert r.status_code == 400
    err = r.json()["error"]
    assert err["code"] == 400 and err["param"] == "body.max_tokens" and "valid integer" in err["message"]


def test_unexpected_error_is_500_and_logged_with_the_request_id(tmp_path, caplog):
    from fastapi.testclient import TestClient

    from gateway.app import create_app
    from gateway.settings import Settings

    app = create_app(Settings(bindings_env={}, ledger_path=tmp_path / "l.jsonl", telemetry_enabled=False))

    async def boom():
        raise RuntimeError("secret internals")

    app.add_api_route("/boom", boom)  # a route with a bug, reached over HTTP like any other
    with TestClient(app, raise_server_exceptions=False) as client, caplog.at_level("ERROR", "canonic.errors"):
        r = client.get("/boom", headers={"x-request-id": "bug-42"})
    assert r.status_code == 500 and "secret internals" not in r.text
    assert r.json()["error"]["type"] == "internal_error"
    logged = [rec for rec in caplog.records if rec.name == "canonic.errors"]
    assert logged and "bug-42" in logged[0].getMessage() and logged[0].exc_info


def test_decision_id_only_on_decided_answers(gateway, primary):
    gw = gateway(ALLOWED_MODELS="other-model")
    denied = _post(gw)
    assert denied.status_code == 403 and denied.headers["x-canonic-decision-id"]
    bad_json = httpx.post(gw.v1 + "/chat/completions", content=b"{", headers=gw.auth(), timeout=5)
    no_token = httpx.post(gw.v1 + "/chat/completions", json=chat(), timeout=5)
    assert (bad_json.status_code, no_token.status_code) == (400, 401)
    assert "x-canonic-decision-id" not in bad_json.headers and "x-canonic-decision-id" not in no_token.headers

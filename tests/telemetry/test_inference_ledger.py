"""The decision ledger on the inference path (issue 4 acceptance): after a mixed workload through the
running gateway the chain verifies and holds exactly one record per decision, with the request ids the
client sent and the trace ids of its spans, and no prompt text or secrets; an unwritable ledger makes
inference answer 503 and the gateway recovers on its own when the path is writable again."""

from __future__ import annotations

import json
import time

import httpx
import openai
import pytest

from gateway.auth import mint_token
from gateway.ledger_verify import ledger_files, verify_chain
from tests.inference.conftest import SECRET, UPSTREAM_KEY, _fakes, backup, base_env, primary  # noqa: F401

from .conftest import FAST, running_gateway
from .helpers import sample, scrape, traceparent

PROMPT = "the-secret-plan-zebra-42 please"
BODY = {"model": "fake-model", "messages": [{"role": "user", "content": PROMPT}], "max_tokens": 8}


def _records(path) -> list[dict]:
    out = []
    for p in ledger_files(path):
        out += [json.loads(line) for line in p.read_text().splitlines() if line.strip()]
    return out


@pytest.fixture
def env(receiver, primary):  # noqa: F811 - fixture imported above
    return {**FAST, **base_env(primary), "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
            "OTEL_TRACES_SAMPLER": "always_on"}


def test_mixed_workload_one_record_per_decision(tmp_path, env, primary):  # noqa: F811
    ledger = tmp_path / "ledger" / "decisions.jsonl"
    traces: dict[str, str] = {}
    with running_gateway(tmp_path, env, GATEWAY_JWT_SECRET=SECRET) as (base, app):
        token = mint_token(app.state.settings, "ledger-user", ["inference"], 600)
        client = openai.OpenAI(base_url=base + "/v1", api_key=token, max_retries=0, timeout=10.0)

        def headers(rid: str) -> dict[str, str]:
            header, trace_id, _ = traceparent()
            traces[rid] = trace_id
            return {"x-request-id": rid, "traceparent": header}

        r = client.chat.completions.create(**BODY, extra_headers=headers("mix-allowed"))
        assert r.choices[0].message.content
        chunks = list(client.chat.completions.create(**BODY, stream=True, extra_headers=headers("mix-stream")))
        assert chunks
        with pytest.raises(openai.NotFoundError):  # an unbound model: a denial by policy
            client.chat.completions.create(**{**BODY, "model": "nope"}, extra_headers=headers("mix-denied"))
        primary.faults.status = 500
        with pytest.raises(openai.InternalServerError) as failed:
            client.completions.create(model="fake-model", prompt=PROMPT, max_tokens=8,
                                      extra_headers=headers("mix-failed"))
        assert failed.value.status_code == 502
        primary.faults.status = None
    # the gateway has stopped: the ledger drained its queue

    result = verify_chain(ledger)
    assert result.ok, result.describe()
    records = _records(ledger)
    assert result.records == len(records) == 4
    by_rid = {rec["request_id"]: rec for rec in records}
    assert set(by_rid) == {"mix-allowed", "mix-stream", "mix-denied", "mix-failed"}
    assert len({rec["decision_id"] for rec in records}) == 4
    for rid, rec in by_rid.items():
        assert rec["trace_id"] == traces[rid], rid
        assert rec["principal"] == "ledger-user"
        assert rec["policy_revision"]
    ok, stream, denied, failed_rec = (by_rid[k] for k in ("mix-allowed", "mix-stream", "mix-denied", "mix-failed"))
    assert (ok["allow"], ok["outcome"], ok["status"], ok["provider"]) == (True, "ok", 200, "VASTAI")
    assert ok["action"] == "inference.chat" and ok["output_tokens"] == r.usage.completion_tokens
    assert ok["attempts"] == 1 and ok["latency_ms"] > 0
    assert stream["allow"] is True and stream["outcome"] == "ok" and stream["output_tokens"] > 0
    assert stream["status"] in (200, "ok")  # 200 once the relay reports the HTTP status (inference)
    assert denied["allow"] is False and denied["outcome"] == "denied" and denied["rule_ids"]
    assert denied["model"] == "nope"
    assert failed_rec["action"] == "inference.completion" and failed_rec["allow"] is True
    assert failed_rec["status"] == 502 and failed_rec["output_tokens"] is None

    raw = "".join(p.read_text() for p in ledger_files(ledger))
    for secret in ("zebra", UPSTREAM_KEY, token, token.split(".")[1], SECRET):
        assert secret not in raw


def _post(http: httpx.Client, url: str, token: str, rid: str) -> httpx.Response:
    return http.post(url, json=BODY, headers={"Authorization": f"Bearer {token}", "x-request-id": rid})


def test_unwritable_ledger_fails_closed_then_recovers(tmp_path, env, primary):  # noqa: F811
    ledger = tmp_path / "ledger" / "decisions.jsonl"
    moved = tmp_path / "ledger.moved"
    with running_gateway(tmp_path, env, GATEWAY_JWT_SECRET=SECRET) as (base, app), httpx.Client(timeout=10) as http:
        token = mint_token(app.state.settings, "ledger-user", ["inference"], 600)
        url = base + "/v1/chat/completions"
        assert _post(http, url, token, "before-1").status_code == 200
        ledger.parent.rename(moved)
        ledger.parent.write_text("not a directory\n")
        statuses = []
        refused = None
        deadline = time.monotonic() + 10
        for i in range(200):  # lagged inference records: the failure shows once the writer tries
            r = _post(http, url, token, f"down-{i}")
            statuses.append(r.status_code)
            if r.status_code == 503:
                refused = r
                break
            assert r.status_code == 200 and time.monotonic() < deadline
            time.sleep(0.02)
        assert refused is not None, statuses
        assert refused.json()["error"]["code"] == "ledger_unavailable"
        assert refused.headers["Retry-After"] == "1"
        hits = primary.count()
        assert _post(http, url, token, "down-again").status_code == 503
        assert primary.count() == hits  # refused before anything reached the upstream
        ready = http.get(base + "/readyz")
        assert ready.status_code == 503 and ready.json()["checks"]["ledger"]["ok"] is False
        down = scrape(http, base)  # the gateway's own ledger metrics show the incident
        assert sample(down, "canonic_ledger_available") == 0
        assert sample(down, "canonic_ledger_incidents_total") == 1
        assert sample(down, "canonic_ledger_write_failures_total") >= 1

        ledger.parent.unlink()
        moved.rename(ledger.parent)
        for _ in range(250):
            r = _post(http, url, token, "after-1")
            if r.status_code == 200:
                break
            assert r.status_code == 503
            time.sleep(0.02)
        assert r.status_code == 200, r.text
        assert sample(scrape(http, base), "canonic_ledger_available") == 1
    result = verify_chain(ledger)
    assert result.ok, result.describe()
    rids = [rec["request_id"] for rec in _records(ledger)]
    # every request that was answered 200 has its record (the ones in flight when the file went away
    # were retried by the writer); the refused ones were never chained
    answered = ["before-1"] + [f"down-{i}" for i, s in enumerate(statuses) if s == 200]
    assert [rid for rid in rids if rid != "after-1"] == answered
    assert rids.count("after-1") == 1
    assert "down-again" not in rids

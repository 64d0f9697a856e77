"""A client that leaves: retries stop (non-stream too), and abandoned requests and streams are
recorded as client_closed, never as ok. Gateway T=1 s (first byte 500 ms, total 1 s)."""

from __future__ import annotations

import socket
import time

import httpx
import openai
import pytest

from tests.inference.conftest import chat, ledger_records


def _mine(records, rid):
    return [r for r in records if r.get("request_id") == rid]


def test_sdk_timeout_with_slow_upstream_spends_at_most_the_budget(gateway, primary):
    gw = gateway()
    primary.faults.first_byte_delay_ms = 1500
    client = gw.client(timeout=0.4, max_retries=2)
    with pytest.raises(openai.APITimeoutError):
        client.chat.completions.create(model="fake-model", messages=[{"role": "user", "content": "x"}])
    time.sleep(1.2)  # let any attempt the gateway would still make reach the fake
    assert primary.count() <= 3  # VASTAI_TRIES=3 for the whole logical request, SDK retries included
    assert gw.circuit() == "closed"  # abandoned attempts do not blame the upstream
    records = ledger_records(gw, lambda rs: sum(r["outcome"] == "client_closed" for r in rs) >= 3)
    closed = [r for r in records if r["outcome"] == "client_closed"]
    assert len(closed) == 3 and {r["status"] for r in closed} == {499}


def test_disconnect_during_retry_wait_stops_retrying(gateway, primary):
    gw = gateway(VASTAI_RETRY_DELAY_MS="400")
    primary.faults.status = 500
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(gw.v1 + "/chat/completions", json=chat(), headers={**gw.auth(), "x-request-id": "leaver"},
                   timeout=0.2)
    time.sleep(1.5)  # without the check the gateway would make tries 2 and 3 (0.4 s + 0.8 s waits)
    assert primary.count() == 1
    rec = _mine(ledger_records(gw, lambda rs: _mine(rs, "leaver")), "leaver")
    assert rec and rec[0]["outcome"] == "client_closed"


def _raw_stream_then_close(gw, rid: str, read_first: bool) -> None:
    """A stream request over a raw socket, closed after the first body bytes (or before any)."""
    host, port = gw.url.rsplit("//", 1)[1].split(":")
    body = httpx.Request("POST", gw.v1 + "/chat/completions", json=chat(stream=True)).content
    head = (f"POST /v1/chat/completions HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {gw.token}\r\n"
            f"x-request-id: {rid}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(head.encode() + body)
        if read_first:
            assert b"data: " in sock.recv(65536)
        else:
            time.sleep(0.2)


def test_stream_abandoned_mid_way_is_client_closed_with_status_200(gateway, primary):
    gw = gateway()
    primary.faults.stall_after = 3  # role chunk, two words, then silence
    _raw_stream_then_close(gw, "mid-stream", read_first=True)
    rec = _mine(ledger_records(gw, lambda rs: _mine(rs, "mid-stream")), "mid-stream")
    assert rec and (rec[0]["outcome"], rec[0]["status"]) == ("client_closed", 200)


def test_clients_leaving_before_the_first_token_are_client_closed(gateway, primary):
    gw = gateway()
    primary.faults.first_byte_delay_ms = 450
    for i in range(3):
        _raw_stream_then_close(gw, f"early-{i}", read_first=False)
    recs = ledger_records(gw, lambda rs: sum(r["request_id"].startswith("early-") for r in rs) == 3)
    early = [r for r in recs if r["request_id"].startswith("early-")]
    assert len(early) == 3
    assert {(r["outcome"], r["status"]) for r in early} == {("client_closed", 499)}


def test_completed_stream_and_body_share_one_status_type(gateway, primary):
    gw = gateway()
    client = gw.client()
    list(client.chat.completions.create(model="fake-model", messages=[{"role": "user", "content": "x"}],
                                        stream=True, extra_headers={"x-request-id": "done-stream"}))
    client.chat.completions.create(model="fake-model", messages=[{"role": "user", "content": "x"}],
                                   extra_headers={"x-request-id": "done-body"})
    recs = ledger_records(gw, lambda rs: _mine(rs, "done-stream") and _mine(rs, "done-body"))
    for rid in ("done-stream", "done-body"):
        rec = _mine(recs, rid)
        assert rec and (rec[0]["outcome"], rec[0]["status"]) == ("ok", 200), rid

"""The chain under a real workload: concurrent durable and non-durable appends, masking, lag, backpressure."""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path

import pytest

from gateway.errors import ServiceUnavailable
from gateway.ledger import Ledger
from gateway.ledger_verify import GENESIS, record_hash, verify_chain
from tests.ledger.conftest import decision, ledger_path, make_settings, read_records


async def test_mixed_concurrent_workload_verifies(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, ledger_max_lag_ms=5)
    led = Ledger(settings)
    await led.start()
    path = ledger_path(settings)
    returned: dict[str, str] = {}
    durable_seen_on_disk: list[bool] = []

    async def worker(w: int) -> None:
        rnd = random.Random(w)
        for k in range(50):
            durable = rnd.random() < 0.3
            rec = decision(w * 1000 + k)
            digest = await led.append(rec, durable=durable)
            returned[rec["decision_id"]] = digest
            if durable:
                durable_seen_on_disk.append(digest in path.read_text())
            if rnd.random() < 0.2:
                await asyncio.sleep(0.001)

    await asyncio.gather(*(worker(w) for w in range(20)))
    await led.stop()

    result = verify_chain(path)
    assert result.ok, result.describe()
    assert result.records == 1000 and result.last_seq == 1000
    records = read_records(path)
    assert {r["decision_id"]: r["hash"] for r in records} == returned
    assert durable_seen_on_disk and all(durable_seen_on_disk)
    assert records[0]["prev"] == GENESIS and records[0]["seq"] == 1
    assert led.drops == 0 and led.write_failures == 0 and led.records_written == 1000


async def test_record_shape_and_hash(settings) -> None:
    led = Ledger(settings)
    await led.start()
    digest = await led.append(decision(1), durable=True)
    await led.stop()
    (rec,) = read_records(ledger_path(settings))
    assert rec["hash"] == digest == record_hash(rec)
    line = ledger_path(settings).read_text()
    # canonical JSON: sorted keys, compact separators, one object per line
    assert line.startswith('{"action":"inference.chat","allow":true,') and ", " not in line and line.endswith("}\n")
    assert rec["time"].endswith("Z") and "T" in rec["time"]
    for name in ("decision_id", "principal", "model", "provider", "instance", "rule_ids", "policy_revision",
                 "trace_id", "request_id", "outcome", "latency_ms", "seq", "prev"):
        assert name in rec


async def test_secrets_and_prompt_text_never_written(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, bindings_env={"VASTAI_API_KEY": "vast-key-0123456789abcdef"})
    settings = settings.model_copy(update={"jwt_secret": "the-jwt-shared-secret-xyz"})
    led = Ledger(settings)
    await led.start()
    jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlc2lnbmF0dXJl"
    await led.append(
        decision(
            1,
            messages=[{"role": "user", "content": "PROMPT-TEXT-ONE"}],
            prompt="PROMPT-TEXT-TWO",
            authorization=f"Bearer {jwt}",
            outcome=f"upstream said: Authorization: Bearer {jwt} key=vast-key-0123456789abcdef",
            error_type="used the-jwt-shared-secret-xyz and sk-abcdefghijklmnopqrstuvwx",
            principal="alice",
        ),
        durable=True,
    )
    await led.stop()
    text = ledger_path(settings).read_text()
    for secret in ("PROMPT-TEXT", "messages", "prompt", "authorization", jwt, "eyJ", "vast-key-0123456789abcdef",
                   "the-jwt-shared-secret-xyz", "sk-abcdefghijklmnopqrstuvwx"):
        assert secret not in text, secret
    (rec,) = read_records(ledger_path(settings))
    assert rec["principal"] == "alice" and "[masked]" in rec["outcome"] and "[masked]" in rec["error_type"]
    assert verify_chain(ledger_path(settings)).ok


async def test_durable_is_not_delayed_by_batching_and_lag_is_bounded(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, ledger_max_lag_ms=300)
    led = Ledger(settings)
    await led.start()
    path = ledger_path(settings)
    t0 = time.perf_counter()
    d = await led.append(decision(1), durable=True)
    durable_s = time.perf_counter() - t0
    assert d in path.read_text()
    assert durable_s < 0.25, durable_s

    h = await led.append(decision(2), durable=False)
    assert h not in path.read_text()  # batched, not yet written
    t0 = time.perf_counter()
    for _ in range(200):  # bounded: 200 x 10 ms
        if h in path.read_text():
            break
        await asyncio.sleep(0.01)
    lag_s = time.perf_counter() - t0
    assert h in path.read_text()
    assert lag_s < 0.3 + 0.2, lag_s
    await led.stop()


async def test_full_queue_refuses_without_breaking_the_chain(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, ledger_queue_size=5, ledger_max_lag_ms=50)
    led = Ledger(settings)
    await led.start()
    accepted, refused = 0, 0
    for i in range(20):  # no await yields between these: the writer cannot drain
        try:
            await led.append(decision(i), durable=False)
            accepted += 1
        except ServiceUnavailable as exc:
            refused += 1
            assert exc.status == 503 and exc.headers.get("Retry-After") == "1"
            assert "queue full" in exc.message
    assert accepted == 5 and refused == 15 and led.drops == 15
    await led.stop()
    result = verify_chain(ledger_path(settings))
    assert result.ok and result.records == 5


async def test_append_before_start_and_after_stop_is_refused(settings) -> None:
    led = Ledger(settings)
    assert not led.available
    with pytest.raises(ServiceUnavailable):
        await led.append(decision(1), durable=True)
    await led.start()
    assert led.available and led.readiness()["ok"] is True
    await led.append(decision(1), durable=True)
    await led.stop()
    assert not led.available and led.readiness()["ok"] is False
    with pytest.raises(ServiceUnavailable):
        await led.append(decision(2), durable=False)
    assert verify_chain(ledger_path(settings)).records == 1


async def test_restart_continues_the_chain(settings) -> None:
    for round_ in range(3):
        led = Ledger(settings)
        await led.start()
        for i in range(5):
            await led.append(decision(round_ * 10 + i), durable=i % 2 == 0)
        await led.stop()
    result = verify_chain(ledger_path(settings))
    assert result.ok and result.records == 15

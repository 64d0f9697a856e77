"""ComputeService's own lifecycle on the real local provider: a shutdown during a spinup ends it
cleanly (one PENDING->TERMINATED, the worker's failure retrieved, the decisions ledgered as
gateway:embedded, nothing left running)."""

from __future__ import annotations

import asyncio
import gc

import pytest

from gateway.compute import ComputeService
from gateway.governance_state import load_governance
from gateway.ledger import Ledger
from gateway.upstreams import UpstreamRegistry
from tests.compute.conftest import compute_settings, ledger_records, needs_local, servers_under
from tests.providers.cases import make_local

pytestmark = [needs_local, pytest.mark.timeout(120)]


def test_shutdown_during_the_embedded_spinup(root):
    settings = compute_settings(root, embedded_local=True)
    provider = make_local(root, slow_start_s=5.0)
    unretrieved: list[dict] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(lambda _loop, context: unretrieved.append(context))
        governance = load_governance(settings)
        ledger = Ledger(settings)
        await ledger.start()
        service = ComputeService(settings, governance.policy, UpstreamRegistry(governance.policy), ledger,
                                 providers={"local": provider})
        await service.start()
        for _ in range(100):  # until the server is PENDING (created, not yet answering)
            if await asyncio.to_thread(provider.list):
                break
            await asyncio.sleep(0.05)
        assert service.embedded["state"] == "starting"
        await service.stop()
        await ledger.stop()
        gc.collect()
        await asyncio.sleep(0)

    asyncio.run(main())
    assert servers_under(root) == []
    # (other tests' garbage, collected here, may report its own tasks: only futures are ours)
    assert not [c for c in unretrieved if c.get("message") == "Future exception was never retrieved"], unretrieved
    events = provider.tracker.read().events
    ended = [e for e in events if e["event"] == "state" and e["to"] == "TERMINATED"]
    assert len(ended) == 1 and ended[0]["from"] == "PENDING", events
    records = ledger_records(settings.ledger_path)
    provision = [r for r in records if r["action"] == "compute.provision"]
    assert [r["outcome"] for r in provision] == ["allowed", "cancelled"], provision
    assert len({r["decision_id"] for r in provision}) == 1
    teardown = [r for r in records if r["action"] == "compute.teardown"]
    assert teardown and all(r["principal"] == "gateway:embedded" and r["allow"] for r in teardown), teardown

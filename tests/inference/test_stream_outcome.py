"""The outcome sse.relay hands to on_end, read against the fake vLLM's real SSE: HTTP status 200
with a separate result, the upstream's model and the choices' finish reasons."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from gateway import sse
from tests.inference.conftest import UPSTREAM_KEY, chat


async def _relay(fake, body: dict) -> tuple[bytes, dict]:
    outcomes: list[dict] = []

    async def on_end(outcome: dict) -> None:
        outcomes.append(outcome)

    async with aiohttp.ClientSession() as session:
        resp = await session.post(fake.base_url + "/chat/completions", json=body,
                                  headers={"Authorization": f"Bearer {UPSTREAM_KEY}"})
        loop = asyncio.get_running_loop()
        held = await sse.open_stream(resp, True, loop.time() + 5)
        chunks = [c async for c in sse.relay(resp, held, idle_s=2, total_deadline=loop.time() + 5,
                                             strip_usage=False, on_end=on_end)]
    assert len(outcomes) == 1
    return b"".join(chunks), outcomes[0]


@pytest.mark.parametrize("max_tokens, finish", [(64, "stop"), (3, "length")])
def test_completed_stream_outcome_carries_model_and_finish_reason(primary, max_tokens, finish):
    body = chat(stream=True, max_tokens=max_tokens, stream_options={"include_usage": True})
    raw, outcome = asyncio.run(_relay(primary, body))
    assert raw.endswith(sse.DONE)
    assert (outcome["status"], outcome["result"]) == (200, "ok")
    assert outcome["model"] == "fake-model" and outcome["finish_reasons"] == [finish]
    assert outcome["usage"]["completion_tokens"] > 0


def test_cut_stream_outcome_is_status_200_result_cut(primary):
    primary.faults.cut_after = 3
    _, outcome = asyncio.run(_relay(primary, chat(stream=True)))
    assert (outcome["status"], outcome["result"]) == (200, "cut") and outcome["finish_reasons"] == []

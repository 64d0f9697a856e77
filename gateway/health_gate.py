"""The health gate: an instance becomes routable only once its OpenAI port answers ``/v1/models``
listing the expected model (and, where the server reports one, the expected ``max_model_len``).

Bounded by ``timeout_s``; a "still waiting" line goes to ``progress`` every ``progress_every_s``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import httpx


class GateFailed(Exception):
    """The instance did not pass the gate within its deadline; ``last`` says what was seen."""

    def __init__(self, message: str, last: str) -> None:
        super().__init__(message)
        self.last = last


def _models_url(base_url: str) -> str:
    url = base_url.rstrip("/")
    return (url if url.endswith("/v1") else url + "/v1") + "/models"


def judge(body: Any, model: str, expected_max_model_len: int | None) -> tuple[bool, str, int | None]:
    """(passed, what was seen, reported max_model_len) for one ``/v1/models`` answer."""
    cards = body.get("data") if isinstance(body, dict) else None
    if not isinstance(cards, list):
        return False, "/v1/models answered without a data list", None
    ids = [c.get("id") for c in cards if isinstance(c, dict)]
    card = next((c for c in cards if isinstance(c, dict) and c.get("id") == model), None)
    if card is None:
        return False, f"/v1/models lists {ids!r}, not {model!r}", None
    reported = card.get("max_model_len")
    if isinstance(reported, int) and not isinstance(reported, bool):
        if expected_max_model_len is not None and reported != expected_max_model_len:
            return False, f"{model} reports max_model_len {reported}, expected {expected_max_model_len}", reported
        return True, f"{model} listed with max_model_len {reported}", reported
    return True, f"{model} listed (no max_model_len reported)", None


async def health_gate(
    base_url: str,
    model: str,
    *,
    expected_max_model_len: int | None,
    timeout_s: float,
    interval_s: float = 0.2,
    progress: Callable[[str], None] | None = None,
    progress_every_s: float = 60.0,
    probe_timeout_s: float = 2.0,
) -> int | None:
    """Wait until the instance passes; return the max_model_len it reported (None if it reports none)."""
    url = _models_url(base_url)
    started = time.monotonic()
    next_report = started + progress_every_s
    last = "no answer yet"
    async with httpx.AsyncClient(timeout=probe_timeout_s, trust_env=False) as client:
        while True:
            try:
                response = await client.get(url)
                if response.status_code == 200:
                    passed, last, reported = judge(response.json(), model, expected_max_model_len)
                    if passed:
                        return reported
                else:
                    last = f"/v1/models answered HTTP {response.status_code}"
            except (httpx.HTTPError, ValueError) as exc:
                last = f"/v1/models unreachable ({type(exc).__name__})"
            now = time.monotonic()
            if now - started >= timeout_s:
                raise GateFailed(f"health gate for {model} at {url} did not pass within {timeout_s:g} s ({last})", last)
            if progress is not None and now >= next_report:
                progress(f"still waiting: health gate for {model} after {now - started:.0f} s ({last})")
                next_report = now + progress_every_s
            await asyncio.sleep(max(0.0, min(interval_s, timeout_s - (now - started))))

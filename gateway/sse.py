"""Server-sent events from an upstream, passed through as bytes.

Events are framed on the blank line (``\\n\\n``) and checked with byte tests only; they are
never re-serialized. Before the commit point the first events are parsed to find the first
content-bearing one (a chat stream's role-only chunk is held back until then), so a failure
up to there can be retried or failed over invisibly. After the commit, any failure becomes
one in-band ``data: {"error": ...}`` event followed by ``data: [DONE]``.

The relay hands ``on_end`` one outcome: ``status`` 200 (the HTTP status the client got), a
``result`` ("ok", "timeout", "cut", "broken", "malformed", "upstream_error", "client_closed"),
the ``usage`` chunk's object, the upstream's ``model`` (from the first event) and the choices'
``finish_reasons`` (byte scans of each event; no re-parse).
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp

DONE = b"data: [DONE]\n\n"
SEP = b"\n\n"
MAX_EVENT_BYTES = 8 * 1024 * 1024
_USAGE = b'"usage":'
_EMPTY_CHOICES = b'"choices":[]'
_FINISH_KEY = b'"finish_reason"'
# JSON escapes quotes inside strings, so generated text cannot fake either match.
_FINISH = re.compile(rb'"finish_reason"\s*:\s*"([A-Za-z0-9_.-]{1,64})"')
_MODEL = re.compile(rb'"model"\s*:\s*"((?:[^"\\]|\\.){1,512})"')


class StreamBroken(Exception):
    """The upstream stream failed before the commit point (retryable)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def error_event(message: str, type_: str = "upstream_error", code: str = "upstream_error") -> bytes:
    body = {"error": {"message": message, "type": type_, "param": None, "code": code}}
    return b"data: " + json.dumps(body, separators=(",", ":")).encode() + SEP + DONE


def well_formed(event: bytes) -> bool:
    """A cheap structural check: one ``data: {...}`` JSON object per event (or a comment)."""
    if event.startswith(b"data: {"):
        return event.endswith(b"}" + SEP) and event.count(SEP) == 1
    return event.startswith(b":")


def is_usage_only(event: bytes) -> bool:
    return _EMPTY_CHOICES in event and _USAGE in event


def usage_of(raw: bytes) -> dict[str, Any] | None:
    """The ``usage`` object in a JSON body or event, found without parsing the whole body."""
    idx = raw.rfind(_USAGE)
    if idx < 0:
        return None
    try:
        value, _ = json.JSONDecoder().raw_decode(raw[idx + len(_USAGE) :].decode("utf-8", "replace").lstrip())
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _holds_content(event: bytes, chat: bool) -> bool:
    """False only for a chat role-only chunk (delta with role and empty content, no finish)."""
    if not chat:
        return True
    try:
        obj = json.loads(event[6:])
    except ValueError:
        raise StreamBroken("malformed event before the first token") from None
    choices = obj.get("choices") if isinstance(obj, dict) else None
    if not choices:
        return True
    choice = choices[0] if isinstance(choices[0], dict) else {}
    delta = choice.get("delta") or {}
    if choice.get("finish_reason") is not None:
        return True
    return bool(delta.get("content")) or any(k not in ("role", "content") for k in delta)


async def read_event(resp: aiohttp.ClientResponse, deadline: float) -> bytes:
    async with asyncio.timeout_at(deadline):
        return await resp.content.readuntil(SEP, max_size=MAX_EVENT_BYTES)


async def open_stream(resp: aiohttp.ClientResponse, chat: bool, deadline: float) -> list[bytes]:
    """Read up to the commit point (the first content-bearing event, or [DONE]) before
    ``deadline``. Returns the held events. Raises StreamBroken or TimeoutError."""
    held: list[bytes] = []
    try:
        while True:
            event = await read_event(resp, deadline)
            if not event.endswith(SEP):
                raise StreamBroken("upstream closed the stream before the first token")
            if event == DONE:
                held.append(event)
                return held
            if event.startswith(b":"):
                continue
            if not well_formed(event):
                raise StreamBroken("malformed event before the first token")
            if event.startswith(b'data: {"error"'):
                raise StreamBroken("upstream reported an error before the first token")
            held.append(event)
            if _holds_content(event, chat):
                return held
    except aiohttp.ClientError as exc:
        raise StreamBroken(f"upstream stream failed before the first token ({type(exc).__name__})") from None


def _model_of(event: bytes) -> str | None:
    match = _MODEL.search(event)
    if match is None:
        return None
    try:
        value = json.loads(b'"' + match.group(1) + b'"')
    except ValueError:
        return None
    return value if isinstance(value, str) else None


def _note_event(outcome: dict[str, Any], event: bytes) -> None:
    if outcome["model"] is None and event.startswith(b"data: {"):
        outcome["model"] = _model_of(event)
    if _FINISH_KEY in event:
        outcome["finish_reasons"].extend(m.decode() for m in _FINISH.findall(event))


async def relay(
    resp: aiohttp.ClientResponse,
    held: list[bytes],
    *,
    idle_s: float,
    total_deadline: float,
    strip_usage: bool,
    on_end: Callable[[dict[str, Any]], Awaitable[None]],
) -> AsyncIterator[bytes]:
    """Yield the held events, then the rest of the upstream stream, ending with [DONE] always."""
    loop = asyncio.get_running_loop()
    outcome: dict[str, Any] = {"status": 200, "result": "ok", "usage": None, "model": None, "finish_reasons": []}
    try:
        head = [e for e in held if not (strip_usage and is_usage_only(e))]
        for e in held:
            _note_event(outcome, e)
            if is_usage_only(e):
                outcome["usage"] = usage_of(e)
        if head:
            yield b"".join(head)
        if held and held[-1] == DONE:
            return
        while True:
            now = loop.time()
            if now >= total_deadline:
                outcome["result"] = "timeout"
                yield error_event("upstream stream exceeded the total timeout", "timeout_error", "timeout")
                return
            try:
                event = await read_event(resp, min(now + idle_s, total_deadline))
            except TimeoutError:
                outcome["result"] = "timeout"
                what = ("exceeded the total timeout" if loop.time() >= total_deadline
                        else "stalled (idle timeout)")
                yield error_event(f"upstream stream {what}", "timeout_error", "timeout")
                return
            except Exception as exc:  # reset, protocol error, oversized event
                outcome["result"] = "broken"
                yield error_event(f"upstream stream failed ({type(exc).__name__})")
                return
            if event == DONE:
                yield event
                return
            if not event.endswith(SEP):
                outcome["result"] = "cut"
                yield error_event("upstream closed the stream before it finished")
                return
            if not well_formed(event):
                outcome["result"] = "malformed"
                yield error_event("upstream sent a malformed event")
                return
            if event.startswith(b'data: {"error"'):
                outcome["result"] = "upstream_error"
            elif is_usage_only(event):
                outcome["usage"] = usage_of(event)
                if strip_usage:
                    continue
            else:
                _note_event(outcome, event)
            yield event
    except (asyncio.CancelledError, GeneratorExit):
        outcome["result"] = "client_closed"  # the client left: the response task was cancelled
        raise
    finally:
        if outcome["result"] == "ok":
            resp.release()
        else:
            resp.close()
        await on_end(outcome)

"""One CLIENT span per upstream attempt (GenAI semantic conventions), ended when the attempt
fails, when a non-stream body has arrived, or when a relayed stream ends."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from gateway.telemetry import (
    ATTR_ATTEMPT,
    ATTR_CIRCUIT_STATE,
    ATTR_PROVIDER,
    ERROR_TYPE,
    GEN_AI_OPERATION_NAME,
    GEN_AI_PROVIDER_NAME,
    GEN_AI_REQUEST_MAX_TOKENS,
    GEN_AI_REQUEST_MODEL,
    GEN_AI_RESPONSE_FINISH_REASONS,
    GEN_AI_RESPONSE_MODEL,
    GEN_AI_USAGE_INPUT_TOKENS,
    GEN_AI_USAGE_OUTPUT_TOKENS,
    SERVER_ADDRESS,
    SERVER_PORT,
    Telemetry,
)

_NO_HEADERS: dict[str, str] = {}
_FINISH_REASON = re.compile(rb'"finish_reason"\s*:\s*"([A-Za-z0-9_.-]{1,64})"')


def finish_reasons(body: bytes | None) -> list[str]:
    """The choices' finish reasons in a non-stream body, found without parsing it (an upstream's
    JSON escapes quotes inside strings, so a content string cannot fake a match)."""
    if not body:
        return []
    return [m.decode() for m in _FINISH_REASON.findall(body)]


class AttemptSpan:
    __slots__ = ("span", "headers", "_ended", "model")

    def __init__(self, telemetry: Telemetry | None, call: Any, binding: Any, upstream: Any, attempt: int) -> None:
        self._ended = False
        self.model = binding.model
        if telemetry is None or not telemetry.recording():
            self.span = None
            # an unsampled trace still propagates (flag 00) so the upstream does not start its own
            self.headers = telemetry.inject({}) if telemetry is not None and telemetry.tracing else _NO_HEADERS
            return
        operation = "chat" if call.chat else "text_completion"
        host, _, port = upstream.server_url.split("://", 1)[-1].partition(":")
        attributes = {
            GEN_AI_OPERATION_NAME: operation,
            GEN_AI_PROVIDER_NAME: binding.name,
            GEN_AI_REQUEST_MODEL: binding.model,
            SERVER_ADDRESS: host,
            ATTR_PROVIDER: binding.name,
            ATTR_ATTEMPT: attempt,
            ATTR_CIRCUIT_STATE: upstream.circuit.state,
        }
        if port.split("/")[0].isdigit():
            attributes[SERVER_PORT] = int(port.split("/")[0])
        max_tokens = call.payload.get("max_tokens")
        if isinstance(max_tokens, int):
            attributes[GEN_AI_REQUEST_MAX_TOKENS] = max_tokens
        self.span = telemetry.tracer.start_span(f"{operation} {binding.model}", kind=SpanKind.CLIENT,
                                                attributes=attributes)
        self.headers = telemetry.inject({}, context=trace.set_span_in_context(self.span))

    def failed(self, failure: Any) -> None:
        if self.span is None or self._ended:
            return
        kind = f"http_{failure.status}" if failure.status else failure.kind
        self.span.set_attribute(ERROR_TYPE, kind)
        self.span.set_status(Status(StatusCode.ERROR, failure.kind))
        self._end()

    def done(self, usage: dict[str, Any] | None, status: str = "ok", body: bytes | None = None) -> None:
        """End the attempt; ``body`` (a non-stream answer) gives ``gen_ai.response.finish_reasons``."""
        if self.span is None or self._ended:
            return
        self.span.set_attribute(GEN_AI_RESPONSE_MODEL, self.model)
        reasons = finish_reasons(body)
        if reasons:
            self.span.set_attribute(GEN_AI_RESPONSE_FINISH_REASONS, reasons)
        if usage:
            if isinstance(usage.get("prompt_tokens"), int):
                self.span.set_attribute(GEN_AI_USAGE_INPUT_TOKENS, usage["prompt_tokens"])
            if isinstance(usage.get("completion_tokens"), int):
                self.span.set_attribute(GEN_AI_USAGE_OUTPUT_TOKENS, usage["completion_tokens"])
        if status != "ok":
            self.span.set_attribute(ERROR_TYPE, status)
            self.span.set_status(Status(StatusCode.ERROR, status))
        self._end()

    def wrap(self, on_end: Callable[[dict[str, Any]], Awaitable[None]]) -> Callable[[dict[str, Any]], Awaitable[None]]:
        if self.span is None:
            return on_end

        async def ended(outcome: dict[str, Any]) -> None:
            self.done(outcome.get("usage"), outcome.get("status", "ok"))
            await on_end(outcome)

        return ended

    def _end(self) -> None:
        self._ended = True
        self.span.end()

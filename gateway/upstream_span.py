"""One CLIENT span per upstream attempt (GenAI semantic conventions), ended when the attempt
fails, when a non-stream body has arrived, or when a relayed stream ends."""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from gateway.telemetry import (
    ATTR_ATTEMPT,
    ATTR_CIRCUIT_STATE,
    ATTR_PROVIDER,
    ERROR_TYPE,
    GEN_AI_INPUT_MESSAGES,
    GEN_AI_OPERATION_NAME,
    GEN_AI_OUTPUT_MESSAGES,
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
_MODEL = re.compile(rb'"model"\s*:\s*"([^"\\]{1,256})"')


def finish_reasons(body: bytes | None) -> list[str]:
    """The choices' finish reasons in a non-stream body, found without parsing it (an upstream's
    JSON escapes quotes inside strings, so a content string cannot fake a match)."""
    if not body:
        return []
    return [m.decode() for m in _FINISH_REASON.findall(body)]


def response_model(body: bytes | None) -> str | None:
    """The ``model`` an upstream names in its non-stream answer, found without parsing the body.
    An OpenAI-shaped answer carries it at the top, before any content; inside a JSON string a
    quote is escaped, so content cannot fake the key."""
    if not body:
        return None
    m = _MODEL.search(body, 0, 4096)
    return m.group(1).decode("utf-8", "replace") if m else None


def _input_messages(payload: dict[str, Any]) -> str | None:
    """GenAI ``gen_ai.input.messages``: the chat messages, or a text prompt as one user message."""
    if "messages" in payload:
        return json.dumps(payload["messages"], ensure_ascii=False, default=str)
    if "prompt" in payload:
        return json.dumps([{"role": "user", "content": payload["prompt"]}], ensure_ascii=False, default=str)
    return None


def _output_messages(body: bytes) -> str | None:
    """GenAI ``gen_ai.output.messages`` of a non-stream answer (chat message or completion text)."""
    try:
        doc = json.loads(body)
        out = []
        for choice in doc.get("choices") or ():
            message = choice.get("message")
            content = message.get("content") if isinstance(message, dict) else choice.get("text")
            out.append({"role": "assistant", "content": content, "finish_reason": choice.get("finish_reason")})
    except (ValueError, AttributeError, TypeError):
        return None
    return json.dumps(out, ensure_ascii=False)


class AttemptSpan:
    __slots__ = ("span", "headers", "_ended", "model", "_telemetry")

    def __init__(self, telemetry: Telemetry | None, call: Any, binding: Any, upstream: Any, attempt: int) -> None:
        self._ended = False
        self.model = binding.model
        self._telemetry = telemetry
        if telemetry is None or not (telemetry.recording() if call.traced is None else call.traced):
            self.span = None
            # an unsampled trace still propagates (flag 00) so the upstream does not start its own
            if telemetry is None or not telemetry.tracing:
                self.headers = _NO_HEADERS
            else:
                self.headers = call.trace_headers if call.trace_headers is not None else telemetry.inject({})
            return
        operation = "chat" if call.chat else "text_completion"
        try:  # hostname/port only: userinfo in a configured URL never reaches a span
            parts = urlsplit(upstream.server_url)
            host, port = parts.hostname or "", parts.port
        except ValueError:
            host, port = "", None
        attributes = {
            GEN_AI_OPERATION_NAME: operation,
            GEN_AI_PROVIDER_NAME: binding.name,
            GEN_AI_REQUEST_MODEL: binding.model,
            SERVER_ADDRESS: host,
            ATTR_PROVIDER: binding.name,
            ATTR_ATTEMPT: attempt,
            ATTR_CIRCUIT_STATE: upstream.circuit.state,
        }
        if port is not None:
            attributes[SERVER_PORT] = port
        max_tokens = call.payload.get("max_tokens")
        if isinstance(max_tokens, int):
            attributes[GEN_AI_REQUEST_MAX_TOKENS] = max_tokens
        self.span = telemetry.tracer.start_span(f"{operation} {binding.model}", kind=SpanKind.CLIENT,
                                                attributes=attributes)
        self.headers = telemetry.inject({}, context=trace.set_span_in_context(self.span))
        if telemetry.capture_content:  # opt-in (telemetry_capture_content): prompt text on the span
            messages = _input_messages(call.payload)
            if messages is not None:
                telemetry.add_content(self.span, GEN_AI_INPUT_MESSAGES, messages)

    def failed(self, failure: Any) -> None:
        if self.span is None or self._ended:
            return
        kind = f"http_{failure.status}" if failure.status else failure.kind
        self.span.set_attribute(ERROR_TYPE, kind)
        self.span.set_status(Status(StatusCode.ERROR, failure.kind))
        self._end()

    def done(self, usage: dict[str, Any] | None, status: str = "ok", body: bytes | None = None, *,
             model: str | None = None, reasons: list[str] | None = None) -> None:
        """End the attempt. ``body`` (a non-stream answer) gives ``gen_ai.response.model`` and
        ``gen_ai.response.finish_reasons``; a stream passes what it saw as ``model``/``reasons``."""
        if self.span is None or self._ended:
            return
        model = model or response_model(body)
        if model:
            self.span.set_attribute(GEN_AI_RESPONSE_MODEL, model)
        reasons = reasons or finish_reasons(body)
        if reasons:
            self.span.set_attribute(GEN_AI_RESPONSE_FINISH_REASONS, reasons)
        if usage:
            if isinstance(usage.get("prompt_tokens"), int):
                self.span.set_attribute(GEN_AI_USAGE_INPUT_TOKENS, usage["prompt_tokens"])
            if isinstance(usage.get("completion_tokens"), int):
                self.span.set_attribute(GEN_AI_USAGE_OUTPUT_TOKENS, usage["completion_tokens"])
        if body and self._telemetry is not None and self._telemetry.capture_content:
            output = _output_messages(body)
            if output is not None:
                self._telemetry.add_content(self.span, GEN_AI_OUTPUT_MESSAGES, output)
        if status != "ok":
            self.span.set_attribute(ERROR_TYPE, status)
            self.span.set_status(Status(StatusCode.ERROR, status))
        self._end()

    def wrap(self, on_end: Callable[[dict[str, Any]], Awaitable[None]]) -> Callable[[dict[str, Any]], Awaitable[None]]:
        if self.span is None:
            return on_end

        async def ended(outcome: dict[str, Any]) -> None:
            model, reasons = outcome.get("model"), outcome.get("finish_reasons")
            self.done(outcome.get("usage"), outcome.get("result", outcome.get("status", "ok")),
                      model=model if isinstance(model, str) else None,
                      reasons=[str(r) for r in reasons if r] if isinstance(reasons, list | tuple) else None)
            await on_end(outcome)

        return ended

    def _end(self) -> None:
        self._ended = True
        self.span.end()

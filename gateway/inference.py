"""The inference call path between a parsed request and the forwarder: reading a bounded
body, decisions to statuses, obligations applied to the upstream payload, and the local
context-length check.

The local check counts one token per whitespace-separated word of the prompt. For the
byte-level BPE tokenizers of the served models (Qwen, DeepSeek) a word is at least one token,
so the count is a lower bound: a local rejection is certain; anything it lets through is
still checked by vLLM, whose 400 is passed on without a retry. Messages are vLLM's own
(§1.3 of the reference), with the live-server suffix `` (parameter=<p>, value=<v>)``.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError

from gateway.errors import BadRequest, Forbidden, GatewayError, NotFound, ServiceUnavailable
from gateway.request_body import read_body


async def read_json(request: Request, limit: int) -> Any:
    """The request body as JSON, refusing bodies over ``limit`` bytes (413) before reading them
    whole, and malformed JSON (400)."""
    raw = await read_body(request, limit)
    try:
        return json.loads(raw)
    except ValueError:
        raise BadRequest(
            "We could not parse the JSON body of your request. Send a JSON object.", code="invalid_json"
        ) from None


def validate(model: type[BaseModel], obj: Any) -> Any:
    try:
        return model.model_validate(obj)
    except ValidationError as exc:
        raise RequestValidationError(exc.errors(include_url=False, include_context=False)) from None


def denial(decision: Any, policy: Any, routable: bool = True) -> GatewayError:
    """A denied Decision as the status the issue names, citing the rule that denied it."""
    reason = "; ".join(decision.reasons) or decision.reason_code
    rules = f" (rule {', '.join(decision.rule_ids)})" if decision.rule_ids else ""
    code = decision.reason_code
    retry = {"x-should-retry": "false"}
    if code == "model_not_bound" and not routable:
        unbound = ", ".join(getattr(policy, "unbound", ()) or ()) or "none"
        return ServiceUnavailable(f"inference is unavailable: no provider is bound (unbound: {unbound})",
                                  code="binding_missing", headers=retry)
    if code == "model_not_bound":
        return NotFound(f"{reason}{rules}", param="model", code=code, headers=retry)
    if code == "tokens_invalid":
        return BadRequest(f"{reason}{rules}", param="max_tokens", code=code, headers=retry)
    if code == "field_not_allowed":
        field = reason.rsplit(": ", 1)[-1].strip("'\"")
        return BadRequest(f"{reason}{rules}", param=field, code=code, headers=retry)
    if code in ("binding_missing", "policy_refused"):
        # The gateway's configuration is at fault, not the caller: 503 until an operator fixes it.
        missing = ", ".join(getattr(policy, "missing", ()) or ())
        what = f"missing or invalid bindings: {missing}" if missing else "the governance policy did not compile"
        return ServiceUnavailable(f"inference is unavailable: {what} ({reason}){rules}", code=code,
                                  headers={**retry, "Retry-After": "30"})
    return Forbidden(f"denied by policy: {reason}{rules}", code=code, headers=retry)


def upstream_payload(obj: dict[str, Any], *, chat: bool, max_tokens: int) -> tuple[dict[str, Any], bool]:
    """The body sent upstream: the caller's fields with the applied max_tokens, and usage
    requested on streams (for metering). Returns (payload, strip_usage)."""
    payload = dict(obj)
    if chat and payload.get("max_completion_tokens") is not None:
        payload["max_completion_tokens"] = max_tokens
        if payload.get("max_tokens") is not None:
            payload["max_tokens"] = max_tokens
    else:
        payload["max_tokens"] = max_tokens
    strip_usage = False
    if payload.get("stream"):
        opts = payload.get("stream_options")
        wants = isinstance(opts, dict) and opts.get("include_usage", True) is not False
        if not wants:
            payload["stream_options"] = {**(opts or {}), "include_usage": True}
            strip_usage = True
    return payload, strip_usage


def prompt_words(obj: dict[str, Any], *, chat: bool) -> int:
    """A lower bound on the prompt's token count (see the module docstring)."""
    if chat:
        total = 0
        for msg in obj.get("messages") or ():
            content = msg.get("content") if isinstance(msg, dict) else None
            if isinstance(content, str):
                total += len(content.split())
            elif isinstance(content, list):
                for part in content:
                    if isinstance(part, dict) and isinstance(part.get("text"), str):
                        total += len(part["text"].split())
        return total
    prompt = obj.get("prompt")
    if isinstance(prompt, str):
        return len(prompt.split())
    if isinstance(prompt, list) and prompt and all(isinstance(p, int) for p in prompt):
        return len(prompt)
    if isinstance(prompt, list):
        return max((len(p.split()) if isinstance(p, str) else len(p) for p in prompt), default=0)
    return 0


def check_context(max_model_len: int, n: int, m: int) -> None:
    """vLLM's context-length rules: at most L-1 prompt tokens; n + m == L is accepted."""
    L = max_model_len
    if n >= L:
        raise BadRequest(
            f"This model's maximum context length is {L} tokens. However, your request has {n} input tokens. "
            f"Please reduce the length of the input messages. (parameter=input_tokens, value={n})",
            param="input_tokens",
            code="context_length_exceeded",
            headers={"x-should-retry": "false"},
        )
    if n + m > L:
        raise BadRequest(
            f"'max_tokens' or 'max_completion_tokens' is too large: {m}. This model's maximum context length "
            f"is {L} tokens and your request has {n} input tokens ({m} > {L} - {n}). "
            f"(parameter=max_tokens, value={m})",
            param="max_tokens",
            code="context_length_exceeded",
            headers={"x-should-retry": "false"},
        )

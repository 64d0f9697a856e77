"""Request bodies of the OpenAI-compatible routes (validated) and the documented response shapes.

Models are flat (no nested models) so their JSON schema needs no ``$defs`` and can be put into
the OpenAPI document as is. Fields beyond the OpenAI API are kept (``extra="allow"``) and passed
through to vLLM only when the policy allows them (PASSTHROUGH_FIELDS); otherwise the request is a
400 naming the field. Types are strict: ``"5"`` is not an integer.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr, field_validator

_COMMON = frozenset({
    "model", "max_tokens", "stream", "stream_options", "temperature", "top_p", "n", "stop",
    "presence_penalty", "frequency_penalty", "logit_bias", "logprobs", "user", "seed",
})
# The OpenAI API's own request fields; anything else is an extra the policy must allow
# (PASSTHROUGH_FIELDS) before it reaches the upstream.
CHAT_FIELDS = _COMMON | {
    "messages", "max_completion_tokens", "top_logprobs", "response_format", "tools", "tool_choice",
    "parallel_tool_calls", "functions", "function_call", "service_tier", "store", "metadata",
    "modalities", "audio", "prediction", "reasoning_effort",
}
COMPLETION_FIELDS = _COMMON | {"prompt", "suffix", "echo", "best_of"}


def extra_fields(obj: dict[str, Any], *, chat: bool) -> tuple[str, ...]:
    known = CHAT_FIELDS if chat else COMPLETION_FIELDS
    return tuple(k for k in obj if k not in known)


class _Request(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: StrictStr = Field(min_length=1)
    max_tokens: StrictInt | None = None
    stream: StrictBool | None = False
    stream_options: dict[str, Any] | None = None

    def requested_tokens(self) -> int | None:
        return self.max_tokens


_MESSAGE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["role"],
    "properties": {
        "role": {"type": "string"},
        "content": {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "object"}}, {"type": "null"}]},
    },
}


class ChatRequest(_Request):
    messages: list[dict[str, Any]] = Field(min_length=1, json_schema_extra={"items": _MESSAGE_SCHEMA})
    max_completion_tokens: StrictInt | None = None

    @field_validator("messages")
    @classmethod
    def _roles(cls, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for i, msg in enumerate(messages):
            if not isinstance(msg.get("role"), str):
                raise ValueError(f"messages[{i}] needs a string 'role'")
            content = msg.get("content")
            if content is not None and not isinstance(content, str | list):
                raise ValueError(f"messages[{i}].content must be a string, a list of parts or null")
        return messages

    def requested_tokens(self) -> int | None:
        return self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens


class CompletionRequest(_Request):
    prompt: StrictStr | list[StrictStr] | list[StrictInt] | list[list[StrictInt]]

    @field_validator("prompt")
    @classmethod
    def _non_empty(cls, prompt: Any) -> Any:
        if isinstance(prompt, list) and not prompt:
            raise ValueError("prompt must not be an empty list")
        return prompt


ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["message", "type"],
            "properties": {
                "message": {"type": "string"},
                "type": {"type": "string"},
                "param": {"type": ["string", "null"]},
                "code": {"type": ["string", "null"]},
            },
        }
    },
}

COMPLETION_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["id", "object", "choices"],
    "properties": {
        "id": {"type": "string"},
        "object": {"type": "string"},
        "created": {"type": "integer"},
        "model": {"type": "string"},
        "choices": {"type": "array", "items": {"type": "object"}},
        "usage": {"type": ["object", "null"]},
    },
}

MODELS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["object", "data"],
    "properties": {
        "object": {"type": "string", "enum": ["list"]},
        "data": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["id", "object", "owned_by"],
                "properties": {
                    "id": {"type": "string"},
                    "object": {"type": "string"},
                    "created": {"type": "integer"},
                    "owned_by": {"type": "string"},
                    "max_model_len": {"type": ["integer", "null"]},
                },
            },
        },
    },
}

_ERR = {"content": {"application/json": {"schema": ERROR_SCHEMA}}}
_ERRORS = {
    "400": {"description": "Invalid request (OpenAI error body; `param` names the field)", **_ERR},
    "401": {"description": "Missing, invalid or expired bearer token", **_ERR},
    "403": {"description": "Denied by policy or missing the `inference` scope", **_ERR},
    "404": {"description": "The model is not bound to any provider", **_ERR},
    "413": {"description": "Request body too large", **_ERR},
    "429": {"description": "Upstream rate limit (Retry-After set)", **_ERR},
    "502": {"description": "Upstream failed", **_ERR},
    "503": {"description": "No provider bound or no healthy upstream (Retry-After set)", **_ERR},
    "504": {"description": "Upstream timed out", **_ERR},
}


def completion_openapi(model: type[BaseModel]) -> dict[str, Any]:
    """``openapi_extra`` for a completion route: its request body and every response."""
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": model.model_json_schema()}},
        },
        "responses": {
            "200": {
                "description": "A completion, or an SSE stream of chunks when `stream` is true",
                "content": {
                    "application/json": {"schema": COMPLETION_SCHEMA},
                    "text/event-stream": {"schema": {"type": "string"}},
                },
            },
            **_ERRORS,
        },
    }


def models_openapi() -> dict[str, Any]:
    errors = {k: v for k, v in _ERRORS.items() if k in ("401", "403", "503")}
    return {
        "responses": {
            "200": {"description": "The governed models", "content": {"application/json": {"schema": MODELS_SCHEMA}}},
            **errors,
        }
    }

"""The fake vLLM's deterministic tokenizer, vLLM's error messages, and its response bodies."""

from __future__ import annotations

CREATED = 1_700_000_000


def count_prompt_tokens(body: dict, chat: bool) -> int:
    """One token per whitespace-separated word (the fake's deterministic tokenizer)."""
    if chat:
        total = 0
        for msg in body.get("messages") or []:
            content = msg.get("content") if isinstance(msg, dict) else None
            if isinstance(content, str):
                total += len(content.split())
            elif isinstance(content, list):
                for part in content:
                    if isinstance(part, dict) and isinstance(part.get("text"), str):
                        total += len(part["text"].split())
        return total
    prompt = body.get("prompt")
    if isinstance(prompt, str):
        return len(prompt.split())
    if isinstance(prompt, list) and prompt and all(isinstance(p, int) for p in prompt):
        return len(prompt)
    if isinstance(prompt, list):
        return max((len(p.split()) if isinstance(p, str) else len(p) for p in prompt), default=0)
    return 0


def context_input_message(L: int, n: int) -> str:
    return (
        f"This model's maximum context length is {L} tokens. However, your request has {n} input tokens. "
        f"Please reduce the length of the input messages. (parameter=input_tokens, value={n})"
    )


def context_max_tokens_message(L: int, n: int, m: int) -> str:
    return (
        f"'max_tokens' or 'max_completion_tokens' is too large: {m}. This model's maximum context length is "
        f"{L} tokens and your request has {n} input tokens ({m} > {L} - {n}). (parameter=max_tokens, value={m})"
    )


def integer_error(field: str, value: object) -> str:
    """vLLM's (pydantic's) 400 message for a non-integer token count."""
    return (f"1 validation error:\n  {{'type': 'int_type', 'loc': ('body', '{field}'), "
            f"'msg': 'Input should be a valid integer', 'input': {value!r}}}")


def completion_body(chat: bool, ident: int, model: str, text: str, finish: str, usage: dict) -> dict:
    if chat:
        return {
            "id": f"chatcmpl-{ident}", "object": "chat.completion", "created": CREATED, "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text, "tool_calls": []},
                         "logprobs": None, "finish_reason": finish, "stop_reason": None}],
            "usage": usage,
        }
    return {
        "id": f"cmpl-{ident}", "object": "text_completion", "created": CREATED, "model": model,
        "choices": [{"index": 0, "text": text, "logprobs": None, "finish_reason": finish, "stop_reason": None}],
        "usage": usage,
    }


def stream_events(chat: bool, ident: int, model: str, out: list[str], finish: str, n: int, *,
                  include_usage: bool, continuous: bool) -> list[dict]:
    """The chunks of a streamed answer (chat: a role-only chunk first; usage chunk last when asked)."""
    head = (
        {"id": f"chatcmpl-{ident}", "object": "chat.completion.chunk", "created": CREATED, "model": model}
        if chat
        else {"id": f"cmpl-{ident}", "object": "text_completion", "created": CREATED, "model": model}
    )
    events: list[dict] = []
    if chat:
        events.append({**head, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""},
                                            "logprobs": None, "finish_reason": None}]})
    for i, word in enumerate(out):
        piece = word if i == 0 else " " + word
        choice = ({"index": 0, "delta": {"content": piece}, "logprobs": None, "finish_reason": None}
                  if chat else {"index": 0, "text": piece, "logprobs": None, "finish_reason": None})
        events.append({**head, "choices": [choice]})
    last = ({"index": 0, "delta": {}, "logprobs": None, "finish_reason": finish, "stop_reason": None}
            if chat else {"index": 0, "text": "", "logprobs": None, "finish_reason": finish, "stop_reason": None})
    events.append({**head, "choices": [last]})
    if continuous:
        for k, ev in enumerate(events):
            done = max(0, k - (1 if chat else 0))
            ev["usage"] = {"prompt_tokens": n, "total_tokens": n + done, "completion_tokens": done}
    if include_usage:
        events.append({**head, "choices": [],
                       "usage": {"prompt_tokens": n, "total_tokens": n + len(out), "completion_tokens": len(out)}})
    return events

"""A loopback fake of vLLM's OpenAI-compatible server (aiohttp.web, 127.0.0.1 only).

Faithful to /work/shared/reference/openai-vllm.md §1 and §7: ``/v1/models`` with
``max_model_len``, ``/health`` (200 empty / 503 engine dead), chat and text completions
(streamed and not), the SSE chunk format, the usage chunk under ``stream_options``, vLLM
error bodies (integer ``code``), the unknown-model 404 and both context-length 400s.

Token counting is deterministic: one token per whitespace-separated word of the prompt
(chat: every message's text content, no template overhead). The reply is a fixed script of
words; ``max_tokens`` cuts it with ``finish_reason: "length"``. The context-length messages
carry the live-server suffix `` (parameter=<p>, value=<v>)``.

Fault switches live on ``fake.faults`` and may be changed at run time from the test thread.
``fail_next`` limits a status fault to the next N completion requests (-1 = every request).
``stop()`` closes the port (connection refused); ``start()`` brings it back on the same port.
Every completion request is recorded in ``fake.requests``; ``fake.hits`` counts per path.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

CREATED = 1_700_000_000
STALL_LIMIT_S = 30.0  # a stalled stream never outlives this (or the fixture's stop())


@dataclass
class Faults:
    status: int | None = None  # answer completions with this status (500/502/503/429/...)
    fail_next: int = -1  # how many completion requests the status fault applies to; -1 = all
    body_style: str = "vllm"  # vllm | flat | plain: shape of the error body
    retry_after: str | None = None  # Retry-After header on a status fault
    retry_after_ms: str | None = None  # retry-after-ms header on a status fault
    first_byte_delay_ms: int = 0  # before the response headers (non-stream) / first content chunk
    slow_body_ms: int = 0  # non-stream: headers at once, body after this delay
    stall_after: int | None = None  # stream: after K chunks keep the socket open, send nothing
    cut_after: int | None = None  # stream: after K chunks end the body cleanly, no [DONE]
    reset_after: int | None = None  # stream: after K chunks abort the TCP connection
    inband_error_after: int | None = None  # stream: after K chunks an error event + [DONE]
    malformed_after: int | None = None  # stream: after K chunks one invalid JSON data line
    split_events: bool = False  # stream: write each event in two halves
    health_status: int = 200  # /health status (503 = engine dead)
    models_id: str | None = None  # /v1/models reports this id instead of the served one
    models_max_len: int | None = None  # /v1/models reports this max_model_len instead
    api_key: str | None = None  # when set, /v1/* needs "Authorization: Bearer <key>"


@dataclass
class FakeVLLM:
    model: str = "fake-model"
    max_model_len: int = 4096
    reply: str = "Hello from the fake vLLM server , this is a fixed reply ."
    port: int = 0
    faults: Faults = field(default_factory=Faults)

    def __post_init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.hits: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._ids = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._stopping: asyncio.Event | None = None

    # -- lifecycle ---------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> FakeVLLM:
        if self._thread is not None:
            return self
        ready = threading.Event()
        errors: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                loop.run_until_complete(self._serve_start())
            except BaseException as exc:  # surfaced to the caller of start()
                errors.append(exc)
                ready.set()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self._serve_stop())
            loop.close()

        self._thread = threading.Thread(target=run, name=f"fake-vllm-{self.model}", daemon=True)
        self._thread.start()
        if not ready.wait(10) or errors:
            self._thread = None
            raise RuntimeError(f"fake vLLM did not start: {errors}")
        return self

    def stop(self) -> None:
        """Close the port: new connections are refused until start() is called again."""
        if self._thread is None or self._loop is None:
            return
        self._loop.call_soon_threadsafe(self._stopping.set)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._thread = None

    def reset(self) -> None:
        with self._lock:
            self.faults = Faults()
            self.requests.clear()
            self.hits.clear()

    def __enter__(self) -> FakeVLLM:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def _serve_start(self) -> None:
        self._stopping = asyncio.Event()
        app = web.Application()
        app.router.add_get("/health", self._health)
        app.router.add_get("/v1/models", self._models)
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/v1/completions", self._completions)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]

    async def _serve_stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    # -- helpers ------------------------------------------------------------------------------
    def count(self, path: str = "/v1/chat/completions") -> int:
        with self._lock:
            return self.hits[path]

    def _next_id(self) -> int:
        with self._lock:
            self._ids += 1
            return self._ids

    def _record(self, request: web.Request, body: Any) -> None:
        h = request.headers
        with self._lock:
            self.hits[request.path] += 1
            self.requests.append(
                {
                    "path": request.path,
                    "time": time.time(),
                    "model": body.get("model") if isinstance(body, dict) else None,
                    "body": body,
                    "x-request-id": h.get("x-request-id"),
                    "x-stainless-retry-count": h.get("x-stainless-retry-count"),
                    "traceparent": h.get("traceparent"),
                    "authorization": h.get("authorization"),
                }
            )

    def _take_status_fault(self) -> int | None:
        with self._lock:
            f = self.faults
            if f.status is None or f.fail_next == 0:
                return None
            if f.fail_next > 0:
                f.fail_next -= 1
            return f.status

    @staticmethod
    def _error(status: int, message: str, type_: str, param: str | None, style: str = "vllm", headers=None):
        if style == "plain":
            return web.Response(status=status, text=message, headers=headers)
        err = {"message": message, "type": type_, "param": param, "code": status}
        body = {"object": "error", **err} if style == "flat" else {"error": err}
        return web.json_response(body, status=status, headers=headers)

    def _unauthorized(self, request: web.Request) -> web.Response | None:
        key = self.faults.api_key
        if key and request.headers.get("authorization") != f"Bearer {key}":
            return web.json_response({"error": "Unauthorized"}, status=401)
        return None

    # -- endpoints ----------------------------------------------------------------------------
    async def _health(self, request: web.Request) -> web.Response:
        with self._lock:
            self.hits["/health"] += 1
        return web.Response(status=self.faults.health_status)

    async def _models(self, request: web.Request) -> web.Response:
        with self._lock:
            self.hits["/v1/models"] += 1
        denied = self._unauthorized(request)
        if denied:
            return denied
        f = self.faults
        card = {
            "id": f.models_id or self.model,
            "object": "model",
            "created": CREATED,
            "owned_by": "vllm",
            "root": f"org/{self.model}",
            "parent": None,
            "max_model_len": f.models_max_len or self.max_model_len,
            "permission": [{}],
        }
        return web.json_response({"object": "list", "data": [card]})

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        return await self._complete(request, chat=True)

    async def _completions(self, request: web.Request) -> web.StreamResponse:
        return await self._complete(request, chat=False)

    async def _complete(self, request: web.Request, chat: bool) -> web.StreamResponse:
        try:
            body = await request.json()
        except ValueError:
            body = None
        self._record(request, body if isinstance(body, dict) else {})
        denied = self._unauthorized(request)
        if denied:
            return denied
        f = self.faults
        status = self._take_status_fault()
        if status is not None:
            headers = {}
            if f.retry_after is not None:
                headers["Retry-After"] = f.retry_after
            if f.retry_after_ms is not None:
                headers["retry-after-ms"] = f.retry_after_ms
            msg = "Internal server error" if status >= 500 else "Too many requests"
            kind = "InternalServerError" if status >= 500 else "RateLimitError"
            return self._error(status, msg, kind, None, f.body_style, headers)
        if not isinstance(body, dict):
            return self._error(400, "1 validation error: body is not a JSON object", "Bad Request", "body")
        if body.get("model") != self.model:
            return self._error(
                404, f"The model `{body.get('model')}` does not exist.", "NotFoundError", "model", f.body_style
            )
        field_name = "messages" if chat else "prompt"
        if field_name not in body:
            return self._error(
                400, f"1 validation error:\n  {{'loc': ('body', '{field_name}'), 'msg': 'Field required'}}",
                "Bad Request", f"body.{field_name}",
            )
        n = count_prompt_tokens(body, chat)
        m = body.get("max_completion_tokens") if chat else None
        if m is None:
            m = body.get("max_tokens")
        L = self.max_model_len
        if n >= L:
            return self._error(400, context_input_message(L, n), "BadRequestError", "input_tokens", f.body_style)
        if m is not None and n + int(m) > L:
            return self._error(
                400, context_max_tokens_message(L, n, int(m)), "BadRequestError", "max_tokens", f.body_style
            )
        limit = int(m) if m is not None else L - n
        words = self.reply.split()
        out = words[:limit]
        finish = "length" if len(out) < len(words) else "stop"
        ident = self._next_id()
        if body.get("stream"):
            return await self._stream(request, body, chat, ident, out, finish, n)
        if f.first_byte_delay_ms:
            await asyncio.sleep(f.first_byte_delay_ms / 1000)
        usage = {"prompt_tokens": n, "total_tokens": n + len(out), "completion_tokens": len(out)}
        text = " ".join(out)
        if chat:
            payload = {
                "id": f"chatcmpl-{ident}", "object": "chat.completion", "created": CREATED, "model": self.model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text, "tool_calls": []},
                             "logprobs": None, "finish_reason": finish, "stop_reason": None}],
                "usage": usage,
            }
        else:
            payload = {
                "id": f"cmpl-{ident}", "object": "text_completion", "created": CREATED, "model": self.model,
                "choices": [{"index": 0, "text": text, "logprobs": None, "finish_reason": finish,
                             "stop_reason": None}],
                "usage": usage,
            }
        raw = json.dumps(payload, separators=(",", ":")).encode()
        headers = {"x-request-id": request.headers["x-request-id"]} if "x-request-id" in request.headers else {}
        if f.slow_body_ms:
            resp = web.StreamResponse(headers={"Content-Type": "application/json", **headers})
            resp.content_length = len(raw)
            await resp.prepare(request)
            await asyncio.sleep(f.slow_body_ms / 1000)
            await resp.write(raw)
            await resp.write_eof()
            return resp
        return web.Response(body=raw, content_type="application/json", headers=headers)

    async def _stream(self, request, body, chat, ident, out, finish, n) -> web.StreamResponse:
        try:
            return await self._stream_events(request, body, chat, ident, out, finish, n)
        except ConnectionResetError:  # the client went away mid-stream
            return web.StreamResponse()

    async def _stream_events(self, request, body, chat, ident, out, finish, n) -> web.StreamResponse:
        f = self.faults
        opts = body.get("stream_options")
        include_usage = isinstance(opts, dict) and opts.get("include_usage", True) is not False
        continuous = isinstance(opts, dict) and bool(opts.get("continuous_usage_stats"))
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream; charset=utf-8"})
        if "x-request-id" in request.headers:
            resp.headers["x-request-id"] = request.headers["x-request-id"]
        await resp.prepare(request)
        head = (
            {"id": f"chatcmpl-{ident}", "object": "chat.completion.chunk", "created": CREATED, "model": self.model}
            if chat
            else {"id": f"cmpl-{ident}", "object": "text_completion", "created": CREATED, "model": self.model}
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
        for k, ev in enumerate(events):
            if k == (1 if chat else 0) and f.first_byte_delay_ms:
                await asyncio.sleep(f.first_byte_delay_ms / 1000)
            if f.stall_after is not None and k == f.stall_after:
                try:
                    await asyncio.wait_for(self._stopping.wait(), STALL_LIMIT_S)
                except TimeoutError:
                    pass
                return resp
            if f.cut_after is not None and k == f.cut_after:
                await resp.write_eof()
                return resp
            if f.reset_after is not None and k == f.reset_after:
                request.transport.abort()
                return resp
            if f.inband_error_after is not None and k == f.inband_error_after:
                err = {"error": {"message": "Internal server error", "type": "InternalServerError",
                                 "param": None, "code": 500}}
                await resp.write(b"data: " + json.dumps(err, separators=(",", ":")).encode() + b"\n\n")
                await resp.write(b"data: [DONE]\n\n")
                await resp.write_eof()
                return resp
            if f.malformed_after is not None and k == f.malformed_after:
                await resp.write(b'data: {"id":"broken","choices":[{"delta":\n\n')
                continue
            raw = b"data: " + json.dumps(ev, separators=(",", ":")).encode() + b"\n\n"
            if f.split_events:
                half = len(raw) // 2
                await resp.write(raw[:half])
                await asyncio.sleep(0.001)
                await resp.write(raw[half:])
            else:
                await resp.write(raw)
        await resp.write(b"data: [DONE]\n\n")
        await resp.write_eof()
        return resp


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

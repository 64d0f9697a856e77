"""A loopback fake of vLLM's OpenAI-compatible server (aiohttp.web, 127.0.0.1 only).

Faithful to shared/reference/openai-vllm.md §1 and §7: ``/v1/models`` with
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
Every completion request is recorded in ``fake.requests``; ``fake.hits`` counts per path and
``fake.fault_hits`` per fault that fired (``status:500``, ``stall``, ``health_flap`` ...).
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

from tests.fakes.vllm_faults import Faults
from tests.fakes.vllm_text import (
    CREATED,
    completion_body,
    context_input_message,
    context_max_tokens_message,
    count_prompt_tokens,
    integer_error,
    stream_events,
)

STALL_LIMIT_S = 30.0  # a stalled stream never outlives this (or the fixture's stop())


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
        self.fault_hits: Counter[str] = Counter()
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
            self.fault_hits.clear()

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

    def fired(self, fault: str) -> None:
        with self._lock:
            self.fault_hits[fault] += 1

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
                    "tracestate": h.get("tracestate"),
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
            self.fault_hits[f"status:{f.status}"] += 1
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
            status = self.faults.health_status
            if self.faults.health_flap:
                self.fault_hits["health_flap"] += 1
                status = 503 if self.hits["/health"] % 2 else status
        return web.Response(status=status)

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
        for key in ("max_tokens", "max_completion_tokens"):
            value = body.get(key)
            if value is not None and (type(value) is not int):
                return self._error(400, integer_error(key, value), "Bad Request", f"body.{key}")
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
        payload = completion_body(chat, ident, self.model, " ".join(out), finish, usage)
        raw = json.dumps(payload, separators=(",", ":")).encode()
        echo = f.echo_request_id and "x-request-id" in request.headers
        headers = {"x-request-id": request.headers["x-request-id"]} if echo else {}
        if f.huge_body_bytes:
            self.fired("huge_body")
            resp = web.StreamResponse(headers={"Content-Type": "application/json"})
            resp.enable_chunked_encoding()
            await resp.prepare(request)
            block = b" " * (1 << 20)
            sent = 0
            try:
                while sent < f.huge_body_bytes:
                    await resp.write(block)
                    sent += len(block)
                await resp.write_eof()
            except (ConnectionResetError, RuntimeError):  # the gateway gave up reading
                pass
            return resp
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
        if f.echo_request_id and "x-request-id" in request.headers:
            resp.headers["x-request-id"] = request.headers["x-request-id"]
        await resp.prepare(request)
        events = stream_events(chat, ident, self.model, out, finish, n, include_usage=include_usage,
                               continuous=continuous)
        for k, ev in enumerate(events):
            if k == (1 if chat else 0) and f.first_byte_delay_ms:
                await asyncio.sleep(f.first_byte_delay_ms / 1000)
            elif k > (1 if chat else 0) and f.chunk_delay_ms:
                await asyncio.sleep(f.chunk_delay_ms / 1000)
            if f.stall_after is not None and k == f.stall_after:
                self.fired("stall")
                try:
                    await asyncio.wait_for(self._stopping.wait(), STALL_LIMIT_S)
                except TimeoutError:
                    pass
                return resp
            if f.cut_after is not None and k == f.cut_after:
                self.fired("cut")
                await resp.write_eof()
                return resp
            if f.reset_after is not None and k == f.reset_after:
                self.fired("reset")
                request.transport.abort()
                return resp
            if f.inband_error_after is not None and k == f.inband_error_after:
                self.fired("inband_error")
                err = {"error": {"message": "Internal server error", "type": "InternalServerError",
                                 "param": None, "code": 500}}
                await resp.write(b"data: " + json.dumps(err, separators=(",", ":")).encode() + b"\n\n")
                await resp.write(b"data: [DONE]\n\n")
                await resp.write_eof()
                return resp
            if f.malformed_after is not None and k == f.malformed_after:
                self.fired("malformed")
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

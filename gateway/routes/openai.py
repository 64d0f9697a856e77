"""OpenAI-compatible inference routes: parse -> decide -> act. The logic lives in
gateway.inference (obligations, context check) and gateway.forward (upstream calls)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from gateway import audit
from gateway.auth import Principal, require
from gateway.errors import ClientClosed, GatewayError
from gateway.forward import Call
from gateway.inference import check_context, denial, prompt_words, read_json, upstream_payload, validate
from gateway.openai_models import (
    ChatRequest,
    CompletionRequest,
    completion_openapi,
    extra_fields,
    models_openapi,
)
from governance.decision import Decision, Facts

router = APIRouter(tags=["inference"])


async def record_decision(request: Request, decision: Decision, facts: Facts, outcome: dict) -> None:
    """Called once per decision: a denial before its response; an allowed call when its response
    or stream ends, with outcome {status, result, provider, attempts, latency_ms, usage}: ``status`` is
    the HTTP status (200 for a stream that started), ``result`` how it ended ("ok", "error",
    "client_closed", or a stream's "cut", "timeout", ...)."""
    if decision.allow and outcome.get("provider"):
        request.app.state.telemetry.annotate(request, model=facts.model or "", provider=outcome["provider"])
    await audit.record(request, decision, facts, outcome)


@router.post("/v1/chat/completions", summary="Chat completion (OpenAI-compatible)",
             openapi_extra=completion_openapi(ChatRequest))
async def chat_completions(request: Request, principal: Principal = Depends(require("inference"))) -> Response:
    return await _complete(request, principal, chat=True)


@router.post("/v1/completions", summary="Text completion (OpenAI-compatible)",
             openapi_extra=completion_openapi(CompletionRequest))
async def completions(request: Request, principal: Principal = Depends(require("inference"))) -> Response:
    return await _complete(request, principal, chat=False)


@router.get("/v1/models", summary="The governed models", openapi_extra=models_openapi())
async def list_models(request: Request, principal: Principal = Depends(require("inference"))) -> JSONResponse:
    state = request.app.state
    policy = state.governance.policy
    audit.require_ledger(request)
    facts = Facts(action="inference.models", principal=principal.sub)
    decision = audit.decide(request, facts)
    if not decision.allow:
        await record_decision(request, decision, facts, {"status": "denied"})
        raise denial(decision, policy)
    listed = []
    for model in decision.obligations.get("models", ()):
        binding = policy.provider_for(model)
        if binding is not None and state.upstreams.for_provider(binding.name):
            listed.append((model, binding))
    lens = await asyncio.gather(*(state.forwarder.max_model_len(b.name, b.timeout_ms) for _, b in listed))
    data = [
        {"id": model, "object": "model", "created": 0, "owned_by": binding.name, "max_model_len": n}
        for (model, binding), n in zip(listed, lens, strict=True)
    ]
    await record_decision(request, decision, facts, {"status": 200, "provider": None, "attempts": 0,
                                                     "latency_ms": 0.0, "usage": None})
    return JSONResponse({"object": "list", "data": data}, headers={"x-canonic-decision-id": decision.id})


async def _complete(request: Request, principal: Principal, *, chat: bool) -> Response:
    started = time.perf_counter()
    state = request.app.state
    audit.require_ledger(request)
    obj = await read_json(request, state.settings.max_body_bytes)
    req = validate(ChatRequest if chat else CompletionRequest, obj)
    policy = state.governance.policy
    facts = Facts(action="inference.chat" if chat else "inference.completion", principal=principal.sub,
                  model=req.model, max_tokens=req.requested_tokens(), extra_fields=extra_fields(obj, chat=chat) or None)
    decision = audit.decide(request, facts)
    if not decision.allow:
        await record_decision(request, decision, facts, {"status": "denied"})
        raise denial(decision, policy, routable=bool(state.upstreams.all()))
    primary = policy.providers[decision.obligations["provider"]]
    fallback = policy.providers.get(policy.fallback_provider) if policy.fallback_provider else None
    max_tokens = int(decision.obligations["max_tokens"])
    outcome: dict[str, Any] = {"status": None, "provider": primary.name, "attempts": 0, "latency_ms": None,
                               "usage": None}

    async def finish(status: int, usage: Any = None, result: str = "ok") -> None:
        outcome["status"] = status
        outcome["result"] = result
        outcome["usage"] = usage
        outcome["latency_ms"] = round((time.perf_counter() - started) * 1000, 3)
        await record_decision(request, decision, facts, outcome)

    try:
        limit = await state.forwarder.max_model_len(primary.name, primary.timeout_ms)
        if limit is not None:
            n = prompt_words(obj, chat=chat)
            if facts.max_tokens is None and 1 <= limit - n < max_tokens:
                max_tokens = limit - n  # a default budget shrinks to fit; an explicit one is checked
            check_context(limit, n, max_tokens)
        payload, strip_usage = upstream_payload(obj, chat=chat, max_tokens=max_tokens)
        retries = request.headers.get("x-stainless-retry-count", "0")
        traced = state.telemetry.recording_for(request)
        call = Call(path="/chat/completions" if chat else "/completions", payload=payload, stream=bool(req.stream),
                    chat=chat, primary=primary, fallback=fallback, request_id=request.state.request_id,
                    client_retries=int(retries) if retries.isdigit() else 0, strip_usage=strip_usage,
                    traced=traced, trace_headers=None if traced else state.telemetry.request_headers(request))

        async def stream_end(result: dict[str, Any]) -> None:
            await finish(result["status"], result["usage"], result.get("result", "ok"))

        call.gone = asyncio.Event()
        watcher = asyncio.get_running_loop().create_task(_watch_disconnect(request, call.gone))
        try:
            served = await state.forwarder.send(call, stream_end)
        finally:
            watcher.cancel()
    except GatewayError as err:
        err.headers.setdefault("x-canonic-provider", outcome["provider"])
        err.headers.setdefault("x-canonic-max-tokens", str(max_tokens))
        await finish(err.status, result="client_closed" if isinstance(err, ClientClosed) else "error")
        raise
    outcome["provider"], outcome["attempts"] = served.provider, served.attempts
    # A stream is handed over at its first content event (the first-byte commit point), so this is
    # the time to first token as the client will see it; a whole body's is its latency.
    state.telemetry.annotate(request, ttft_s=time.perf_counter() - started)
    headers = {"x-canonic-decision-id": decision.id, "x-canonic-provider": served.provider,
               "x-canonic-max-tokens": str(max_tokens)}
    if served.stream is not None:
        headers["Cache-Control"] = "no-cache"
        return StreamingResponse(served.stream, headers=headers, media_type=served.content_type)
    await finish(200, served.usage)
    return Response(served.body, headers=headers, media_type=served.content_type)


async def _watch_disconnect(request: Request, gone: asyncio.Event) -> None:
    """Set ``gone`` when the client disconnects (the body is already read, so the next ASGI
    message is the disconnect). Cancelled once the answer is ready to be sent."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            gone.set()
            return

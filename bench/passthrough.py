"""The bare pass-through the inference benchmark compares against: FastAPI + one aiohttp
session, no auth, no policy, no ledger, no telemetry. Run: python bench/passthrough.py PORT UPSTREAM"""

from __future__ import annotations

import sys
from contextlib import asynccontextmanager

import aiohttp
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import Response, StreamingResponse


def build(upstream: str) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI):
        app.state.session = aiohttp.ClientSession()
        yield
        await app.state.session.close()

    app = FastAPI(lifespan=lifespan)

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Response:
        body = await request.body()
        resp = await app.state.session.post(
            upstream + "/chat/completions", data=body, headers={"content-type": "application/json"}
        )
        if resp.headers.get("content-type", "").startswith("text/event-stream"):
            async def relay():
                async for chunk in resp.content.iter_any():
                    yield chunk
                resp.release()

            return StreamingResponse(relay(), media_type="text/event-stream")
        data = await resp.read()
        return Response(data, status_code=resp.status, media_type="application/json")

    return app


if __name__ == "__main__":
    uvicorn.run(build(sys.argv[2]), host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")

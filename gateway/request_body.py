"""Reading a request body with a size limit: refused (413) from its Content-Length before any
byte is read, or as soon as the streamed bytes pass the limit, so an oversized body is never
held in memory whole."""

from __future__ import annotations

from starlette.requests import Request

from gateway.errors import PayloadTooLarge


async def read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"request body exceeds the {limit}-byte limit", code="body_too_large")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"request body exceeds the {limit}-byte limit", code="body_too_large")
        chunks.append(chunk)
    return b"".join(chunks)

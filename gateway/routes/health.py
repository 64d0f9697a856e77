"""Liveness and readiness. No token needed."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="Liveness: the process serves HTTP")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", summary="Readiness: governance compiled cleanly and dependencies are up")
async def readyz(request: Request) -> JSONResponse:
    checks = readiness(request.app.state)
    ready = all(c["ok"] for c in checks.values())
    return JSONResponse({"ready": ready, "checks": checks}, status_code=200 if ready else 503)


def readiness(state) -> dict[str, dict]:
    """Each collaborator that can make the gateway unready reports ``{ok, detail}``."""
    checks: dict[str, dict] = {}
    gov = getattr(state, "governance", None)
    if gov is None:
        checks["governance"] = {"ok": False, "detail": "governance not loaded"}
    else:
        checks["governance"] = gov.readiness()
    for name in ("ledger", "upstreams", "compute"):
        part = getattr(state, name, None)
        if part is not None and hasattr(part, "readiness"):
            checks[name] = part.readiness()
    return checks

"""``GET /governance``: the compiled chain, revision, capabilities, bindings (presence and type,
never values) and the last validation summary. Needs a token with ``governance:read``."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from gateway import audit
from gateway.auth import Principal, require
from governance.decision import Facts

router = APIRouter(tags=["governance"])


@router.get("/governance", summary="The compiled governance chain and policy revision")
async def governance(request: Request, principal: Principal = Depends(require("governance:read"))) -> JSONResponse:
    audit.require_ledger(request)
    facts = Facts(action="governance.read", principal=principal.sub)
    decision = audit.decide(request, facts)
    await audit.record(request, decision, facts, {"status": 200})
    return JSONResponse(request.app.state.governance.summary(), headers={"x-canonic-decision-id": decision.id})

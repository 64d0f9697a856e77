"""``GET /governance``: the compiled chain, revision, capabilities, bindings (presence and type,
never values) and the last validation summary. Needs a token with ``governance:read``."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request

from gateway.auth import Principal, require

router = APIRouter(tags=["governance"])


@router.get("/governance", summary="The compiled governance chain and policy revision")
async def governance(request: Request, principal: Principal = Depends(require("governance:read"))) -> dict:
    return request.app.state.governance.summary()

"""Compute REST routes: parse -> ComputeService (decide, act, record) -> the seed's JSON."""

from __future__ import annotations

import logging
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from gateway.auth import Principal, require
from gateway.errors import BadRequest, ServiceUnavailable
from gateway.openai_models import ERROR_SCHEMA

router = APIRouter(tags=["compute"])
log = logging.getLogger("canonic.compute")

_ERR = {"content": {"application/json": {"schema": ERROR_SCHEMA}}}
_DESCRIPTIONS = {
    400: "Invalid request (OpenAI error body; `param` names the field)",
    401: "Missing, invalid or expired bearer token",
    403: "Denied by policy (the rule is named as FILE:L<line>) or missing the compute scope",
    404: "Unknown instance",
    409: "Refused by the provider (bad spec, terminated instance, spinup in progress)",
    502: "The provider failed",
    503: "Provider unavailable (with the install hint) or decision ledger unavailable",
    504: "Spinup or health gate timed out; what was created was destroyed",
}


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {c: {"description": _DESCRIPTIONS[c], **_ERR} for c in codes}


InstanceId = Annotated[str, Path(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:-]+$",
                                 description="The instance id")]


class SpinupRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    provider: str = Field(min_length=1, max_length=64, description="Compute provider, e.g. `local`")
    gpu: str = Field(min_length=1, max_length=128, description="GPU type (`cpu` for the local provider)")
    disk: float = Field(gt=0, le=1_000_000, description="Disk in GB")
    template: str = Field(min_length=1, max_length=256, description="Template, image or model name")
    budget: float | None = Field(default=None, gt=0, le=1_000_000,
                                 description="USD/h cap; tightens the policy's cap, never loosens it")


class InstanceOut(BaseModel):
    """Exactly the seed's spinup JSON. ``ssh_host``/``ssh_port`` are null where the provider has no SSH."""

    instance_id: str
    provider: str
    gpu: str
    ssh_host: str | None
    ssh_port: int | None
    cost_per_hour: float
    status: str
    started_at: str | None


class OfferOut(BaseModel):
    provider: str
    offer_id: str | None
    gpu: str
    cost_per_hour: float
    template: str | None
    disk_gb: float | None


class TeardownOut(BaseModel):
    instance_id: str
    status: str
    billing_confirmed: bool
    already_terminated: bool
    warning: str | None


class SSHOut(BaseModel):
    host: str
    port: int
    user: str
    key_path: str | None


def _service(request: Request):
    service = getattr(request.app.state, "compute", None)
    if service is None:
        raise ServiceUnavailable("compute is not configured on this gateway", code="compute_unavailable")
    return service


def _rid(request: Request) -> str | None:
    return getattr(request.state, "request_id", None)


@router.get("/v1/compute/offers", summary="Offers of a compute provider", response_model=list[OfferOut],
            responses=_errors(400, 401, 403, 503))
async def offers(request: Request, provider: str = Query(min_length=1, max_length=64),
                 principal: Principal = Depends(require("compute:read"))) -> list[dict[str, Any]]:
    found = await _service(request).offers(principal=principal.sub, provider=provider, request_id=_rid(request))
    return [o.to_json() for o in found]


@router.post("/v1/compute/instances", summary="Provision an instance (idempotent per gpu/disk/template)",
             status_code=202, response_model=InstanceOut,
             responses={202: {"description": "The instance, RUNNING and health-gated"},
                        **_errors(400, 401, 403, 409, 502, 503, 504)})
async def spinup(body: SpinupRequest, request: Request,
                 principal: Principal = Depends(require("compute:write"))) -> JSONResponse:
    instance = await _service(request).spinup(
        principal=principal.sub, provider=body.provider, gpu=body.gpu, disk_gb=body.disk, template=body.template,
        budget=body.budget, progress=log.info, request_id=_rid(request))
    return JSONResponse(instance.to_json(), status_code=202)


@router.get("/v1/compute/instances", summary="Active instances (an empty list when there are none)",
            response_model=list[InstanceOut], responses=_errors(400, 401, 403, 503))
async def list_instances(request: Request, provider: str | None = Query(default=None, min_length=1, max_length=64),
                         principal: Principal = Depends(require("compute:read"))) -> list[dict[str, Any]]:
    found = await _service(request).list(principal=principal.sub, provider=provider, request_id=_rid(request))
    return [i.to_json() for i in found]


@router.get("/v1/compute/instances/{instance_id}", summary="One instance", response_model=InstanceOut,
            responses=_errors(400, 401, 403, 404, 503))
async def get_instance(request: Request, instance_id: InstanceId,
                       principal: Principal = Depends(require("compute:read"))) -> dict[str, Any]:
    found = await _service(request).get(principal=principal.sub, instance_id=instance_id, request_id=_rid(request))
    return found.to_json()


@router.get("/v1/compute/instances/{instance_id}/ssh", summary="SSH connection details", response_model=SSHOut,
            responses=_errors(400, 401, 403, 404, 409, 503))
async def ssh_info(request: Request, instance_id: InstanceId,
                   principal: Principal = Depends(require("compute:read"))) -> dict[str, Any]:
    return await _service(request).ssh_info(principal=principal.sub, instance_id=instance_id,
                                            request_id=_rid(request))


@router.delete("/v1/compute/instances/{instance_id}", summary="Tear an instance down (idempotent)",
               response_model=TeardownOut, responses=_errors(400, 401, 403, 404, 502, 503))
async def teardown(request: Request, instance_id: InstanceId,
                   principal: Principal = Depends(require("compute:write"))) -> dict[str, Any]:
    return await _service(request).teardown(principal=principal.sub, instance_id=instance_id, progress=log.info,
                                            request_id=_rid(request))


@router.delete("/v1/compute/instances", summary="Tear down every instance (requires confirm=true)",
               response_model=list[TeardownOut], responses=_errors(400, 401, 403, 502, 503))
async def teardown_all(request: Request, confirm: bool = Query(default=False),
                       provider: str | None = Query(default=None, min_length=1, max_length=64),
                       principal: Principal = Depends(require("compute:write"))) -> list[dict[str, Any]]:
    if not confirm:
        raise BadRequest("teardown-all destroys every instance; repeat with confirm=true", param="confirm",
                         code="confirmation_required")
    return await _service(request).teardown_all(principal=principal.sub, provider=provider, progress=log.info,
                                                request_id=_rid(request))

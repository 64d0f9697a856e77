"""Prometheus exposition of the gateway's own registry (``app.state.telemetry.metrics.registry``).
No token needed, like the health probes; it carries counts and labels, never secrets or content."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from gateway.errors import ServiceUnavailable

router = APIRouter(tags=["health"])


@router.get(
    "/metrics",
    summary="Prometheus metrics of this gateway process",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text exposition"}},
)
async def metrics(request: Request) -> Response:
    telemetry = getattr(request.app.state, "telemetry", None)
    if telemetry is None:
        raise ServiceUnavailable("telemetry is not initialised yet")
    return Response(generate_latest(telemetry.metrics.registry), media_type=CONTENT_TYPE_LATEST)

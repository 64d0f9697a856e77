"""create_app(settings) -> FastAPI. The lifespan builds every collaborator once and stores it on
``app.state``; routes read them from there. No module-level state."""

from __future__ import annotations

import gc
import inspect
from contextlib import asynccontextmanager

from fastapi import FastAPI

from gateway.auth import Verifier
from gateway.errors import install_error_handlers
from gateway.middleware import RequestIdMiddleware
from gateway.routes import compute, health, metrics, openai
from gateway.routes import governance as governance_routes
from gateway.routes import validate as validate_routes
from gateway.settings import Settings
from gateway.telemetry import Telemetry, TelemetryMiddleware


def _no_native_telemetry() -> dict:
    """Newer FastAPI releases carry their own OpenTelemetry instrumentation; ours (gateway.telemetry)
    owns the spans and metrics, so FastAPI's is switched off where it exists."""
    if "telemetry" in inspect.signature(FastAPI.__init__).parameters:
        return {"telemetry": {"tracing": False, "metrics": False, "logs": False}}
    return {}


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        state = app.state
        state.settings = settings
        # -- telemetry first (so everything after it can record), shut down last --
        state.telemetry = Telemetry(settings)
        state.verifier = Verifier(settings)
        # -- governance (compile the chain; /readyz reflects the result) --
        from gateway.governance_state import load_governance

        state.governance = load_governance(settings)
        # -- upstream registry + forwarder (one aiohttp session per app, closed on shutdown) --
        from gateway.forward import Forwarder
        from gateway.upstreams import UpstreamRegistry

        state.upstreams = UpstreamRegistry(state.governance.policy)
        state.forwarder = Forwarder(state.upstreams, telemetry=state.telemetry)
        await state.forwarder.start()
        # -- decision ledger (unavailable -> governed actions answer 503 until it recovers) --
        from gateway.ledger import Ledger

        state.ledger = Ledger(settings)
        await state.ledger.start()
        state.ledger.register_metrics(state.telemetry.metrics)  # queue depth, drops, failures, incidents
        # -- compute (governed spinup/teardown; the embedded local model starts in the background) --
        from gateway.compute import ComputeService

        state.compute = ComputeService(settings, state.governance.policy, state.upstreams, state.ledger,
                                       state.telemetry)
        await state.compute.start()
        # Everything built so far lives as long as the app: move it out of the collector's sight, so
        # full collections on the request path only walk what requests allocate.
        gc.collect()
        gc.freeze()
        gc_thresholds = gc.get_threshold()
        if settings.gc_gen0_threshold:
            gc.set_threshold(settings.gc_gen0_threshold, *gc_thresholds[1:])
        try:
            yield
        finally:
            gc.set_threshold(*gc_thresholds)
            gc.unfreeze()
            await state.compute.stop()  # tears down the embedded instance: no process left behind
            await state.forwarder.close()
            await state.ledger.stop()
            state.telemetry.shutdown()

    app = FastAPI(
        title="canonic-gateway",
        version="0.1.0",
        description="A governed gateway for LLM inference and GPU compute.",
        lifespan=lifespan,
        **_no_native_telemetry(),
    )
    install_error_handlers(app)
    app.add_middleware(RequestIdMiddleware)
    app.add_middleware(TelemetryMiddleware)  # outermost: its SERVER span covers everything
    app.include_router(health.router)
    app.include_router(validate_routes.router)
    app.include_router(governance_routes.router)
    app.include_router(openai.router)
    app.include_router(compute.router)
    app.include_router(metrics.router)
    return app

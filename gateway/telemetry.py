"""Telemetry: OpenTelemetry traces configured once from the standard ``OTEL_*`` variables, and the
Prometheus registry behind ``GET /metrics``, which is also pushed as OTLP metrics
(``gateway/telemetry_push.py``). Built once in the lifespan as ``app.state.telemetry =
Telemetry(settings)``; ``shutdown()`` flushes within ``telemetry_flush_timeout_s``. No globals: the
tracer provider and the metrics push belong to this object (the global OTel providers are never set).

How other modules use it (``tel = request.app.state.telemetry``):

  Spans. ``TelemetryMiddleware`` opens one SERVER span per HTTP request (child of an incoming
  ``traceparent``) and makes it the current span, so a child is just::

      with tel.span("policy.decide", {ATTR_DECISION_ID: d.id, ATTR_DECISION_ALLOW: d.allow}) as span:
          ...                                   # span is the SDK span; set_attribute() on it freely
      with tel.span(f"chat {model}", {GEN_AI_OPERATION_NAME: "chat"}, kind=SpanKind.CLIENT) as span:
          headers = tel.inject({})             # traceparent of this CLIENT span -> upstream request
          span.set_attribute(GEN_AI_USAGE_OUTPUT_TOKENS, n)

  The SERVER span and its context are on ``request.state.otel_span`` / ``request.state.otel_context``
  (pass ``context=`` to ``tel.span`` when working outside the request's task). Most requests are
  not sampled, so the request path asks through
  shortcuts that skip the context API: ``tel.recording_for(request)`` (make child spans or not),
  ``tel.request_headers(request)`` (traceparent for an upstream call without a child span) and
  ``tel.request_trace_id(request)`` (the ledger's trace id); ``tel.trace_id()`` gives the current
  trace id anywhere else. Put small per-step facts on one span (attributes or
  ``span.add_event``) rather than opening many children: each span costs CPU (reference/telemetry-cost.md).
  Prompt/completion text only via ``tel.add_content(span, key, text)``, which is a no-op unless
  ``settings.telemetry_capture_content``.

  Metrics. The middleware records request duration by route/status for every request; a route adds
  the model, provider and time to first token with ``tel.annotate(request, model=, provider=, ttft_s=)``.
  Everything else is explicit: ``tel.metrics.record_tokens(model, provider, input_tokens, output_tokens)``,
  ``record_decision(action, allow, rule)``, ``record_retry(provider)``,
  ``record_fallback(from_provider, to_provider)``, ``set_circuit(upstream, "closed"|"half_open"|"open")``,
  ``set_instances(provider, state, n)``, ``set_cost(provider, dollars_per_hour)``, and callbacks
  ``observe("ledger_queue_depth", fn)`` / ``observe("ledger_drops", fn, kind="counter")``.

``settings.telemetry_enabled = False`` makes everything a no-op (no spans, no export, metrics frozen).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.settings import Settings
from gateway.telemetry_config import (
    CountingMetricExporter,
    CountingSpanExporter,
    OtelConfig,
    load_config,
    metric_exporter,
    redact_url,
    span_exporter,
)
from gateway.telemetry_metrics import Metrics
from gateway.telemetry_push import MetricPush

__all__ = ["SpanKind", "Telemetry", "TelemetryMiddleware"]

log = logging.getLogger(__name__)

# GenAI semantic conventions (inference spans)
GEN_AI_OPERATION_NAME = "gen_ai.operation.name"
GEN_AI_PROVIDER_NAME = "gen_ai.provider.name"
GEN_AI_REQUEST_MODEL = "gen_ai.request.model"
GEN_AI_REQUEST_MAX_TOKENS = "gen_ai.request.max_tokens"
GEN_AI_RESPONSE_MODEL = "gen_ai.response.model"
GEN_AI_RESPONSE_FINISH_REASONS = "gen_ai.response.finish_reasons"
GEN_AI_USAGE_INPUT_TOKENS = "gen_ai.usage.input_tokens"
GEN_AI_USAGE_OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
SERVER_ADDRESS = "server.address"
SERVER_PORT = "server.port"
ERROR_TYPE = "error.type"
# HTTP semantic conventions (the SERVER span)
HTTP_REQUEST_METHOD = "http.request.method"
HTTP_ROUTE = "http.route"
HTTP_RESPONSE_STATUS_CODE = "http.response.status_code"
URL_PATH = "url.path"
URL_SCHEME = "url.scheme"
# The gateway's own attributes
ATTR_REQUEST_ID = "canonic.request.id"
ATTR_PRINCIPAL = "canonic.principal"
ATTR_DECISION_ID = "canonic.decision.id"
ATTR_DECISION_ALLOW = "canonic.decision.allow"
ATTR_RULE_IDS = "canonic.decision.rule_ids"
ATTR_POLICY_REVISION = "canonic.policy.revision"
ATTR_ATTEMPT = "canonic.upstream.attempt"
ATTR_PROVIDER = "canonic.upstream.provider"
ATTR_CIRCUIT_STATE = "canonic.upstream.circuit_state"
ATTR_INSTANCE_ID = "canonic.compute.instance_id"
GEN_AI_INPUT_MESSAGES = "gen_ai.input.messages"  # only with telemetry_capture_content
GEN_AI_OUTPUT_MESSAGES = "gen_ai.output.messages"

UNMATCHED_ROUTE = "(unmatched)"


class Telemetry:
    """Owns the TracerProvider, the Prometheus registry and its OTLP push of one gateway process."""

    def __init__(self, settings: Settings) -> None:
        self.enabled = settings.telemetry_enabled
        self.capture_content = settings.telemetry_capture_content
        self.flush_timeout_s = settings.telemetry_flush_timeout_s
        self.propagator = TraceContextTextMapPropagator()
        self._tracer_provider: TracerProvider | None = None
        self._metric_push: MetricPush | None = None
        self.config: OtelConfig | None = None
        if not self.enabled:
            self.tracer: trace.Tracer = trace.NoOpTracer()
            self.metrics = Metrics(enabled=False)
            return
        cfg = self.config = load_config(settings.binding_values())
        if cfg.sdk_disabled:
            self.tracer = trace.NoOpTracer()
            self.metrics = Metrics()
            return
        resource = Resource(
            {
                "telemetry.sdk.language": "python",
                "telemetry.sdk.name": "opentelemetry",
                **cfg.resource_attributes,
                "service.name": cfg.service_name,
            }
        )
        self.metrics = Metrics()
        self._tracer_provider = TracerProvider(resource=resource, sampler=cfg.sampler())
        if cfg.traces is not None:
            exporter = CountingSpanExporter(
                span_exporter(cfg.traces), lambda: self.metrics.record_exporter_failure("traces")
            )
            self._tracer_provider.add_span_processor(
                BatchSpanProcessor(
                    exporter,
                    max_queue_size=cfg.bsp_max_queue_size,
                    schedule_delay_millis=cfg.bsp_schedule_delay_ms,
                    max_export_batch_size=min(cfg.bsp_max_batch_size, cfg.bsp_max_queue_size),
                    export_timeout_millis=cfg.bsp_export_timeout_ms,
                )
            )
        self.tracer = self._tracer_provider.get_tracer("canonic-gateway")
        if cfg.metrics is not None:  # last: its thread starts at once, after everything that may raise
            exporter = CountingMetricExporter(
                metric_exporter(cfg.metrics), lambda: self.metrics.record_exporter_failure("metrics")
            )
            self._metric_push = MetricPush(
                self.metrics.registry,
                exporter,
                resource,
                interval_s=cfg.metric_interval_ms / 1000,
                timeout_s=cfg.metric_timeout_ms / 1000,
            )
        log.info(
            "telemetry: traces %s, metrics %s, sampler %s",
            f"{cfg.traces.protocol} -> {redact_url(cfg.traces.endpoint)}" if cfg.traces else "not exported",
            f"{cfg.metrics.protocol} -> {redact_url(cfg.metrics.endpoint)}" if cfg.metrics else "not exported",
            cfg.sampler_name,
        )

    @property
    def tracing(self) -> bool:
        """True when spans are recorded (the middleware skips all span work otherwise)."""
        return self._tracer_provider is not None

    def recording(self, context: otel_context.Context | None = None) -> bool:
        """True when a span started now (under the current span or ``context``) would be recorded.
        False when tracing is off, or when the parent is a span of this process that was not
        sampled: every supported sampler decides a local child like its parent (parent-based ones
        by the parent's flag, ratio ones by the shared trace id), so the child need not be made."""
        if self._tracer_provider is None:
            return False
        parent = trace.get_current_span(context)
        if parent.is_recording():
            return True
        ctx = parent.get_span_context()
        return not ctx.is_valid or ctx.is_remote

    # -- per-request shortcuts (most requests are not sampled; these skip the context API) ----
    def recording_for(self, request) -> bool:
        """``recording()`` for the request's own task, answered by the SERVER span the middleware
        opened (children of a span are recorded exactly when it is), without a context lookup."""
        if self._tracer_provider is None:
            return False
        span = request.scope.get("state", {}).get("otel_span")
        return self.recording() if span is None else span.is_recording()

    def request_headers(self, request) -> dict[str, str] | None:
        """The W3C trace headers naming the request's SERVER span, for an upstream call made
        without a child span (an unsampled request: flags ``00``, so the upstream does not start a
        trace of its own). Formatted from the span the middleware holds, as the propagator would;
        None when there is no such span (then use ``inject``)."""
        span = request.scope.get("state", {}).get("otel_span")
        if span is None:
            return None
        ctx = span.get_span_context()
        if not ctx.is_valid:
            return None
        headers = {"traceparent": f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{ctx.trace_flags:02x}"}
        if ctx.trace_state:
            headers["tracestate"] = ctx.trace_state.to_header()
        return headers

    def request_trace_id(self, request) -> str | None:
        """The hex trace id of the request's SERVER span (for the ledger), or None."""
        span = request.scope.get("state", {}).get("otel_span")
        if span is None:
            return None
        ctx = span.get_span_context()
        return format(ctx.trace_id, "032x") if ctx.is_valid else None

    # -- spans -------------------------------------------------------------------------------
    @contextmanager
    def span(
        self,
        name: str,
        attributes: Mapping[str, object] | None = None,
        *,
        kind: SpanKind = SpanKind.INTERNAL,
        context: otel_context.Context | None = None,
    ) -> Iterator[trace.Span]:
        """A child of the current span (or of ``context``), current inside the block. An exception
        escaping the block is recorded, sets ERROR status and ``error.type``, and is re-raised.
        Under an unsampled parent no span is made: the block gets that non-recording parent."""
        if not self.recording(context):
            yield trace.get_current_span(context)
            return
        with self.tracer.start_as_current_span(
            name, context=context, kind=kind, attributes=attributes, set_status_on_exception=True
        ) as span:
            try:
                yield span
            except BaseException as exc:
                span.set_attribute(ERROR_TYPE, type(exc).__qualname__)
                raise

    def inject(self, headers: dict[str, str], context: otel_context.Context | None = None) -> dict[str, str]:
        """Add ``traceparent`` (and ``tracestate``) for the current span to ``headers``; returns them."""
        if self.tracing:
            self.propagator.inject(headers, context=context)
        return headers

    def trace_id(self, context: otel_context.Context | None = None) -> str | None:
        """The hex trace id of the current (or given) span, or None when there is none."""
        ctx = trace.get_current_span(context).get_span_context()
        return format(ctx.trace_id, "032x") if ctx.is_valid else None

    def add_content(self, span: trace.Span, key: str, text: str) -> None:
        """Attach prompt/completion text to a span only when content capture is opted into."""
        if self.capture_content:
            span.set_attribute(key, text)

    @staticmethod
    def annotate(request_or_scope, **labels) -> None:
        """Give the request's metrics their model, provider and ``ttft_s`` (read by the middleware)."""
        scope = request_or_scope if isinstance(request_or_scope, dict) else request_or_scope.scope
        scope.setdefault("state", {}).setdefault("telemetry_labels", {}).update(labels)

    # -- lifecycle ---------------------------------------------------------------------------
    def readiness(self) -> dict:
        return {"ok": True, "detail": "enabled" if self.enabled else "disabled"}

    def shutdown(self) -> None:
        """Flush pending spans and metrics and stop exporting, within ``flush_timeout_s`` in all:
        with the collector unreachable the exporters would retry for their full timeouts, and a
        stopping gateway should not hang on that. What is still unsent then is given up (logged)."""
        flushes = []
        for what, provider in (("spans", self._tracer_provider), ("metrics", self._metric_push)):
            if provider is None:
                continue
            thread = threading.Thread(target=_quiet_shutdown, args=(provider,), name=f"canonic-flush-{what}",
                                      daemon=True)
            thread.start()
            flushes.append((what, thread))
        deadline = time.monotonic() + self.flush_timeout_s
        for what, thread in flushes:
            thread.join(max(0.0, deadline - time.monotonic()))
            if thread.is_alive() and self.flush_timeout_s > 0:
                endpoint = getattr(self.config, "traces" if what == "spans" else "metrics", None)
                log.warning("telemetry: gave up flushing %s to %s after %.0f s; unsent %s are lost", what,
                            redact_url(endpoint.endpoint) if endpoint else "the collector", self.flush_timeout_s, what)
        self._tracer_provider = None
        self._metric_push = None
        self.tracer = trace.NoOpTracer()


def _quiet_shutdown(provider) -> None:
    try:
        provider.shutdown()
    except Exception as exc:  # shutting down must never raise into the lifespan
        log.warning("telemetry shutdown: %s", type(exc).__name__)


def _headers_carrier(scope: Scope) -> dict[str, str]:
    carrier: dict[str, str] = {}
    for name, value in scope.get("headers", ()):
        if name == b"traceparent" or name == b"tracestate":
            carrier[name.decode()] = value.decode("latin-1")
    return carrier


class TelemetryMiddleware:
    """Pure ASGI: one SERVER span per HTTP request and the request-duration metric. Finds the
    Telemetry object lazily on ``scope["app"].state`` so it works before the lifespan has run."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        tel = getattr(scope["app"].state, "telemetry", None) if scope["type"] == "http" else None
        if tel is None or not tel.enabled:
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = [500]
        method = scope.get("method", "GET")
        state = scope.setdefault("state", {})
        span = None
        token = None
        if tel.tracing:
            carrier = _headers_carrier(scope)
            parent = tel.propagator.extract(carrier) if carrier else None
            span = tel.tracer.start_span(method, context=parent, kind=SpanKind.SERVER)
            if span.is_recording():  # the built-in samplers do not read attributes: set them only when kept
                span.set_attributes({
                    HTTP_REQUEST_METHOD: method,
                    URL_PATH: scope.get("path", ""),
                    URL_SCHEME: scope.get("scheme", "http"),
                })
            ctx = trace.set_span_in_context(span, parent)
            state["otel_span"] = span
            state["otel_context"] = ctx
            token = otel_context.attach(ctx)

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        error: BaseException | None = None
        try:
            await self.app(scope, receive, send_wrapper)
        except BaseException as exc:
            error = exc
            raise
        finally:
            route_obj = scope.get("route")
            route = getattr(route_obj, "path", None) or UNMATCHED_ROUTE
            code = status[0]
            if span is not None:
                otel_context.detach(token)
            if span is not None and span.is_recording():
                if route_obj is not None:
                    span.update_name(f"{method} {route}")
                    span.set_attribute(HTTP_ROUTE, route)
                span.set_attribute(HTTP_RESPONSE_STATUS_CODE, code)
                if "request_id" in state:  # set by RequestIdMiddleware, inside this one
                    span.set_attribute(ATTR_REQUEST_ID, state["request_id"])
                if error is not None:
                    span.set_attribute(ERROR_TYPE, type(error).__qualname__)
                    span.set_status(Status(StatusCode.ERROR, type(error).__qualname__))
                elif code >= 500:
                    span.set_attribute(ERROR_TYPE, str(code))
                    span.set_status(Status(StatusCode.ERROR))
                span.end()
            labels = state.get("telemetry_labels") or {}
            tel.metrics.record_request(
                route,
                str(labels.get("model", "")),
                str(labels.get("provider", "")),
                code,
                time.perf_counter() - start,
                labels.get("ttft_s"),
            )

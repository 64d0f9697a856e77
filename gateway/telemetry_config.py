"""The standard ``OTEL_*`` variables -> a typed, validated ``OtelConfig``; and the exporters and
sampler built from it. Values come from the environment snapshot handed in (``settings.bindings_env``),
never from ``os.environ`` directly, so tests and embedders can pass their own.

Supported (per the OpenTelemetry SDK environment-variable specification):
  OTEL_SDK_DISABLED, OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES,
  OTEL_TRACES_EXPORTER / OTEL_METRICS_EXPORTER (``otlp`` or ``none``),
  OTEL_EXPORTER_OTLP_[TRACES_|METRICS_]ENDPOINT, _PROTOCOL (``http/protobuf`` or ``grpc``),
  _HEADERS (``k=v,k2=v2``, URL-encoded values), _TIMEOUT (milliseconds), _COMPRESSION (``gzip``/``none``),
  OTEL_TRACES_SAMPLER (+ OTEL_TRACES_SAMPLER_ARG), OTEL_METRIC_EXPORT_INTERVAL / _TIMEOUT (ms),
  OTEL_BSP_SCHEDULE_DELAY, OTEL_BSP_EXPORT_TIMEOUT (ms), OTEL_BSP_MAX_QUEUE_SIZE, OTEL_BSP_MAX_EXPORT_BATCH_SIZE.

No endpoint means no export (not an error). A malformed value raises ``TelemetryConfigError`` naming
the variable; header values and URL userinfo (often credentials) never appear in messages or logs
(``redact_url``). ``check_config(settings)`` runs the same validation for ``canonic serve`` to call
before starting the server (one line, exit 2, instead of a lifespan traceback).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

from opentelemetry.sdk.metrics.export import MetricExporter, MetricExportResult
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    ParentBased,
    Sampler,
    TraceIdRatioBased,
)

PROTOCOLS = ("http/protobuf", "grpc")
SAMPLERS = (
    "always_on",
    "always_off",
    "traceidratio",
    "parentbased_always_on",
    "parentbased_always_off",
    "parentbased_traceidratio",
)
# Production default (see reference/telemetry-cost.md): parent-based ratio sampling, one root
# request in a hundred. A traced request records four spans or more (SERVER, auth, policy.decide,
# one CLIENT per attempt) and costs about 0.5-0.8 ms of CPU to record and export on this 2-core
# machine, so at 1 in 10 tracing alone took 15-20% of the gateway's throughput and at 1 in 100 it
# takes about 5% (bench/bench_inference.py, "telemetry cost"). A sampled incoming traceparent is
# always honoured, and every request still lands in the metrics and the decision ledger.
# OTEL_TRACES_SAMPLER / OTEL_TRACES_SAMPLER_ARG override this.
DEFAULT_SAMPLER = "parentbased_traceidratio"
DEFAULT_SAMPLE_RATIO = 0.01
DEFAULT_SERVICE_NAME = "canonic-gateway"


class TelemetryConfigError(ValueError):
    """An OTEL_* variable holds a value the gateway cannot use."""


def redact_url(url: str) -> str:
    """``url`` without ``user:password@`` (and without query string, where tokens hide)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable URL>"
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def check_config(settings: Any) -> OtelConfig | None:
    """Validate the OTEL_* configuration the gateway would start with (None when telemetry is
    disabled). Raises TelemetryConfigError with a one-line message naming the variable."""
    if not settings.telemetry_enabled:
        return None
    return load_config(settings.binding_values())


@dataclass(frozen=True)
class SignalConfig:
    """Where and how one signal (traces or metrics) is exported."""

    endpoint: str
    protocol: str
    headers: dict[str, str] = field(repr=False)
    timeout_s: float
    compression: str  # "gzip" or "none"


@dataclass(frozen=True)
class OtelConfig:
    service_name: str
    resource_attributes: dict[str, str]
    traces: SignalConfig | None
    metrics: SignalConfig | None
    sampler_name: str
    sampler_arg: float
    metric_interval_ms: float
    metric_timeout_ms: float
    bsp_schedule_delay_ms: float
    bsp_export_timeout_ms: float
    bsp_max_queue_size: int
    bsp_max_batch_size: int
    sdk_disabled: bool

    def sampler(self) -> Sampler:
        name, arg = self.sampler_name, self.sampler_arg
        base = {
            "always_on": ALWAYS_ON,
            "always_off": ALWAYS_OFF,
            "traceidratio": TraceIdRatioBased(arg),
        }
        if name.startswith("parentbased_"):
            return ParentBased(base[name.removeprefix("parentbased_")])
        return base[name]


def _get(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name)
    if value is None:
        return None
    value = value.strip()
    return value or None


def _number(env: Mapping[str, str], name: str, default: float, *, minimum: float = 0.0) -> float:
    raw = _get(env, name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise TelemetryConfigError(f"{name} must be a number, got {raw!r}") from None
    if not value >= minimum:
        raise TelemetryConfigError(f"{name} must be >= {minimum:g}, got {raw!r}")
    return value


def parse_headers(raw: str, name: str) -> dict[str, str]:
    """``k=v,k2=v2`` (values URL-encoded) -> dict. The message for a bad entry names its position,
    never its value."""
    headers: dict[str, str] = {}
    for position, item in enumerate(raw.split(","), start=1):
        if not item.strip():
            continue
        key, sep, value = item.partition("=")
        key = unquote(key).strip().lower()
        if not sep or not key or any(c in key for c in " \t\r\n:"):
            raise TelemetryConfigError(f"{name}: entry {position} is not of the form key=value")
        headers[key] = unquote(value).strip()
    return headers


def parse_resource(raw: str | None) -> dict[str, str]:
    attrs: dict[str, str] = {}
    for position, item in enumerate((raw or "").split(","), start=1):
        if not item.strip():
            continue
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise TelemetryConfigError(f"OTEL_RESOURCE_ATTRIBUTES: entry {position} is not of the form key=value")
        attrs[unquote(key).strip()] = unquote(value).strip()
    return attrs


def _signal(env: Mapping[str, str], signal: str) -> SignalConfig | None:
    up = signal.upper()
    exporter = (_get(env, f"OTEL_{up}_EXPORTER") or "otlp").lower()
    if exporter == "none":
        return None
    if exporter != "otlp":
        raise TelemetryConfigError(f"OTEL_{up}_EXPORTER must be 'otlp' or 'none', got {exporter!r}")
    protocol = (
        _get(env, f"OTEL_EXPORTER_OTLP_{up}_PROTOCOL") or _get(env, "OTEL_EXPORTER_OTLP_PROTOCOL") or PROTOCOLS[0]
    ).lower()
    if protocol not in PROTOCOLS:
        raise TelemetryConfigError(f"OTEL_EXPORTER_OTLP_PROTOCOL must be one of {list(PROTOCOLS)}, got {protocol!r}")
    specific = _get(env, f"OTEL_EXPORTER_OTLP_{up}_ENDPOINT")
    base = _get(env, "OTEL_EXPORTER_OTLP_ENDPOINT")
    if specific is None and base is None:
        return None
    if specific is not None:
        endpoint, var = specific, f"OTEL_EXPORTER_OTLP_{up}_ENDPOINT"
    else:
        var = "OTEL_EXPORTER_OTLP_ENDPOINT"
        # The base endpoint gets the signal path appended for OTLP/HTTP; gRPC takes it as is.
        endpoint = base if protocol == "grpc" else base.rstrip("/") + f"/v1/{signal}"
    parts = urlsplit(endpoint)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise TelemetryConfigError(f"{var} must be an http:// or https:// URL, got {redact_url(endpoint)!r}")
    header_var = f"OTEL_EXPORTER_OTLP_{up}_HEADERS"
    raw_headers = _get(env, header_var)
    if raw_headers is None:
        header_var, raw_headers = "OTEL_EXPORTER_OTLP_HEADERS", _get(env, "OTEL_EXPORTER_OTLP_HEADERS")
    headers = parse_headers(raw_headers, header_var) if raw_headers else {}
    timeout_var = f"OTEL_EXPORTER_OTLP_{up}_TIMEOUT"
    if _get(env, timeout_var) is None:
        timeout_var = "OTEL_EXPORTER_OTLP_TIMEOUT"
    timeout_ms = _number(env, timeout_var, 10_000.0, minimum=1.0)
    compression = (
        _get(env, f"OTEL_EXPORTER_OTLP_{up}_COMPRESSION") or _get(env, "OTEL_EXPORTER_OTLP_COMPRESSION") or "none"
    ).lower()
    if compression not in ("gzip", "none"):
        raise TelemetryConfigError(f"OTEL_EXPORTER_OTLP_COMPRESSION must be 'gzip' or 'none', got {compression!r}")
    return SignalConfig(endpoint, protocol, headers, timeout_ms / 1000.0, compression)


def load_config(env: Mapping[str, str]) -> OtelConfig:
    """Read and validate every supported OTEL_* variable from ``env``."""
    sampler_name = (_get(env, "OTEL_TRACES_SAMPLER") or DEFAULT_SAMPLER).lower()
    if sampler_name not in SAMPLERS:
        raise TelemetryConfigError(f"OTEL_TRACES_SAMPLER must be one of {list(SAMPLERS)}, got {sampler_name!r}")
    default_arg = DEFAULT_SAMPLE_RATIO if _get(env, "OTEL_TRACES_SAMPLER") is None else 1.0
    sampler_arg = _number(env, "OTEL_TRACES_SAMPLER_ARG", default_arg)
    if "traceidratio" in sampler_name and sampler_arg > 1.0:
        raise TelemetryConfigError(f"OTEL_TRACES_SAMPLER_ARG must be within [0, 1], got {sampler_arg:g}")
    resource = parse_resource(_get(env, "OTEL_RESOURCE_ATTRIBUTES"))
    service = _get(env, "OTEL_SERVICE_NAME") or resource.get("service.name") or DEFAULT_SERVICE_NAME
    return OtelConfig(
        service_name=service,
        resource_attributes=resource,
        traces=_signal(env, "traces"),
        metrics=_signal(env, "metrics"),
        sampler_name=sampler_name,
        sampler_arg=sampler_arg,
        metric_interval_ms=_number(env, "OTEL_METRIC_EXPORT_INTERVAL", 60_000.0, minimum=1.0),
        metric_timeout_ms=_number(env, "OTEL_METRIC_EXPORT_TIMEOUT", 30_000.0, minimum=1.0),
        bsp_schedule_delay_ms=_number(env, "OTEL_BSP_SCHEDULE_DELAY", 5_000.0, minimum=1.0),
        bsp_export_timeout_ms=_number(env, "OTEL_BSP_EXPORT_TIMEOUT", 30_000.0, minimum=1.0),
        bsp_max_queue_size=int(_number(env, "OTEL_BSP_MAX_QUEUE_SIZE", 2048, minimum=1)),
        bsp_max_batch_size=int(_number(env, "OTEL_BSP_MAX_EXPORT_BATCH_SIZE", 512, minimum=1)),
        sdk_disabled=(_get(env, "OTEL_SDK_DISABLED") or "false").lower() == "true",
    )


def _otlp_exporter(cfg: SignalConfig, signal: str, class_name: str):
    """One OTLP exporter of either protocol, configured the same way for both signals. Only the
    chosen protocol's module is imported: grpc alone adds about 9 MB to the process."""
    gzip = cfg.compression == "gzip"
    if cfg.protocol == "grpc":
        import grpc

        module = importlib.import_module(f"opentelemetry.exporter.otlp.proto.grpc.{signal}_exporter")
        return getattr(module, class_name)(
            endpoint=cfg.endpoint,
            insecure=cfg.endpoint.startswith("http://"),
            headers=cfg.headers or None,
            timeout=cfg.timeout_s,
            compression=grpc.Compression.Gzip if gzip else grpc.Compression.NoCompression,
        )
    from opentelemetry.exporter.otlp.proto.http import Compression

    module = importlib.import_module(f"opentelemetry.exporter.otlp.proto.http.{signal}_exporter")
    return getattr(module, class_name)(
        endpoint=cfg.endpoint,
        headers=cfg.headers,
        timeout=cfg.timeout_s,
        compression=Compression.Gzip if gzip else Compression.NoCompression,
    )


def span_exporter(cfg: SignalConfig) -> SpanExporter:
    return _otlp_exporter(cfg, "trace", "OTLPSpanExporter")


def metric_exporter(cfg: SignalConfig) -> MetricExporter:
    return _otlp_exporter(cfg, "metric", "OTLPMetricExporter")


class CountingSpanExporter(SpanExporter):
    """Delegates to the real exporter and reports each failed export batch to ``on_failure``."""

    def __init__(self, inner: SpanExporter, on_failure: Callable[[], None]) -> None:
        self._inner = inner
        self._on_failure = on_failure

    def export(self, spans: Sequence) -> SpanExportResult:
        try:
            result = self._inner.export(spans)
        except Exception:  # an exporter bug must not kill the export thread
            result = SpanExportResult.FAILURE
        if result is not SpanExportResult.SUCCESS:
            self._on_failure()
        return result

    def shutdown(self) -> None:
        self._inner.shutdown()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return self._inner.force_flush(timeout_millis)


class CountingMetricExporter(MetricExporter):
    """The metrics twin of ``CountingSpanExporter``; keeps the inner exporter's temporality."""

    def __init__(self, inner: MetricExporter, on_failure: Callable[[], None]) -> None:
        super().__init__(
            preferred_temporality=inner._preferred_temporality,
            preferred_aggregation=inner._preferred_aggregation,
        )
        self._inner = inner
        self._on_failure = on_failure

    def export(self, metrics_data, timeout_millis: float = 10_000, **kwargs) -> MetricExportResult:
        try:
            result = self._inner.export(metrics_data, timeout_millis=timeout_millis, **kwargs)
        except Exception:
            result = MetricExportResult.FAILURE
        if result is not MetricExportResult.SUCCESS:
            self._on_failure()
        return result

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return self._inner.force_flush(timeout_millis=timeout_millis)

    def shutdown(self, timeout_millis: float = 30_000, **kwargs) -> None:
        self._inner.shutdown(timeout_millis=timeout_millis, **kwargs)

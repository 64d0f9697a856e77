"""A loopback OTLP/HTTP receiver for tests: ``POST /v1/traces`` and ``POST /v1/metrics`` with protobuf
bodies (gzip or deflate aware), decoded with opentelemetry-proto and stored for assertions.

Fault switches: ``receiver.mode = "ok" | "500" | "slow"`` (``slow_s`` delay, then 200) and
``receiver.refuse()`` / ``receiver.accept()`` to stop and restart listening on the same port
(connection refused in between). Use as a context manager; every wait helper takes a deadline.
"""

from __future__ import annotations

import gzip
import socket
import threading
import time
import zlib
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.metrics.v1 import metrics_pb2
from opentelemetry.proto.trace.v1 import trace_pb2


def _value(any_value):
    which = any_value.WhichOneof("value")
    if which is None:
        return None
    v = getattr(any_value, which)
    if which == "array_value":
        return [_value(x) for x in v.values]
    if which == "kvlist_value":
        return {kv.key: _value(kv.value) for kv in v.values}
    return v


def _attrs(kvs) -> dict:
    return {kv.key: _value(kv.value) for kv in kvs}


@dataclass
class ReceivedSpan:
    trace_id: str
    span_id: str
    parent_span_id: str  # "" for a root span
    name: str
    kind: str  # SERVER, CLIENT, INTERNAL, ...
    attributes: dict
    status: str  # UNSET, OK, ERROR
    resource: dict
    scope: str
    events: list[str] = field(default_factory=list)


@dataclass
class ReceivedPoint:
    metric: str
    kind: str  # sum, gauge, histogram
    attributes: dict
    value: float  # the sum/gauge value, or a histogram's count
    sum: float | None = None
    unit: str = ""
    bucket_counts: list[int] = field(default_factory=list)  # histograms: per bucket, not cumulative
    explicit_bounds: list[float] = field(default_factory=list)
    monotonic: bool | None = None  # sums only
    temporality: str = ""  # sums and histograms: CUMULATIVE or DELTA
    start_ns: int = 0
    time_ns: int = 0


class OtlpReceiver:
    def __init__(self, port: int = 0) -> None:
        self.mode = "ok"
        self.slow_s = 1.0
        self.spans: list[ReceivedSpan] = []
        self.points: list[ReceivedPoint] = []
        self.requests: list[dict] = []  # {"path", "status", "headers"} per POST received
        self._lock = threading.Lock()
        self._port = port
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._conns: set[socket.socket] = set()

    # -- lifecycle ---------------------------------------------------------------------------
    def __enter__(self) -> OtlpReceiver:
        self.accept()
        return self

    def __exit__(self, *exc) -> None:
        self.refuse()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self._port}"

    def accept(self) -> None:
        """Start (or restart) listening on the same port."""
        if self._server is not None:
            return
        self._server = ThreadingHTTPServer(("127.0.0.1", self._port), self._handler_class())
        self._server.daemon_threads = True
        self._port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    def refuse(self) -> None:
        """Stop listening: new connections are refused until ``accept()``."""
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        with self._lock:  # also cut kept-alive connections, or the exporter would keep using them
            conns, self._conns = list(self._conns), set()
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._thread.join(timeout=5)
        self._server = None

    # -- queries -----------------------------------------------------------------------------
    def clear(self) -> None:
        with self._lock:
            self.spans.clear()
            self.points.clear()
            self.requests.clear()

    def wait_for(self, predicate, timeout_s: float = 5.0, interval_s: float = 0.02):
        """Poll ``predicate(self)`` until it returns something truthy or the deadline passes."""
        deadline = time.monotonic() + timeout_s
        while True:
            with self._lock:
                result = predicate(self)
            if result:
                return result
            if time.monotonic() >= deadline:
                raise AssertionError(f"OTLP receiver: condition not met within {timeout_s}s")
            time.sleep(interval_s)

    def spans_named(self, name: str) -> list[ReceivedSpan]:
        return [s for s in self.spans if s.name == name]

    def metric_points(self, name: str) -> list[ReceivedPoint]:
        return [p for p in self.points if p.metric == name]

    # -- decoding ----------------------------------------------------------------------------
    def _store_traces(self, body: bytes) -> None:
        req = ExportTraceServiceRequest()
        req.ParseFromString(body)
        decoded = []
        for rs in req.resource_spans:
            resource = _attrs(rs.resource.attributes)
            for ss in rs.scope_spans:
                for s in ss.spans:
                    decoded.append(
                        ReceivedSpan(
                            trace_id=s.trace_id.hex(),
                            span_id=s.span_id.hex(),
                            parent_span_id=s.parent_span_id.hex(),
                            name=s.name,
                            kind=trace_pb2.Span.SpanKind.Name(s.kind).removeprefix("SPAN_KIND_"),
                            attributes=_attrs(s.attributes),
                            status=trace_pb2.Status.StatusCode.Name(s.status.code).removeprefix("STATUS_CODE_"),
                            resource=resource,
                            scope=ss.scope.name,
                            events=[e.name for e in s.events],
                        )
                    )
        with self._lock:
            self.spans.extend(decoded)

    def _store_metrics(self, body: bytes) -> None:
        req = ExportMetricsServiceRequest()
        req.ParseFromString(body)
        decoded = []
        for rm in req.resource_metrics:
            for sm in rm.scope_metrics:
                for m in sm.metrics:
                    kind = m.WhichOneof("data")
                    data = getattr(m, kind)
                    temporality = ""
                    if kind in ("sum", "histogram"):
                        temporality = metrics_pb2.AggregationTemporality.Name(data.aggregation_temporality)
                        temporality = temporality.removeprefix("AGGREGATION_TEMPORALITY_")
                    monotonic = data.is_monotonic if kind == "sum" else None
                    for p in data.data_points:
                        common = {"unit": m.unit, "temporality": temporality, "monotonic": monotonic,
                                  "start_ns": p.start_time_unix_nano, "time_ns": p.time_unix_nano}
                        if kind == "histogram":
                            decoded.append(ReceivedPoint(m.name, kind, _attrs(p.attributes), p.count, p.sum,
                                                         bucket_counts=list(p.bucket_counts),
                                                         explicit_bounds=list(p.explicit_bounds), **common))
                        else:
                            value = p.as_double if p.WhichOneof("value") == "as_double" else p.as_int
                            decoded.append(ReceivedPoint(m.name, kind, _attrs(p.attributes), value, **common))
        with self._lock:
            self.points.extend(decoded)

    def _handler_class(self):
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # keep test output quiet
                pass

            def setup(self) -> None:
                super().setup()
                with receiver._lock:
                    receiver._conns.add(self.connection)

            def finish(self) -> None:
                with receiver._lock:
                    receiver._conns.discard(self.connection)
                try:
                    super().finish()
                except OSError:
                    pass

            def _reply(self, status: int, body: bytes, ctype: str = "application/x-protobuf") -> None:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                encoding = (self.headers.get("Content-Encoding") or "").lower()
                headers = {k.lower(): v for k, v in self.headers.items()}
                mode = receiver.mode
                if mode == "slow":
                    time.sleep(receiver.slow_s)
                status = 500 if mode == "500" else 200
                if self.path not in ("/v1/traces", "/v1/metrics"):
                    status = 404
                with receiver._lock:
                    receiver.requests.append({"path": self.path, "status": status, "headers": headers})
                if status != 200:
                    self._reply(status, b"fault injected" if status == 500 else b"not found", "text/plain")
                    return
                if encoding == "gzip":
                    body = gzip.decompress(body)
                elif encoding == "deflate":
                    body = zlib.decompress(body)
                if self.path == "/v1/traces":
                    receiver._store_traces(body)
                    self._reply(200, ExportTraceServiceResponse().SerializeToString())
                else:
                    receiver._store_metrics(body)
                    self._reply(200, ExportMetricsServiceResponse().SerializeToString())

        return Handler


class OtlpGrpcReceiver(OtlpReceiver):
    """The same store over OTLP/gRPC (TraceService/Export, MetricsService/Export). ``mode = "500"``
    answers INTERNAL. ``endpoint`` is the ``http://host:port`` form the gRPC exporter takes."""

    def __init__(self) -> None:
        super().__init__()
        self._grpc = None

    def accept(self) -> None:
        if self._grpc is not None:
            return
        from concurrent import futures

        import grpc
        from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2_grpc
        from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc

        receiver = self

        def handle(request, context, store, response, path):
            headers = {k: v for k, v in context.invocation_metadata()}
            failing = receiver.mode == "500"
            with receiver._lock:
                receiver.requests.append({"path": path, "status": 500 if failing else 200, "headers": headers})
            if failing:
                context.abort(grpc.StatusCode.INTERNAL, "fault injected")
            store(request.SerializeToString())
            return response

        class Traces(trace_service_pb2_grpc.TraceServiceServicer):
            def Export(self, request, context):
                return handle(request, context, receiver._store_traces, ExportTraceServiceResponse(), "/v1/traces")

        class Metrics(metrics_service_pb2_grpc.MetricsServiceServicer):
            def Export(self, request, context):
                return handle(request, context, receiver._store_metrics, ExportMetricsServiceResponse(), "/v1/metrics")

        server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Traces(), server)
        metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(Metrics(), server)
        self._port = server.add_insecure_port(f"127.0.0.1:{self._port}")
        server.start()
        self._grpc = server

    def refuse(self) -> None:
        if self._grpc is not None:
            self._grpc.stop(grace=0).wait(5)
            self._grpc = None

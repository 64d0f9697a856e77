"""Upstream forwarding: one aiohttp session per app, split timeouts, one retry budget per
logical request shared by retries and fallback, a circuit per upstream, SSE bytes through.

Timeouts come from the provider's ``timeout_ms`` (T): connect = 5 % of T (0.05-3 s), first
byte (a stream's first content-bearing event) = 50 % of T, idle between events = 25 % of T,
total = T per attempt. A non-stream answer arrives only when generation is done, so its
headers and body share the total.

Budget = the primary's ``tries`` minus the client's ``x-stainless-retry-count`` (at least 1).
Only connection errors, timeouts, broken streams, 429 and 500/502/503/504 are retried; a 4xx
or a permanent 5xx (501, 505, ...) is answered at once and does not count toward the circuit.
Retries stop when the client has gone: an attempt in flight is cancelled (its upstream is not
blamed) and no further attempt starts. A retry of the same upstream waits ``retry_delay_ms * 2^(n-1)`` (capped, with up to
25 % jitter) or the upstream's Retry-After when that is short; a switch to another upstream or
to the fallback provider does not wait. When a fallback exists, the last unit of the budget is
kept for it. After the budget is spent the answer carries ``x-should-retry: false``.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp

from gateway import sse
from gateway.errors import ClientClosed
from gateway.telemetry import Telemetry
from gateway.upstream_failure import Failure, exhausted_error, final_error, status_failure
from gateway.upstream_span import AttemptSpan as _AttemptSpan
from gateway.upstreams import Upstream, UpstreamRegistry, learn_max_model_len

RETRY_CAP_S = 4.0  # longest wait between two tries, and the longest Retry-After we wait out
BUSY_CAP_S = 300.0  # longest a Retry-After keeps an upstream marked busy
PROBE_TIMEOUT_S = 2.0
LEARN_TIMEOUT_S = 1.0  # /v1/models read for max_model_len, in the background
LEARN_WAIT_S = 0.25  # how long a request waits for that read before skipping the local check
ERROR_BODY_LIMIT = 65_536
BODY_LIMIT = 64 * 1024 * 1024  # a non-stream upstream body larger than this is a 502


@dataclass(frozen=True)
class Timeouts:
    connect: float
    first_byte: float
    idle: float
    total: float

    @classmethod
    def from_ms(cls, timeout_ms: int) -> Timeouts:
        t = max(1, int(timeout_ms)) / 1000
        return cls(connect=min(3.0, max(0.05, t * 0.05)), first_byte=t * 0.5, idle=t * 0.25, total=t)


@dataclass
class Call:
    path: str  # "/chat/completions" or "/completions"
    payload: dict[str, Any]  # the upstream body; "model" is set per provider
    stream: bool
    chat: bool
    primary: Any  # governance.decision.ProviderBinding
    fallback: Any | None
    request_id: str
    client_retries: int = 0
    strip_usage: bool = False
    gone: asyncio.Event | None = None  # set when the client disconnects
    traced: bool | None = None  # the request's trace is recorded (None: ask the current context)
    trace_headers: dict[str, str] | None = None  # traceparent of the request's span, when not traced


@dataclass
class Served:
    provider: str
    attempts: int
    body: bytes | None = None
    content_type: str = "application/json"
    stream: AsyncIterator[bytes] | None = None
    usage: dict[str, Any] | None = None


class Forwarder:
    def __init__(self, registry: UpstreamRegistry, *, rng: random.Random | None = None,
                 telemetry: Telemetry | None = None) -> None:
        self.registry = registry
        self.telemetry = telemetry
        self.session: aiohttp.ClientSession | None = None
        self._rng = rng or random.Random()
        self._probes: set[asyncio.Task] = set()

    async def start(self) -> None:
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, ttl_dns_cache=300),
            timeout=aiohttp.ClientTimeout(total=None),
        )

    async def close(self) -> None:
        for task in list(self._probes):
            task.cancel()
        if self._probes:
            await asyncio.gather(*self._probes, return_exceptions=True)
        if self.session is not None:
            await self.session.close()
            self.session = None

    # -- selection, circuits, probes ----------------------------------------------------------
    def pick(self, provider: str) -> Upstream | None:
        """The first upstream of ``provider`` whose circuit lets a request through (no waiting);
        schedules a half-open /health probe for any open circuit whose cooldown has passed."""
        chosen = None
        for upstream in self.registry.for_provider(provider):
            if chosen is None and upstream.circuit.allows():
                chosen = upstream
            elif upstream.circuit.probe_due():
                task = asyncio.get_running_loop().create_task(self._probe(upstream))
                self._probes.add(task)
                task.add_done_callback(self._probes.discard)
        return chosen

    async def _probe(self, upstream: Upstream) -> None:
        ok = False
        try:
            async with self.session.get(
                upstream.server_url + upstream.health_path, timeout=aiohttp.ClientTimeout(total=PROBE_TIMEOUT_S)
            ) as resp:
                ok = resp.status == 200
        except (aiohttp.ClientError, TimeoutError):
            ok = False
        if ok and upstream.learned:
            upstream.max_model_len, upstream.learned = None, False  # re-learn: it may have restarted
        upstream.circuit.probe_result(ok)

    async def max_model_len(self, provider: str, timeout_ms: int) -> int | None:
        """The first upstream's max_model_len, or None while it is unknown. Learned from its
        /v1/models in the background (short timeout; a connection failure or timeout feeds its
        circuit, and a failed read is not repeated for a few seconds); a caller waits at most
        LEARN_WAIT_S for it and otherwise goes on without the local context check."""
        upstreams = [u for u in self.registry.for_provider(provider) if u.circuit.state == "closed"]
        if not upstreams:
            return None
        upstream = upstreams[0]
        if upstream.max_model_len is not None:
            return upstream.max_model_len
        task = upstream.learning
        if task is None:
            if asyncio.get_running_loop().time() < upstream.learn_after:
                return None
            timeout = min(LEARN_TIMEOUT_S, Timeouts.from_ms(timeout_ms).first_byte)
            task = asyncio.get_running_loop().create_task(self._learn(upstream, timeout))
            upstream.learning = task
            self._probes.add(task)
            task.add_done_callback(self._probes.discard)
        await asyncio.wait({task}, timeout=LEARN_WAIT_S)
        return upstream.max_model_len

    async def _learn(self, upstream: Upstream, timeout_s: float) -> None:
        try:
            _, failure = await learn_max_model_len(self.session, upstream, timeout_s)
            if upstream.max_model_len is None:
                upstream.learn_after = asyncio.get_running_loop().time() + 5.0
            if failure is not None:
                upstream.circuit.failure(refused=failure == "refused")
                self._circuit_metric(upstream)
        finally:
            upstream.learning = None

    # -- the logical request --------------------------------------------------------------------
    async def send(self, call: Call, on_stream_end: Callable[[dict[str, Any]], Any]) -> Served:
        budget = max(1, int(call.primary.tries) - max(0, call.client_retries))
        phases = [call.primary]
        if call.fallback is not None and call.fallback.name != call.primary.name:
            phases.append(call.fallback)
        attempts = 0
        last: Failure | None = None
        for index, binding in enumerate(phases):
            payload = dict(call.payload, model=binding.model)
            body = json.dumps(payload, separators=(",", ":")).encode()
            timeouts = Timeouts.from_ms(binding.timeout_ms)
            previous: Upstream | None = None
            tries_here = 0
            while attempts < budget:
                if call.gone is not None and call.gone.is_set():
                    raise ClientClosed()
                if index + 1 < len(phases) and attempts > 0 and budget - attempts == 1:
                    if self.registry.for_provider(phases[index + 1].name):
                        break  # keep the last unit of the budget for the fallback
                upstream = self.pick(binding.name)
                if upstream is None:
                    break
                if upstream is previous and last is not None:
                    await _pause(self._delay(tries_here, binding.retry_delay_ms, last.retry_after), call.gone)
                attempts += 1
                tries_here += 1
                if attempts > 1:
                    self._count_retry(binding.name, switched=index > 0 and tries_here == 1, primary=phases[0].name)
                span = _AttemptSpan(self.telemetry, call, binding, upstream, attempts)
                try:
                    attempt = self._attempt(upstream, call, body, timeouts, _span_end(span, on_stream_end),
                                            span.headers)
                    served = await (attempt if call.gone is None else _unless_gone(attempt, call.gone))
                except Failure as failure:
                    failure.provider = binding.name
                    last = failure
                    self._note(upstream, failure)
                    span.failed(failure)
                    if not failure.retryable:
                        raise final_error(failure, binding.name) from None
                    previous = upstream
                    continue
                except BaseException as exc:  # the client left, a cancellation, a bug: end the span anyway
                    upstream.circuit.abandon()
                    span.done(None, status="client_closed" if isinstance(exc, ClientClosed) else type(exc).__name__)
                    raise
                upstream.circuit.success()
                self._circuit_metric(upstream)
                served.provider, served.attempts = binding.name, attempts
                if served.stream is None:
                    span.done(served.usage, body=served.body)
                return served
        raise exhausted_error(last, phases, self.registry)

    def _count_retry(self, provider: str, *, switched: bool, primary: str) -> None:
        if self.telemetry is None:
            return
        if switched:
            self.telemetry.metrics.record_fallback(primary, provider)
        else:
            self.telemetry.metrics.record_retry(provider)

    def _circuit_metric(self, upstream: Upstream) -> None:
        if self.telemetry is not None:
            self.telemetry.metrics.set_circuit(f"{upstream.provider}/{upstream.instance_id}", upstream.circuit.state)

    def _delay(self, n: int, base_ms: int, retry_after: float | None) -> float:
        if retry_after is not None and 0 <= retry_after <= RETRY_CAP_S:
            return retry_after
        delay = min(RETRY_CAP_S, max(0, base_ms) / 1000 * (2 ** max(0, n - 1)))
        return delay * (1 - 0.25 * self._rng.random())

    def _note(self, upstream: Upstream, failure: Failure) -> None:
        circuit = upstream.circuit
        if failure.kind == "status" and failure.status == 429:
            if circuit.state == "half_open":
                circuit.success()  # the trial reached a live upstream
            if failure.retry_after is not None and failure.retry_after > RETRY_CAP_S:
                circuit.busy(min(BUSY_CAP_S, failure.retry_after))
        elif failure.retryable:
            circuit.failure(refused=failure.refused)
        else:
            circuit.success()  # a 4xx comes from a live, healthy upstream
        self._circuit_metric(upstream)

    async def _attempt(self, upstream: Upstream, call: Call, body: bytes, t: Timeouts, on_end,
                       trace_headers: dict[str, str]) -> Served:
        loop = asyncio.get_running_loop()
        start = loop.time()
        headers = {"Content-Type": "application/json", "x-request-id": call.request_id, **trace_headers,
                   **upstream.headers()}
        first_deadline = start + (t.first_byte if call.stream else t.total)
        resp = None
        try:
            async with asyncio.timeout_at(first_deadline):
                resp = await self.session.post(
                    upstream.base_url + call.path,
                    data=body,
                    headers=headers,
                    timeout=aiohttp.ClientTimeout(total=None, sock_connect=t.connect),
                )
                if resp.status >= 300:
                    raw = await resp.content.read(ERROR_BODY_LIMIT)
                    raise status_failure(resp.status, resp.headers, raw)
                if not call.stream:
                    raw = await _read_bounded(resp)
                    return Served("", 0, body=raw, content_type=resp.headers.get("Content-Type", "application/json"),
                                  usage=sse.usage_of(raw))
            if not resp.headers.get("Content-Type", "").startswith("text/event-stream"):
                raise Failure("broken", "upstream answered a stream request without an event stream")
            held = await sse.open_stream(resp, call.chat, first_deadline)
        except Failure:
            if resp is not None:
                resp.close()
            raise
        except aiohttp.ConnectionTimeoutError:
            raise Failure("connect", "upstream connect timed out") from None
        except TimeoutError:
            if resp is not None:
                resp.close()
            raise Failure("timeout", "upstream did not answer in time") from None
        except aiohttp.ClientConnectorError as exc:
            refused = isinstance(exc.os_error, ConnectionRefusedError)
            raise Failure("connect", "upstream refused the connection", refused=refused) from None
        except sse.StreamBroken as exc:
            resp.close()
            raise Failure("broken", exc.reason) from None
        except aiohttp.ClientError as exc:
            if resp is not None:
                resp.close()
            raise Failure("broken", f"upstream connection failed ({type(exc).__name__})") from None
        stream = sse.relay(resp, held, idle_s=t.idle, total_deadline=start + t.total,
                           strip_usage=call.strip_usage, on_end=on_end)
        return Served("", 0, content_type="text/event-stream; charset=utf-8", stream=stream)



def _span_end(span: _AttemptSpan, on_end: Callable[[dict[str, Any]], Any]) -> Callable[[dict[str, Any]], Any]:
    """The stream's on_end with the attempt span ended first; the span sees the stream's result
    ("ok", "cut", "client_closed", ...) as its status, the route the whole outcome."""
    ended = span.wrap(_ignore)

    async def end(outcome: dict[str, Any]) -> None:
        try:
            await ended({**outcome, "status": outcome.get("result", "ok")})
        finally:
            await on_end(outcome)

    return end


async def _ignore(outcome: dict[str, Any]) -> None:
    return None


async def _pause(seconds: float, gone: asyncio.Event | None) -> None:
    """Sleep between two tries; ClientClosed as soon as the client leaves."""
    if gone is None:
        await asyncio.sleep(seconds)
        return
    try:
        await asyncio.wait_for(gone.wait(), seconds)
    except TimeoutError:
        return
    raise ClientClosed()


async def _unless_gone(attempt: Any, gone: asyncio.Event) -> Served:
    """Await ``attempt`` unless the client disconnects first: then cancel it, raise ClientClosed."""
    loop = asyncio.get_running_loop()
    task = loop.create_task(attempt)
    waiter = loop.create_task(gone.wait())
    try:
        await asyncio.wait((task, waiter), return_when=asyncio.FIRST_COMPLETED)
    except BaseException:
        waiter.cancel()
        task.cancel()
        raise
    waiter.cancel()
    if task.done():
        return task.result()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    raise ClientClosed()


async def _read_bounded(resp: aiohttp.ClientResponse) -> bytes:
    """A non-stream body, refused (502, not retried) past BODY_LIMIT bytes."""
    declared = resp.content_length
    if declared is not None and declared <= BODY_LIMIT:
        return await resp.read()
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = await resp.content.read(1 << 20)
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > BODY_LIMIT:
            raise Failure("too_large", f"upstream answer exceeds the {BODY_LIMIT}-byte limit", retryable=False)
        chunks.append(chunk)

"""Upstream failures and how they are answered: the Failure an attempt raises, Retry-After
parsing (delta-seconds or HTTP-date), vLLM's error shapes, and the gateway error a final or
exhausted failure becomes."""

from __future__ import annotations

import json
import time
from datetime import UTC
from email.utils import parsedate_to_datetime
from typing import Any

from gateway.errors import GatewayError

RETRYABLE_5XX = frozenset({500, 502, 503, 504})


class Failure(Exception):
    def __init__(self, kind: str, message: str, *, status: int | None = None, retryable: bool = True,
                 refused: bool = False, retry_after: float | None = None, headers: dict | None = None,
                 param: str | None = None) -> None:
        super().__init__(message)
        self.kind, self.message, self.status, self.retryable = kind, message, status, retryable
        self.refused, self.retry_after, self.headers, self.param = refused, retry_after, headers or {}, param
        self.provider = ""


def retry_after_seconds(value: str) -> float | None:
    """Retry-After as seconds from now: delta-seconds or an HTTP-date (RFC 9110 §10.2.3)."""
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - time.time())


def retry_after(headers: Any) -> tuple[float | None, dict[str, str]]:
    passed: dict[str, str] = {}
    seconds: float | None = None
    ms = headers.get("retry-after-ms")
    ra = headers.get("retry-after")
    if ra is not None:
        passed["Retry-After"] = ra
        seconds = retry_after_seconds(ra)
    if ms is not None:
        passed["retry-after-ms"] = ms
        try:
            seconds = float(ms) / 1000
        except ValueError:
            pass
    return seconds, passed


def upstream_error(raw: bytes) -> tuple[str, str | None]:
    """(message, param) from any of vLLM's three error shapes or a plain-text body."""
    try:
        body = json.loads(raw)
    except ValueError:
        text = raw.decode("utf-8", "replace").strip()
        return (text[:500] or "upstream error"), None
    err = body.get("error", body) if isinstance(body, dict) else body
    if isinstance(err, str):
        return err, None
    if isinstance(err, dict):
        param = err.get("param")
        return str(err.get("message") or "upstream error"), (str(param) if param else None)
    return "upstream error", None


def status_failure(status: int, headers: Any, raw: bytes) -> Failure:
    message, param = upstream_error(raw)
    if status == 429 or status in RETRYABLE_5XX:
        seconds, passed = retry_after(headers)
        return Failure("status", message, status=status, retry_after=seconds, headers=passed)
    return Failure("status", message, status=status, retryable=False, param=param)

def final_error(failure: Failure, provider: str) -> GatewayError:
    """A non-retryable upstream answer, in the gateway's one error shape."""
    headers = {"x-should-retry": "false", "x-canonic-provider": provider}
    status = failure.status or 502
    if status in (401, 403, 404):
        # The gateway's own credentials or binding are wrong: not the caller's fault.
        return GatewayError(f"upstream provider {provider} refused the bound model or the gateway's "
                            f"credentials (HTTP {status})", status=502, code="upstream_error", headers=headers)
    if status >= 500:  # a permanent upstream failure (501 Not Implemented, 505, ...)
        return GatewayError(f"upstream provider {provider} failed permanently (HTTP {status}): "
                            f"{failure.message}", status=502, code="upstream_error", headers=headers)
    return GatewayError(failure.message, status=status, param=failure.param, code="upstream_error",
                        headers=headers)


def exhausted_error(last: Failure | None, phases: list, registry: Any) -> GatewayError:
    """The answer once the retry budget is spent (or nothing could be tried)."""
    headers = {"x-should-retry": "false"}
    if last is None:
        upstreams = [u for b in phases for u in registry.for_provider(b.name)]
        if not upstreams:
            return GatewayError(f"provider {phases[0].name} has no routable upstream for model "
                                f"{phases[0].model!r} (no instance is registered)", status=503, code="upstream_unavailable",
                                headers={**headers, "Retry-After": "5", "x-canonic-provider": phases[0].name})
        wait = min((u.circuit.retry_after_s() for u in upstreams), default=1.0)
        headers["Retry-After"] = str(max(1, round(wait + 0.499)))
        headers["x-canonic-provider"] = phases[0].name
        if upstreams and all(u.circuit.state == "closed" for u in upstreams):
            return GatewayError(f"provider {phases[0].name} is rate limited; retry later", status=429,
                                code="rate_limited", headers=headers)
        names = ", ".join(b.name for b in phases)
        return GatewayError(f"no healthy upstream for {names} (circuit open); retry later", status=503,
                            code="upstream_unavailable", headers=headers)
    headers["x-canonic-provider"] = last.provider
    if last.kind == "status" and last.status in (429, 503):
        headers.update(last.headers)
        headers.setdefault("Retry-After", "1")
        what = "rate limited the request" if last.status == 429 else "is unavailable"
        return GatewayError(f"upstream provider {last.provider} {what} (HTTP {last.status}); the gateway's "
                            "retry budget is spent", status=last.status, code="upstream_error", headers=headers)
    if last.kind == "timeout":
        return GatewayError(f"upstream provider {last.provider} timed out; the gateway's retry budget is spent",
                            status=504, code="upstream_timeout", headers=headers)
    if last.kind == "connect":
        headers["Retry-After"] = "1"
        return GatewayError(f"upstream provider {last.provider} is unreachable; the gateway's retry budget is "
                            "spent", status=503, code="upstream_unavailable", headers=headers)
    detail = f"HTTP {last.status}" if last.status else last.message
    return GatewayError(f"upstream provider {last.provider} failed ({detail}); the gateway's retry budget is "
                        "spent", status=502, code="upstream_error", headers=headers)

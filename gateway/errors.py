"""The gateway's error tree and the one handler that renders OpenAI-shaped error bodies."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger("canonic.errors")

_TYPE_BY_STATUS = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    409: "conflict_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
    502: "upstream_error",
    503: "service_unavailable",
    504: "timeout_error",
}


class GatewayError(Exception):
    """An error with an HTTP status and an OpenAI-style body."""

    status = 500
    type = "internal_error"

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        status: int | None = None,
        headers: dict[str, str] | None = None,
        type: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code
        if status is not None:
            self.status = status
        if type is not None:
            self.type = type
        elif status is not None:
            self.type = _TYPE_BY_STATUS.get(status, self.type)
        self.headers = dict(headers or {})

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


class BadRequest(GatewayError):
    status, type = 400, "invalid_request_error"


class Unauthorized(GatewayError):
    status, type = 401, "authentication_error"


class Forbidden(GatewayError):
    status, type = 403, "permission_error"


class NotFound(GatewayError):
    status, type = 404, "not_found_error"


class PayloadTooLarge(GatewayError):
    status, type = 413, "invalid_request_error"


class UnsupportedMediaType(GatewayError):
    status, type = 415, "invalid_request_error"


class ClientClosed(GatewayError):
    """The client disconnected before its answer was ready (nginx's 499; never seen by the client)."""

    status, type = 499, "client_closed"

    def __init__(self, message: str = "the client closed the connection", **kw: Any) -> None:
        super().__init__(message, code="client_closed", **kw)


class ServiceUnavailable(GatewayError):
    status, type = 503, "service_unavailable"


class GatewayTimeout(GatewayError):
    status, type = 504, "timeout_error"


def error_response(err: GatewayError, request: Request | None = None) -> JSONResponse:
    headers = dict(err.headers)
    if request is not None:
        rid = getattr(request.state, "request_id", None)
        if rid:
            headers.setdefault("x-request-id", rid)
        did = getattr(request.state, "decision_id", None)
        if did:
            headers.setdefault("x-canonic-decision-id", did)
    return JSONResponse(err.body(), status_code=err.status, headers=headers)


def _param_from_loc(loc: tuple[Any, ...]) -> str | None:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or None


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(GatewayError)
    async def _gateway_error(request: Request, exc: GatewayError) -> JSONResponse:
        return error_response(exc, request)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        first = errors[0] if errors else {}
        param = _param_from_loc(tuple(first.get("loc", ())))
        msg = first.get("msg", "invalid request")
        message = f"{param}: {msg}" if param else msg
        return error_response(BadRequest(message, param=param, code="invalid_value"), request)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        err = GatewayError(str(exc.detail), status=exc.status_code, headers=dict(exc.headers or {}))
        return error_response(err, request)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        # Never leak internals: the message names the request id only; the log has the traceback.
        rid = getattr(request.state, "request_id", None)
        log.error("unhandled error for request %s (%s %s)", rid, request.method, request.url.path, exc_info=exc)
        return error_response(GatewayError("internal error; see the gateway log for this request id"), request)

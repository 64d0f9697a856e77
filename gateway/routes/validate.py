"""``POST /validate``: compile governance documents sent by the caller and report.

The body is ``{"files": {"CANON.md": "...", ...}, "previous": {...}?, "root": "MAGIC"?}`` or one
raw ``text/markdown`` file (``?file=NAME``: the result narrowed to that file, see
``governance.compiler.single_file``; ``{NAME}.md`` that is no role file is taken as the SPEC). 200 with the report even
when the documents are invalid; 400 malformed, 413 over ``validate_max_bytes``, 415 wrong
content type. File names are keys only: no path from the caller is ever opened.
"""

from __future__ import annotations

import inspect
import json
import re
import time
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from gateway import audit
from gateway.auth import require
from gateway.errors import BadRequest, UnsupportedMediaType
from gateway.openai_models import ERROR_SCHEMA
from gateway.request_body import read_body
from governance.compiler import CompileResult, compile_files, compile_policy, single_file, spec_name
from governance.decision import Facts
from governance.report import FORMATS, github, junit, report_dict, sarif, text

router = APIRouter(tags=["governance"])
_NAME = re.compile(r"^(?:[A-Za-z0-9_.-]+/)*[A-Za-z0-9_.-]+\.md$")
MAX_FILES = 200
_MEDIA = {
    "sarif": "application/sarif+json",
    "junit": "application/xml",
    "github": "text/plain",
    "text": "text/plain",
}


def _check_name(name: Any, where: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name) or ".." in name.split("/"):
        raise BadRequest(
            f"{where}: file names are relative '*.md' paths without '..'",
            param=where,
            code="invalid_file_name",
        )
    return name


def _files(obj: Any, where: str) -> dict[str, str]:
    if not isinstance(obj, dict) or len(obj) > MAX_FILES:
        raise BadRequest(
            f"'{where}' must be an object of at most {MAX_FILES} {{name: text}} entries",
            param=where,
            code="invalid_value",
        )
    out = {}
    for name, body in obj.items():
        _check_name(name, where)
        if not isinstance(body, str):
            raise BadRequest(
                f"{where}.{name} must be a string", param=f"{where}.{name}", code="invalid_value"
            )
        _utf8(body, f"{where}.{name}")
        out[name] = body
    return out


def _utf8(body: str, where: str) -> None:
    """A JSON string may carry a lone surrogate (``\\ud800``): not text, refuse it."""
    try:
        body.encode("utf-8")
    except UnicodeEncodeError:
        raise BadRequest(
            f"{where} is not valid Unicode text (lone surrogate)", param=where, code="invalid_encoding"
        ) from None


def _render(result: CompileResult, fmt: str, payload: dict[str, Any]) -> Response:
    if fmt == "json":
        return JSONResponse(payload)
    if fmt == "sarif":
        return Response(json.dumps(sarif(result)), media_type=_MEDIA["sarif"])
    body = {"github": github, "junit": junit, "text": text}[fmt](result)
    return PlainTextResponse(body, media_type=_MEDIA[fmt])


_ERROR = {"content": {"application/json": {"schema": ERROR_SCHEMA}}}
_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The report (valid or not); ?format picks JSON, SARIF, JUnit XML, GitHub annotations or text",
        "content": {
            "application/json": {"schema": {"type": "object"}},
            "application/sarif+json": {"schema": {"type": "object"}},
            "application/xml": {"schema": {"type": "string"}},
            "text/plain": {"schema": {"type": "string"}},
        },
    },
    400: {"description": "Malformed request (OpenAI error body; `param` names the field)", **_ERROR},
    401: {"description": "Missing or invalid token (when validation requires auth)", **_ERROR},
    403: {"description": "Token lacks governance:read (when validation requires auth)", **_ERROR},
    413: {"description": "Request body over the size limit", **_ERROR},
    415: {"description": "Neither application/json nor text/markdown", **_ERROR},
    503: {"description": "The decision ledger cannot record (fail closed)", **_ERROR},
}


@router.post("/validate", summary="Validate governance documents; 200 with the report even when invalid",
             responses=_RESPONSES)
async def validate(request: Request, format: str = Query("json"), file: str = Query("CANON.md")) -> Response:
    started = time.perf_counter()
    state = request.app.state
    settings = state.settings
    principal = None
    if settings.validate_requires_auth:
        checked = require("governance:read")(request)
        principal = (await checked) if inspect.isawaitable(checked) else checked  # sync or async dependency
    audit.require_ledger(request)
    if format not in FORMATS:
        raise BadRequest(f"format must be one of {', '.join(FORMATS)}", param="format", code="invalid_value")
    ctype = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if ctype not in ("application/json", "text/markdown", "text/plain"):
        raise UnsupportedMediaType(
            'send application/json {"files": {...}} or one text/markdown file', code="unsupported_media_type"
        )
    raw = await read_body(request, settings.validate_max_bytes)
    previous, root, single = None, "MAGIC", None
    if ctype == "application/json":
        try:
            doc = json.loads(raw)
        except (ValueError, UnicodeDecodeError, RecursionError):
            raise BadRequest("request body is not valid JSON", code="invalid_json") from None
        if not isinstance(doc, dict) or "files" not in doc:
            raise BadRequest(
                "body must be an object with a 'files' object", param="files", code="invalid_value"
            )
        unknown = sorted(set(doc) - {"files", "previous", "root"})
        if unknown:
            raise BadRequest(
                f"unknown field(s): {', '.join(unknown)}", param=unknown[0], code="invalid_value"
            )
        files = _files(doc["files"], "files")
        if not files:
            raise BadRequest("'files' is empty", param="files", code="invalid_value")
        if doc.get("previous") is not None:
            previous = _files(doc["previous"], "previous")
        if doc.get("root") is not None:
            if not isinstance(doc["root"], str) or not re.fullmatch(r"[A-Za-z0-9_-]+", doc["root"]):
                raise BadRequest("'root' must be a scope name", param="root", code="invalid_value")
            root = doc["root"]
    else:
        single = _check_name(file, "file")
        try:
            files = {single: raw.decode("utf-8")}
        except UnicodeDecodeError:
            raise BadRequest("body is not UTF-8 text", code="invalid_encoding") from None
    governance = state.governance
    parents = governance.vendored_parents()
    vendored = [p for p in parents if p not in files]
    merged = {**{p: parents[p] for p in vendored}, **files}
    fallback = (spec_name(single) if single is not None else None) or "SCOPE"
    with state.telemetry.span("governance.validate", {"canonic.validate.files": len(merged)}) as span:
        result = compile_files(
            merged, previous=previous, root=root, canon_dir=settings.canon_dir, fallback_name=fallback
        )
        if single is not None:
            result = single_file(result, single)
        counts = result.counts()
        span.set_attributes(
            {
                "canonic.validate.score": result.score,
                "canonic.validate.valid": result.valid,
                "canonic.validate.errors": counts["error"],
                "canonic.validate.warnings": counts["warning"],
                "canonic.validate.infos": counts["info"],
            }
        )
    used = sorted(p for p in vendored if any(p in s.files for s in result.chain))
    env = settings.binding_values()
    try:
        revision = compile_policy(result, env).revision
    except Exception:
        revision = None
    payload = report_dict(result, policy_revision=revision)
    payload["vendored_parents"] = used
    governance.record_validation(result, mode=result.mode)
    facts = Facts(action="governance.validate", principal=principal.sub if principal else None)
    decision = audit.decide(request, facts)
    await audit.record(request, decision, facts, {
        "status": 200, "result": "valid" if payload["valid"] else "invalid",
        "latency_ms": round((time.perf_counter() - started) * 1000, 3),
    })
    response = _render(result, format, payload)
    response.headers["x-canonic-decision-id"] = decision.id
    return response

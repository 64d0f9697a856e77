"""``POST /validate``, ``GET /governance`` and readiness over HTTP against the real app
(FastAPI TestClient drives the ASGI app, lifespan included)."""

from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from gateway.app import create_app
from gateway.auth import mint_token
from gateway.settings import BINDING_DEFAULTS, Settings
from governance.decision import Facts

from .docs_helpers import REPO, copy_scope, line_of, replace_once, repo_files

SECRET = "s" * 40
SENTINEL = "sentinel-vast-key-0123456789"


@contextmanager
def client(tmp_path: Path, scope_dir: Path = REPO, env: dict[str, str] | None = None, **overrides):
    settings = Settings(
        scope_dir=scope_dir,
        bindings_env=env if env is not None else {"VASTAI_API_KEY": SENTINEL},
        GATEWAY_JWT_SECRET=SECRET,
        ledger_path=tmp_path / "ledger" / "decisions.jsonl",
        telemetry_enabled=False,
        **overrides,
    )
    with TestClient(create_app(settings)) as c:
        c.settings = settings
        yield c


def token(c, scopes=("governance:read",)) -> dict[str, str]:
    return {"Authorization": "Bearer " + mint_token(c.settings, "ci", list(scopes), 300)}


def scope_files() -> dict[str, str]:
    return {k: v for k, v in repo_files().items() if not k.startswith("canon/")}


@pytest.fixture()
def c(tmp_path):
    with client(tmp_path) as c:
        yield c


def test_valid_documents_with_vendored_parents(c):
    r = c.post("/validate", json={"files": scope_files()})
    assert r.status_code == 200
    body = r.json()
    assert body["valid"] is True and body["score"] == 255 and all(body["bits"].values())
    assert body["policy_revision"].startswith("sha256:") and body["sources_digest"].startswith("sha256:")
    assert "canon/MAGIC/CANON.md" in body["vendored_parents"]
    assert body["counts"]["error"] == 0


def test_invalid_documents_answer_200_with_findings(c):
    files = scope_files()
    files["VASTAI.md"] = replace_once(
        files["VASTAI.md"], "URL. Base of the KILOCODE inference server.", "URL. See 10.0.0.7."
    )
    r = c.post("/validate", json={"files": files})
    assert r.status_code == 200
    body = r.json()
    assert body["valid"] is False and body["bits"]["RELATIONAL"] is False and body["score"] == 255 - 8 - 16
    hits = [(f["code"], f["file"], f["line"]) for f in body["findings"] if f["severity"] == "error"]
    assert ("LITERAL_ENDPOINT", "VASTAI.md", line_of(files["VASTAI.md"], "10.0.0.7")) in hits


def test_previous_enables_history(c):
    files = scope_files()
    old = files["LEARNING.md"]
    files["LEARNING.md"] = replace_once(old, "32768 does not.", "65536 does not.")
    body = c.post("/validate", json={"files": files, "previous": {"LEARNING.md": old}}).json()
    assert [
        (f["code"], f["line"])
        for f in body["findings"]
        if f["severity"] == "error" and f["file"] == "LEARNING.md"
    ] == [("LEDGER_REWRITE", line_of(files["LEARNING.md"], "65536"))]


def test_single_markdown_file(c):
    canon = repo_files()["CANON.md"]
    r = c.post("/validate", content=canon.encode(), headers={"content-type": "text/markdown"})
    assert r.status_code == 200
    body = r.json()
    assert body["mode"] == "single-file" and body["valid"] is True
    assert all(f["file"] == "CANON.md" for f in body["findings"])
    bad = canon.replace("MUST: Route through governed gateway (check: route_declared)", "MUST:")
    body = c.post(
        "/validate?file=CANON.md",
        content=bad.encode(),
        headers={"content-type": "text/markdown; charset=utf-8"},
    ).json()
    assert body["valid"] is False and [f["code"] for f in body["findings"] if f["severity"] == "error"] == [
        "MALFORMED_CONSTRAINT"
    ]


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b"[]",
        b'{"files": []}',
        b'{"files": {}}',
        b'{"files": {"CANON.md": 3}}',
        b'{"files": {"../etc/passwd.md": "x"}}',
        b'{"files": {"/etc/CANON.md": "x"}}',
        b'{"files": {"CANON.txt": "x"}}',
        b'{"files": {"CANON.md": "x"}, "extra": 1}',
        b'{"files": {"CANON.md": "x"}, "previous": "LEARNING.md"}',
        b"[" * 100_000,
        b'{"files": {"CANON.md": "x"}, "root": "../x"}',
    ],
)
def test_malformed_is_400(c, body):
    r = c.post("/validate", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 400, r.text
    assert r.json()["error"]["type"] == "invalid_request_error"


def test_bad_query_is_400(c):
    assert c.post("/validate?format=yaml", json={"files": scope_files()}).status_code == 400
    r = c.post("/validate?file=../x.md", content=b"# x", headers={"content-type": "text/markdown"})
    assert r.status_code == 400


def test_wrong_content_type_is_415(c):
    r = c.post("/validate", content=b"x", headers={"content-type": "application/octet-stream"})
    assert r.status_code == 415
    assert c.post("/validate", data={"files": "x"}).status_code == 415


def test_oversized_is_413(tmp_path):
    with client(tmp_path, validate_max_bytes=1000) as c:
        r = c.post("/validate", json={"files": {"CANON.md": "x" * 2000}})
        assert r.status_code == 413
        # chunked body without a Content-Length is measured while streaming
        r = c.post(
            "/validate",
            content=iter([b'{"files": {"CANON.md": "', b"y" * 1200, b'"}}']),
            headers={"content-type": "application/json"},
        )
        assert r.status_code == 413


@pytest.mark.parametrize(
    "fmt,ctype",
    [
        ("sarif", "application/sarif+json"),
        ("github", "text/plain"),
        ("junit", "application/xml"),
        ("text", "text/plain"),
    ],
)
def test_formats(c, fmt, ctype):
    r = c.post(f"/validate?format={fmt}", json={"files": scope_files()})
    assert r.status_code == 200 and r.headers["content-type"].startswith(ctype)
    if fmt == "sarif":
        doc = json.loads(r.text)
        assert doc["version"] == "2.1.0" and len(doc["runs"]) == 1
    if fmt == "text":
        assert "score: 255/255" in r.text


def test_validate_can_require_a_token(tmp_path):
    with client(tmp_path, validate_requires_auth=True) as c:
        assert c.post("/validate", json={"files": scope_files()}).status_code == 401
        assert (
            c.post("/validate", json={"files": scope_files()}, headers=token(c, ["inference"])).status_code
            == 403
        )
        assert c.post("/validate", json={"files": scope_files()}, headers=token(c)).status_code == 200


def test_governance_needs_a_token_and_hides_secrets(c):
    assert c.get("/governance").status_code == 401
    assert c.get("/governance", headers=token(c, ["inference"])).status_code == 403
    c.post("/validate", json={"files": scope_files()})
    r = c.get("/governance", headers=token(c))
    assert r.status_code == 200
    assert SENTINEL not in r.text
    body = r.json()
    assert [s["name"] for s in body["chain"]] == ["MAGIC", "SERVICES", "VASTAI"]
    assert body["policy_revision"].startswith("sha256:") and body["valid"] is True and body["score"] == 255
    assert {"COMPUTE_PROVISION", "FAIL_CLOSED", "TELEMETRY_EMIT"} <= set(body["capabilities"])
    by_name = {b["name"]: b for b in body["bindings"]}
    assert by_name["VASTAI_API_KEY"] == {
        **by_name["VASTAI_API_KEY"],
        "kind": "secret",
        "type": "secret",
        "present": True,
        "source": "env",
    }
    assert by_name["VASTAI_BASE_URL"]["present"] is False and by_name["VASTAI_BASE_URL"]["type"] == "url"
    assert by_name["MAX_TOKENS"]["present"] is True and by_name["MAX_TOKENS"]["source"] == "default"
    assert body["last_validation"]["valid"] is True and body["last_validation"]["score"] == 255


def test_broken_chain_is_not_ready_and_refuses(tmp_path):
    (tmp_path / "scope").mkdir()
    scope = copy_scope(tmp_path / "scope")
    canon = (scope / "canon/MAGIC/CANON.md").read_text()
    (scope / "canon/MAGIC/CANON.md").write_text(
        replace_once(canon, "inherits: .", "inherits: MAGIC/SERVICES")
    )
    with client(tmp_path, scope_dir=scope) as c:
        r = c.get("/readyz")
        assert r.status_code == 503
        detail = r.json()["checks"]["governance"]
        assert detail["ok"] is False and "CHAIN_CYCLE" in detail["detail"]
        policy = c.app.state.governance.policy
        d = policy.decide(
            Facts(
                action="inference.chat", principal="p", model=BINDING_DEFAULTS["LOCAL_MODEL"], max_tokens=16
            )
        )
        assert d.allow is False
        body = c.get("/governance", headers=token(c)).json()
        assert body["valid"] is False and body["ready"] is False and body["errors"]


def test_unreadable_scope_is_not_ready(tmp_path):
    with client(tmp_path, scope_dir=tmp_path / "nowhere") as c:
        detail = c.get("/readyz").json()["checks"]["governance"]
        assert detail["ok"] is False and "could not be read" in detail["detail"]


def test_mistyped_binding_value_is_not_ready(tmp_path):
    with client(tmp_path, env={"VASTAI_TRIES": "three"}) as c:
        detail = c.get("/readyz").json()["checks"]["governance"]
        assert (
            detail["ok"] is False and "BINDING_TYPE" in detail["detail"] and "three" not in detail["detail"]
        )
        assert "VASTAI_TRIES" in detail["detail"]


def test_every_served_route_is_declared(c):
    from governance.checks_spec import served_routes

    paths = c.get("/openapi.json").json()["paths"]
    served = [(m.upper(), path) for path, ops in paths.items() for m in ops]
    assert ("POST", "/validate") in served and ("GET", "/governance") in served
    assert served_routes(c.app.state.governance.result.scope, served) == []
    assert (
        served_routes(c.app.state.governance.result.scope, [("GET", "/v1/secret-door")])[0].code
        == "ROUTE_UNDECLARED"
    )

"""Governance actions are decisions too: /validate and /governance land in the decision ledger,
carry a decision id, and are refused (503) while the ledger cannot record."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from gateway.app import create_app
from gateway.auth import mint_token
from gateway.ledger_verify import read_tail, verify_chain
from gateway.settings import Settings

REPO = Path(__file__).resolve().parents[2]
SECRET = "audit-test-secret-0123456789abcdef01"
DOCS = ["CANON.md", "VASTAI.md", "VOCAB.md", "README.md", "ROADMAP.md", "COVERAGE.md", "LEARNING.md"]


@pytest.fixture
def gateway(tmp_path):
    settings = Settings(scope_dir=REPO, jwt_secret=SECRET, bindings_env={}, telemetry_enabled=False,
                        ledger_path=tmp_path / "ledger" / "decisions.jsonl")
    with TestClient(create_app(settings)) as client:
        yield client, settings


def _files() -> dict[str, str]:
    return {name: (REPO / name).read_text() for name in DOCS}


def test_validate_and_governance_are_recorded(gateway):
    client, settings = gateway
    r = client.post("/validate", json={"files": _files()}, headers={"x-request-id": "ci-run-42"})
    assert r.status_code == 200 and r.json()["score"] == 255
    validate_id = r.headers["x-canonic-decision-id"]
    token = mint_token(settings, "auditor", ["governance:read"], 300)
    g = client.get("/governance", headers={"Authorization": f"Bearer {token}"})
    assert g.status_code == 200
    read_id = g.headers["x-canonic-decision-id"]
    path = settings.resolve(settings.ledger_path)
    records = read_tail(path, 10)
    by_id = {r["decision_id"]: r for r in records}
    assert by_id[validate_id]["action"] == "governance.validate"
    assert by_id[validate_id]["request_id"] == "ci-run-42"
    assert by_id[validate_id]["outcome"] == "valid"
    assert by_id[read_id]["action"] == "governance.read" and by_id[read_id]["principal"] == "auditor"
    assert verify_chain(path).ok
    assert token not in path.read_text()


def test_invalid_documents_are_recorded_as_invalid(gateway):
    client, settings = gateway
    files = _files()
    files["VOCAB.md"] = ""
    r = client.post("/validate", json={"files": files})
    assert r.status_code == 200 and r.json()["valid"] is False
    record = read_tail(settings.resolve(settings.ledger_path), 1)[0]
    assert record["decision_id"] == r.headers["x-canonic-decision-id"] and record["outcome"] == "invalid"


def test_validate_fails_closed_while_the_ledger_cannot_write(gateway):
    client, settings = gateway
    path = settings.resolve(settings.ledger_path)
    assert client.post("/validate", json={"files": _files()}).status_code == 200
    parent = path.parent
    shutil.move(str(parent), str(parent) + ".away")
    parent.write_text("not a directory")  # the ledger's directory is now a file: writes fail
    try:
        statuses = []
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            r = client.post("/validate", json={"files": _files()})
            statuses.append(r.status_code)
            if r.status_code == 503:
                break
            time.sleep(0.05)
        assert statuses[-1] == 503, statuses
        assert r.json()["error"]["code"] == "ledger_unavailable"
    finally:
        parent.unlink()
        shutil.move(str(parent) + ".away", str(parent))
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        r = client.post("/validate", json={"files": _files()})
        if r.status_code == 200:
            break
        time.sleep(0.2)
    assert r.status_code == 200, r.text
    assert verify_chain(path).ok

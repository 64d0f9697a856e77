"""The committed openapi/openapi.json matches what the app generates now."""

from __future__ import annotations

import json

from gateway.openapi_dump import DEFAULT_PATH, REGENERATE, render


def test_committed_openapi_is_current():
    assert DEFAULT_PATH.exists(), f"openapi/openapi.json is missing; generate it with: {REGENERATE}"
    assert DEFAULT_PATH.read_text() == render(), f"openapi/openapi.json is stale; regenerate it with: {REGENERATE}"


def test_openapi_documents_the_inference_routes():
    doc = json.loads(DEFAULT_PATH.read_text())
    paths = doc["paths"]
    for path, method in (("/v1/chat/completions", "post"), ("/v1/completions", "post"), ("/v1/models", "get")):
        op = paths[path][method]
        assert {"200", "401", "403", "503"} <= set(op["responses"]), path
    body = paths["/v1/chat/completions"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert {"model", "messages"} <= set(body["required"])

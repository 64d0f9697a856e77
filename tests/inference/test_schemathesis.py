"""Schemathesis over every operation in the committed OpenAPI document, against the live app
(uvicorn on loopback, fake vLLM upstream) with a valid token: no 5xx and no response that
violates the documented schema, status codes or content types. The document itself is kept current by test_openapi.py."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from gateway.auth import SCOPES, mint_token
from gateway.openapi_dump import DEFAULT_PATH
from tests.fakes.fake_vllm import FakeVLLM
from tests.inference.conftest import base_env, running_gateway

schema = schemathesis.openapi.from_path(str(DEFAULT_PATH))


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    with FakeVLLM(model="fake-model") as fake:
        env = base_env(fake, VASTAI_API_KEY=None, VASTAI_TIMEOUT_MS="2000")
        with running_gateway(tmp_path_factory.mktemp("schemathesis"), env) as gw:
            token = mint_token(gw.settings, "schemathesis", SCOPES, 600)
            yield gw.url, {"Authorization": f"Bearer {token}"}


@schema.parametrize()
@settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_api_conforms(case, live):
    url, auth = live
    # every route documents its statuses and content types
    checks = [not_a_server_error, response_schema_conformance, status_code_conformance, content_type_conformance]
    case.call_and_validate(base_url=url, headers=auth, timeout=10, checks=checks)

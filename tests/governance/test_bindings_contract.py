"""The runtime bindings the documents declare are the contract between the SPEC, Settings'
shipped defaults and the Policy: names, kinds, types and optionality are pinned here."""

from __future__ import annotations

from gateway.settings import BINDING_DEFAULTS
from governance.checks_spec import effective_bindings

from .docs_helpers import compile_, repo_files

# name -> (type, optional), as the Policy reads them
EXPECTED = {
    "VASTAI_API_KEY": ("secret", True),
    "GATEWAY_JWT_SECRET": ("secret", True),
    "VASTAI_BASE_URL": ("url", True),
    "VASTAI_MODEL": ("string", True),
    "VASTAI_KILOCODE_BASE_URL": ("url", True),
    "VASTAI_KILOCODE_MODEL": ("string", True),
    "VASTAI_TOKENS_MAX": ("int", True),
    "VASTAI_KILOCODE_TOKENS_MAX": ("int", True),
    "VASTAI_TIMEOUT_MS": ("int", False),
    "VASTAI_TRIES": ("int", False),
    "VASTAI_RETRY_DELAY_MS": ("int", False),
    "VASTAI_INSTANCE_ID": ("string", True),
    "FALLBACK_PROVIDER": ("string", True),
    "TOKENS_MIN": ("int", False),
    "TOKENS_MAX": ("int", False),
    "MAX_TOKENS": ("int", False),
    "ALLOWED_MODELS": ("csv", True),
    "PASSTHROUGH_FIELDS": ("csv", True),
    "VASTAI_ALLOWED_GPUS": ("csv", True),
    "VASTAI_MAX_DPH": ("decimal", True),
    "VASTAI_MAX_INSTANCES": ("int", True),
    "VASTAI_ALLOWED_IMAGES": ("csv", True),
    "LOCAL_MODEL": ("string", False),
    "LOCAL_MODEL_PATH": ("string", True),
    "LOCAL_N_CTX": ("int", False),
    "LOCAL_TOKENS_MAX": ("int", True),
    "LOCAL_ALLOWED_GPUS": ("csv", False),
    "LOCAL_MAX_DPH": ("decimal", False),
    "LOCAL_MAX_INSTANCES": ("int", False),
    "LOCAL_ALLOWED_TEMPLATES": ("csv", True),
    "BASILICA_API_TOKEN": ("secret", True),
    "BASILICA_ALLOWED_GPUS": ("csv", True),
    "BASILICA_MAX_DPH": ("decimal", True),
    "BASILICA_MAX_INSTANCES": ("int", True),
}


def bindings():
    return effective_bindings(compile_(repo_files()).chain)


def test_declared_bindings_match_the_contract():
    got = {name: (b.type, b.optional) for name, b in bindings().items()}
    assert got == EXPECTED
    assert all(b.secret == (b.type == "secret") for b in bindings().values())
    assert all(b.file == "VASTAI.md" for b in bindings().values())


def test_every_shipped_default_is_a_declared_binding():
    assert set(BINDING_DEFAULTS) <= set(bindings())


def test_every_required_binding_has_a_shipped_default():
    required = {n for n, b in bindings().items() if not b.optional}
    assert required <= set(BINDING_DEFAULTS)
    from governance.checks_spec import env_values
    from governance.compiler import compile_policy

    r = compile_(repo_files())
    assert r.valid and env_values(r.chain, dict(BINDING_DEFAULTS)) == []
    assert compile_policy(r, dict(BINDING_DEFAULTS)).missing == ()


def test_routes_table_lists_the_gateway_routes_with_known_actions():
    scope = compile_(repo_files()).scope
    routes = {(r.method, r.path): r.action for r in scope.routes}
    assert routes[("POST", "/v1/chat/completions")] == "inference.chat"
    assert routes[("POST", "/v1/compute/instances")] == "compute.provision"
    assert routes[("DELETE", "/v1/compute/instances")] == "compute.teardown"
    assert {routes[("GET", p)] for p in ("/healthz", "/readyz", "/metrics")} == {"none"}
    assert len(routes) == 15

"""The running gateway and the bindings' values (review D1, D2, D11): a config problem is a
``binding_missing`` refusal citing the binding's line and a not-ready /readyz; it never moves the
documents' score shown by GET /governance."""

from __future__ import annotations

import pytest

from gateway.settings import BINDING_DEFAULTS
from governance.checks_spec import env_values
from governance.decision import Facts

from .docs_helpers import line_of, repo_files
from .test_http_validate import SENTINEL, client, scope_files, token


def chat(c):
    facts = Facts(action="inference.chat", principal="p", model=BINDING_DEFAULTS["LOCAL_MODEL"], max_tokens=5)
    return c.app.state.governance.policy.decide(facts)


@pytest.mark.parametrize(
    ("name", "value", "code"),
    [("VASTAI_TRIES", "three", "BINDING_TYPE"), ("LOCAL_MODEL", "", "BINDING_MISSING"),
     ("TOKENS_MAX", "100000", "LIMIT_CONFIG")],
)
def test_bad_binding_value_refuses_with_binding_missing_citing_its_line(tmp_path, name, value, code):
    with client(tmp_path, env={"VASTAI_API_KEY": SENTINEL, name: value}) as c:
        d = chat(c)
        cited = f"VASTAI.md:L{line_of(repo_files()['VASTAI.md'], f'| {name} |')}"
        assert not d.allow and d.reason_code == "binding_missing", d.reasons
        assert cited in d.rule_ids and any(name in r and cited in r for r in d.reasons), d.reasons
        body = c.get("/governance", headers=token(c)).json()
        assert body["valid"] is True and body["score"] == 255 and all(body["bits"].values())
        assert body["errors"] == [] and body["ready"] is False
        assert [p["code"] for p in body["binding_problems"]] == [code]
        assert any(name in m for m in body["missing"])
        detail = c.get("/readyz").json()["checks"]["governance"]
        assert detail["ok"] is False and name in detail["detail"] and code in detail["detail"]


@pytest.mark.parametrize(
    "env",
    [{"LOCAL_MAX_DPH": "-1"}, {"VASTAI_TRIES": "0"}, {"VASTAI_BASE_URL": "http://127.0.0.1:9/v1"},
     {"FALLBACK_PROVIDER": "OPENROUTER"}, {"TOKENS_MIN": "+5"}, {"TOKENS_MIN": "5"}, {}],
)
def test_readiness_agrees_with_the_policy(tmp_path, env):
    with client(tmp_path, env={"VASTAI_API_KEY": SENTINEL, **env}) as c:
        state = c.app.state.governance
        ready = c.get("/readyz").json()["checks"]["governance"]
        assert ready["ok"] is (state.policy.missing == ()) is chat(c).allow, (ready, state.policy.missing)
        found = env_values(state.result.chain, c.settings.binding_values())
        assert bool(found) is bool(state.policy.missing)
        for missing in state.policy.missing:
            assert missing in ready["detail"]


def test_shared_int_parser_accepts_what_the_policy_accepts(tmp_path):
    r_env = {**BINDING_DEFAULTS, "TOKENS_MIN": "+5"}
    with client(tmp_path, env={"VASTAI_API_KEY": SENTINEL, "TOKENS_MIN": "+5"}) as c:
        assert env_values(c.app.state.governance.result.chain, r_env) == []
        assert c.app.state.governance.readiness()["ok"] is True and chat(c).allow


def test_last_validation_is_the_startup_compile_and_callers_do_not_overwrite_it(tmp_path):
    with client(tmp_path) as c:
        first = c.get("/governance", headers=token(c)).json()
        assert first["last_validation"]["valid"] is True and first["last_validation"]["score"] == 255
        assert first["last_request_validation"] is None
        files = scope_files()
        files["VOCAB.md"] = "# nothing\n"
        assert c.post("/validate", json={"files": files}).json()["valid"] is False
        after = c.get("/governance", headers=token(c)).json()
        assert after["last_validation"] == first["last_validation"]
        assert after["last_request_validation"]["valid"] is False

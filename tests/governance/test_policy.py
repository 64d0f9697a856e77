"""Policy.compile and Policy.decide on hand-built IR: bindings, providers, tokens, revision."""

from __future__ import annotations

import dataclasses

import pytest

from governance.decision import ACTIONS, Facts
from governance.ir import Binding, Constraint
from governance.policy import Policy

from .test_policy_fixtures import FAIL_CLOSED_ID, REMOTE, chain, env, line_of

GOVERNED = sorted(ACTIONS - {"governance.validate", "governance.read"})


def compile_(chain_=None, **overrides):
    return Policy.compile(chain_ or chain(), env(**overrides), sources_digest="sha256:src")


def chat(policy, model, max_tokens=None, action="inference.chat"):
    return policy.decide(Facts(action=action, principal="alice", model=model, max_tokens=max_tokens))


# ---------------------------------------------------------------- compile: providers and bindings


def test_defaults_bind_local_only_and_report_remote_as_unbound():
    p = compile_()
    assert p.missing == ()
    assert set(p.providers) == {"LOCAL"}
    local = p.providers["LOCAL"]
    assert (local.base_url, local.model, local.tokens_min, local.tokens_max, local.tokens_default) == (
        None, "gemma-3-270m", 1, 512, 512,
    )
    assert set(p.unbound) == {"VASTAI_BASE_URL", "VASTAI_MODEL", "VASTAI_KILOCODE_BASE_URL",
                              "VASTAI_KILOCODE_MODEL"}
    assert p.fallback_provider is None
    assert set(p.compute) == {"local"}
    assert p.revision.startswith("sha256:") and len(p.revision) == 7 + 64
    with pytest.raises(TypeError):
        p.providers["X"] = local  # read-only mapping
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.revision = "x"


def test_remote_providers_bind_with_per_prefix_tunables_and_shared_key():
    p = compile_(**REMOTE, VASTAI_KILOCODE_TIMEOUT_MS="1500", VASTAI_KILOCODE_TRIES="1", VASTAI_TOKENS_MAX="8192")
    assert p.missing == ()
    vast, kilo = p.providers["VASTAI"], p.providers["KILOCODE"]
    assert (vast.prefix, vast.base_url, vast.timeout_ms, vast.tries, vast.retry_delay_ms) == (
        "VASTAI", REMOTE["VASTAI_BASE_URL"], 60000, 3, 250,
    )
    assert (kilo.prefix, kilo.timeout_ms, kilo.tries, kilo.retry_delay_ms) == ("VASTAI_KILOCODE", 1500, 1, 250)
    assert vast.api_key == kilo.api_key == REMOTE["VASTAI_API_KEY"]
    # the provider ceiling replaces the global one and may exceed it
    assert (vast.tokens_max, kilo.tokens_max) == (8192, 4096)
    assert p.provider_for(REMOTE["VASTAI_MODEL"]) is vast
    assert p.provider_for(REMOTE["VASTAI_KILOCODE_MODEL"]) is kilo
    assert p.provider_for("nope") is None and p.provider_for(None) is None  # type: ignore[arg-type]
    assert line_of("VASTAI_BASE_URL") in vast.rule_ids and line_of("VASTAI_MODEL") in vast.rule_ids
    assert p.unbound == ()


@pytest.mark.parametrize(
    "overrides, entry",
    [
        ({"VASTAI_BASE_URL": "http://127.0.0.1:1/v1"}, "VASTAI_MODEL"),
        ({"VASTAI_MODEL": "qwen"}, "VASTAI_BASE_URL"),
        ({"VASTAI_KILOCODE_MODEL": "ds"}, "VASTAI_KILOCODE_BASE_URL"),
        ({"TOKENS_MAX": None}, "TOKENS_MAX"),  # required, declared
        ({"TOKENS_MAX": "lots"}, "TOKENS_MAX"),  # mistyped int
        ({"TOKENS_MAX": "4_096"}, "TOKENS_MAX"),  # int() would take it; plain base-10 only
        ({"VASTAI_TRIES": "0"}, "VASTAI_TRIES"),
        ({"VASTAI_TIMEOUT_MS": "1.5"}, "VASTAI_TIMEOUT_MS"),
        ({"LOCAL_MAX_DPH": "-1"}, "LOCAL_MAX_DPH"),  # decimal >= 0
        ({"LOCAL_MAX_DPH": "NaN"}, "LOCAL_MAX_DPH"),
        ({"LOCAL_ALLOWED_GPUS": "cpu,,gpu"}, "LOCAL_ALLOWED_GPUS"),  # csv items non-empty
        ({"LOCAL_MAX_INSTANCES": None}, "LOCAL_MAX_INSTANCES"),  # caps come together
        ({"VASTAI_BASE_URL": "ftp://127.0.0.1/v1", "VASTAI_MODEL": "q"}, "VASTAI_BASE_URL"),
        ({"VASTAI_BASE_URL": "http:///v1", "VASTAI_MODEL": "q"}, "VASTAI_BASE_URL"),
        ({"LOCAL_MODEL": " "}, "LOCAL_MODEL"),  # required string: blank is unset
        ({"FALLBACK_PROVIDER": "no such!"}, "FALLBACK_PROVIDER"),
        ({"FALLBACK_PROVIDER": "OPENROUTER"}, "OPENROUTER_BASE_URL"),  # names an unbound provider
        ({"FALLBACK_PROVIDER": "KILOCODE"}, "VASTAI_KILOCODE_BASE_URL"),
        ({"LOCAL_N_CTX": "big"}, "LOCAL_N_CTX"),  # declared, unused by the policy, still typed
    ],
)
def test_missing_or_mistyped_binding_denies_every_governed_action(overrides, entry):
    p = compile_(**overrides)
    assert entry in p.missing
    for action in GOVERNED:
        d = p.decide(Facts(action=action, model="gemma-3-270m", provider="local", gpu="cpu",
                           template="gemma-3-270m", cost_per_hour=0, instance_count=0))
        assert not d.allow and d.reason_code == "binding_missing", action
        assert any(entry.split("(")[0] in r or entry in r for r in d.reasons)
        assert FAIL_CLOSED_ID in d.rule_ids
        assert d.policy_revision == p.revision
    for action in ("governance.validate", "governance.read"):
        assert p.decide(Facts(action=action)).allow  # CI must still be able to validate


def test_binding_missing_cites_the_binding_line():
    p = compile_(TOKENS_MAX="x")
    d = chat(p, "gemma-3-270m")
    assert line_of("TOKENS_MAX") in d.rule_ids


def test_token_limit_config_is_checked_at_compile_time():
    p = compile_(TOKENS_MIN="600", LOCAL_TOKENS_MAX="512")
    assert [m for m in p.missing if m.startswith("LIMIT_CONFIG")], p.missing
    assert not chat(p, "gemma-3-270m").allow
    assert compile_(TOKENS_MIN="0").missing  # lo must be >= 1


def test_required_stays_required_when_a_child_redeclares_it_optional():
    weaker = Binding("TOKENS_MAX", False, "int", True, "VASTAI.md", 99)
    p = Policy.compile(chain(extra=[weaker]), env(TOKENS_MAX=None), sources_digest="s")
    assert "TOKENS_MAX" in p.missing


# ---------------------------------------------------------------- decide: inference


def test_clamp_default_and_rule_ids():
    p = compile_(TOKENS_MIN="16", LOCAL_TOKENS_MAX="256")
    cases = {None: 256, 1: 16, 16: 16, 100: 100, 256: 256, 10**9: 256}
    for asked, applied in cases.items():
        d = chat(p, "gemma-3-270m", asked)
        assert d.allow and d.reason_code == "allowed"
        assert d.obligations == {"max_tokens": applied, "provider": "LOCAL"}
        assert line_of("TOKENS_MIN") in d.rule_ids and line_of("LOCAL_TOKENS_MAX") in d.rule_ids
        assert FAIL_CLOSED_ID in d.rule_ids
    assert line_of("MAX_TOKENS") in chat(p, "gemma-3-270m").rule_ids  # the default's line cited


def test_max_tokens_default_is_clamped_into_the_bounds():
    assert chat(compile_(MAX_TOKENS="100"), "gemma-3-270m").obligations["max_tokens"] == 100
    assert chat(compile_(MAX_TOKENS="9999"), "gemma-3-270m").obligations["max_tokens"] == 512
    assert chat(compile_(MAX_TOKENS="2", TOKENS_MIN="8"), "gemma-3-270m").obligations["max_tokens"] == 8


@pytest.mark.parametrize("bad", [0, -1, True, False, 1.0, 1.5, "10", [10], {"n": 1}, float("nan")])
def test_tokens_invalid(bad):
    for action in ("inference.chat", "inference.completion"):
        d = chat(compile_(), "gemma-3-270m", bad, action=action)
        assert not d.allow and d.reason_code == "tokens_invalid"


@pytest.mark.parametrize("model", [None, "", 5, ["gemma-3-270m"], b"gemma-3-270m"])
def test_model_missing(model):
    d = chat(compile_(), model)
    assert not d.allow and d.reason_code == "model_missing"


def test_model_not_bound_and_not_allowed():
    p = compile_(**REMOTE, ALLOWED_MODELS="gemma-3-270m, " + REMOTE["VASTAI_MODEL"])
    assert chat(p, "gpt-4").reason_code == "model_not_bound"
    d = chat(p, REMOTE["VASTAI_KILOCODE_MODEL"])
    assert not d.allow and d.reason_code == "model_not_allowed" and line_of("ALLOWED_MODELS") in d.rule_ids
    assert chat(p, REMOTE["VASTAI_MODEL"], 10).obligations == {"max_tokens": 10, "provider": "VASTAI"}
    listed = p.decide(Facts(action="inference.models"))
    assert listed.allow and listed.obligations["models"] == [REMOTE["VASTAI_MODEL"], "gemma-3-270m"]


def test_fallback_provider_by_convention():
    p = compile_(**REMOTE, FALLBACK_PROVIDER="openrouter", OPENROUTER_BASE_URL="http://127.0.0.1:18003/v1",
                 OPENROUTER_MODEL="Qwen/Qwen2.5-7B-Instruct", OPENROUTER_API_KEY="or-secret",
                 OPENROUTER_TIMEOUT_MS="2000", OPENROUTER_TOKENS_MAX="1024")
    assert p.missing == () and p.fallback_provider == "OPENROUTER"
    fb = p.providers["OPENROUTER"]
    assert (fb.prefix, fb.timeout_ms, fb.tokens_max, fb.api_key) == ("OPENROUTER", 2000, 1024, "or-secret")
    # the same model on the primary and the fallback: the primary serves it
    assert p.provider_for("Qwen/Qwen2.5-7B-Instruct").name == "VASTAI"
    local = compile_(FALLBACK_PROVIDER="LOCAL")
    assert local.fallback_provider == "LOCAL" and local.missing == ()


def test_fallback_with_a_bad_typed_conventional_binding_is_missing():
    p = compile_(FALLBACK_PROVIDER="OR", OR_BASE_URL="not a url", OR_MODEL="m")
    assert "OR_BASE_URL" in p.missing and p.fallback_provider is None


# ---------------------------------------------------------------- revision and secrets


def test_revision_covers_values_but_secrets_only_by_presence():
    base = compile_(**REMOTE)
    assert compile_(**REMOTE).revision == base.revision
    assert compile_(**{**REMOTE, "VASTAI_API_KEY": "another-secret"}).revision == base.revision
    assert compile_(**{**REMOTE, "VASTAI_API_KEY": None}).revision != base.revision
    assert compile_(**{**REMOTE, "TOKENS_MAX": "2048"}).revision != base.revision
    other_sources = Policy.compile(chain(), env(**REMOTE), sources_digest="sha256:other")
    assert other_sources.revision != base.revision and other_sources.sources_digest == "sha256:other"


def test_secrets_never_in_repr_or_reasons():
    secret = REMOTE["VASTAI_API_KEY"]
    p = compile_(**REMOTE)
    assert secret not in repr(p) and secret not in repr(p.providers["VASTAI"])
    bad = compile_(**{**REMOTE, "VASTAI_BASE_URL": secret})  # a secret pasted into the wrong var
    d = chat(bad, "x")
    assert secret not in repr(d) and secret not in repr(bad)


# ---------------------------------------------------------------- decide: the rest


def test_unknown_action_and_exceptions_deny():
    p = compile_()
    for action in ("inference.delete", "", None, 7, ["inference.chat"]):
        d = p.decide(Facts(action=action))  # type: ignore[arg-type]
        assert not d.allow and d.reason_code == "action_unknown"
        assert FAIL_CLOSED_ID in d.rule_ids
    d = p.decide(object())  # type: ignore[arg-type]
    assert not d.allow and d.reason_code == "internal_deny" and d.policy_revision == p.revision


def test_fail_closed_constraint_cited_only_when_present():
    p = Policy.compile(chain(fail_closed=False), env(), sources_digest="s")
    d = chat(p, "nope")
    assert d.reason_code == "model_not_bound" and FAIL_CLOSED_ID not in d.rule_ids


def test_refusing_denies_inference_and_compute():
    p = Policy.refusing("governance chain did not compile: CHAIN_BREAK", sources_digest="sha256:s")
    assert p.providers == {} and p.compute == {} and p.sources_digest == "sha256:s"
    for action in GOVERNED:
        d = p.decide(Facts(action=action, model="gemma-3-270m"))
        assert not d.allow and d.reasons == ("governance chain did not compile: CHAIN_BREAK",)
        assert d.policy_revision == p.revision
    assert p.decide(Facts(action="governance.validate")).allow


def test_decision_ids_are_unique():
    p = compile_()
    ids = {chat(p, "gemma-3-270m").id for _ in range(200)}
    assert len(ids) == 200


def test_fail_closed_repeated_by_a_child_is_cited_once_at_the_parent():
    scopes = chain()
    scopes[1].constraints.append(
        Constraint("VASTAI", "CANON.md", 15, "MUST", "Fail  closed on validation failure", kind="fail_closed"))
    scopes[1].constraints.append(
        Constraint("VASTAI", "CANON.md", 17, "MUST NOT", "Bypass governance validation", kind="fail_closed"))
    p = Policy.compile(scopes, env(), sources_digest="s")
    d = chat(p, "gemma-3-270m")
    assert FAIL_CLOSED_ID in d.rule_ids and "CANON.md:L15" not in d.rule_ids and "CANON.md:L17" in d.rule_ids

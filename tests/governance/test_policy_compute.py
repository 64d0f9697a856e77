"""Policy.decide on compute actions: provider, template, GPU, price, budget, instance caps."""

from __future__ import annotations

from decimal import Decimal

import pytest

from governance.decision import Facts
from governance.policy import ComputeCaps, Policy

from .test_policy_fixtures import FAIL_CLOSED_ID, chain, env, line_of

VAST = {
    "VASTAI_ALLOWED_GPUS": "RTX 4090, RTX 3090",
    "VASTAI_MAX_DPH": "0.60",
    "VASTAI_MAX_INSTANCES": "2",
    "VASTAI_ALLOWED_IMAGES": "vllm/vllm-openai:v0.6.3",
}
IMAGE = "vllm/vllm-openai:v0.6.3"


def policy(**overrides):
    return Policy.compile(chain(), env(**overrides), sources_digest="sha256:src")


def provision(p, **facts):
    base = dict(provider="vast", gpu="RTX 4090", template=IMAGE, cost_per_hour=0.45, instance_count=0)
    base.update(facts)
    return p.decide(Facts(action="compute.provision", principal="svc", **base))


def test_caps_compiled_per_provider():
    p = policy(**VAST)
    vast = p.compute["vast"]
    assert (vast.provider, vast.allowed_gpus, vast.max_dph, vast.max_instances, vast.allowed_templates) == (
        "vast", frozenset({"RTX 4090", "RTX 3090"}), Decimal("0.60"), 2, frozenset({IMAGE}))
    assert isinstance(vast, ComputeCaps)
    # each cap knows its own binding line, so a denial cites only the rule that denied it
    assert vast.dph_ids == (line_of("VASTAI_MAX_DPH"),) and vast.gpu_ids == (line_of("VASTAI_ALLOWED_GPUS"),)
    assert vast.count_ids == (line_of("VASTAI_MAX_INSTANCES"),)
    assert vast.template_ids == (line_of("VASTAI_ALLOWED_IMAGES"),)
    assert line_of("VASTAI_MAX_DPH") in vast.rule_ids and line_of("VASTAI_ALLOWED_IMAGES") in vast.rule_ids
    local = p.compute["local"]
    assert (local.allowed_gpus, local.max_dph, local.max_instances, local.allowed_templates) == (
        frozenset({"cpu"}), Decimal(0), 1, frozenset({"gemma-3-270m"}),
    )
    assert "basilica" not in p.compute  # caps not bound: optional never means unlimited


def test_allowed_provision_carries_the_effective_cap():
    p = policy(**VAST)
    d = provision(p)
    assert d.allow and d.reason_code == "allowed"
    assert d.obligations == {"provider": "vast", "max_cost_per_hour": "0.60"}
    assert FAIL_CLOSED_ID in d.rule_ids and line_of("VASTAI_MAX_DPH") in d.rule_ids
    tightened = provision(p, budget=0.5)
    assert tightened.allow and tightened.obligations["max_cost_per_hour"] == "0.5"
    loosened = provision(p, budget=100)  # a budget never loosens the cap
    assert loosened.allow and loosened.obligations["max_cost_per_hour"] == "0.60"
    for cost in (0, 0.6, Decimal("0.60"), Decimal("0.1")):
        assert provision(p, cost_per_hour=cost).allow, cost
    assert provision(p, instance_count=1).allow


@pytest.mark.parametrize(
    "facts, code",
    [
        ({"provider": "basilica"}, "provider_not_allowed"),
        ({"provider": "runpod"}, "provider_not_allowed"),
        ({"provider": 3}, "provider_not_allowed"),
        ({"template": "evil/image:latest"}, "template_not_allowed"),
        ({"gpu": "H100"}, "gpu_not_allowed"),
        ({"gpu": "rtx 4090"}, "gpu_not_allowed"),  # exact strings
        ({"cost_per_hour": 0.61}, "price_over_cap"),
        ({"cost_per_hour": Decimal("0.6000001")}, "price_over_cap"),
        ({"cost_per_hour": 0.45, "budget": 0.40}, "budget_exceeded"),
        ({"budget": 0}, "budget_invalid"),
        ({"budget": -1}, "budget_invalid"),
        ({"budget": "1.0"}, "budget_invalid"),
        ({"budget": True}, "budget_invalid"),
        ({"budget": float("inf")}, "budget_invalid"),
        ({"cost_per_hour": -0.1}, "facts_invalid"),
        ({"cost_per_hour": "0.1"}, "facts_invalid"),
        ({"cost_per_hour": True}, "facts_invalid"),
        ({"cost_per_hour": float("nan")}, "facts_invalid"),
        ({"cost_per_hour": Decimal("NaN")}, "facts_invalid"),
        ({"instance_count": 2}, "instance_cap"),
        ({"instance_count": 5}, "instance_cap"),
        ({"instance_count": -1}, "facts_invalid"),
        ({"instance_count": 1.0}, "facts_invalid"),
        ({"instance_count": False}, "facts_invalid"),
        ({"provider": None}, "facts_missing"),
        ({"gpu": None}, "facts_missing"),
        ({"template": None}, "facts_missing"),
        ({"cost_per_hour": None}, "facts_missing"),
        ({"instance_count": None}, "facts_missing"),
    ],
)
def test_provision_denials(facts, code):
    d = provision(policy(**VAST), **facts)
    assert not d.allow and d.reason_code == code, d.reasons
    assert FAIL_CLOSED_ID in d.rule_ids and d.obligations == {}


def test_provision_model_checked_against_allowed_models():
    p = policy(**VAST, ALLOWED_MODELS="Qwen/Qwen2.5-7B-Instruct")
    assert provision(p, model="Qwen/Qwen2.5-7B-Instruct").allow
    d = provision(p, model="other/model")
    assert not d.allow and d.reason_code == "model_not_allowed"


def test_local_provision_defaults():
    p = policy()
    ok = provision(p, provider="local", gpu="cpu", template="gemma-3-270m", cost_per_hour=0)
    assert ok.allow
    assert provision(p, provider="local", gpu="cuda", template="gemma-3-270m", cost_per_hour=0).reason_code == (
        "gpu_not_allowed")
    assert provision(p, provider="local", gpu="cpu", template="other", cost_per_hour=0).reason_code == (
        "template_not_allowed")
    assert provision(p, provider="local", gpu="cpu", template="gemma-3-270m", cost_per_hour=0,
                     instance_count=1).reason_code == "instance_cap"
    custom = policy(LOCAL_ALLOWED_TEMPLATES="a.gguf,b.gguf")
    assert custom.compute["local"].allowed_templates == frozenset({"a.gguf", "b.gguf"})


def test_vast_without_images_allows_no_template():
    p = policy(**{**VAST, "VASTAI_ALLOWED_IMAGES": None})
    assert p.compute["vast"].allowed_templates == frozenset()
    assert provision(p).reason_code == "template_not_allowed"


def test_zero_instance_cap_denies_every_provision():
    p = policy(**{**VAST, "VASTAI_MAX_INSTANCES": "0"})
    assert p.missing == () and provision(p).reason_code == "instance_cap"


@pytest.mark.parametrize("action", ["compute.read", "compute.teardown", "compute.offers"])
def test_compute_lookups(action):
    p = policy(**VAST)
    assert p.decide(Facts(action=action)).allow
    assert p.decide(Facts(action=action, provider="vast")).allow
    for bad in ("basilica", "", 1, ["vast"]):
        d = p.decide(Facts(action=action, provider=bad))
        assert not d.allow and d.reason_code == "provider_not_allowed"


@pytest.mark.parametrize(
    "facts, code, binding",
    [
        ({"template": "evil/image:latest"}, "template_not_allowed", "VASTAI_ALLOWED_IMAGES"),
        ({"gpu": "H100"}, "gpu_not_allowed", "VASTAI_ALLOWED_GPUS"),
        ({"cost_per_hour": 0.9}, "price_over_cap", "VASTAI_MAX_DPH"),
        ({"budget": 0.3}, "budget_exceeded", "VASTAI_MAX_DPH"),
        ({"instance_count": 2}, "instance_cap", "VASTAI_MAX_INSTANCES"),
    ],
)
def test_a_compute_denial_cites_only_the_rule_that_denied(facts, code, binding):
    d = provision(policy(**VAST), **facts)
    assert not d.allow and d.reason_code == code
    caps = {"VASTAI_ALLOWED_IMAGES", "VASTAI_ALLOWED_GPUS", "VASTAI_MAX_DPH", "VASTAI_MAX_INSTANCES"}
    cited = {name for name in caps if line_of(name) in d.rule_ids}
    assert cited == {binding}
    assert FAIL_CLOSED_ID in d.rule_ids

"""Property tests: decide never raises, never allows on malformed or missing facts, and the clamp
always lands in [lo, hi]; compile never raises on junk environments and then fails closed."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from governance.decision import ACTIONS, Decision, Facts
from governance.policy import Policy

from .test_policy_fixtures import REMOTE, SPEC_BINDINGS, chain, env

VAST = {
    "VASTAI_ALLOWED_GPUS": "RTX 4090,RTX 3090",
    "VASTAI_MAX_DPH": "0.60",
    "VASTAI_MAX_INSTANCES": "2",
    "VASTAI_ALLOWED_IMAGES": "vllm/vllm-openai:v0.6.3",
}
POLICIES = [
    Policy.compile(chain(), env(), sources_digest="s0"),
    Policy.compile(chain(), env(**REMOTE, **VAST, ALLOWED_MODELS="gemma-3-270m"), sources_digest="s1"),
    Policy.compile(chain(), env(**REMOTE, TOKENS_MAX="nope"), sources_digest="s2"),  # missing: deny all
    Policy.refusing("chain did not compile"),
]
GOOD_STRINGS = ["gemma-3-270m", REMOTE["VASTAI_MODEL"], "local", "vast", "basilica", "cpu", "RTX 4090",
                "vllm/vllm-openai:v0.6.3", ""]

junk = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**20), max_value=10**20),
    st.integers(min_value=-2, max_value=5),
    st.floats(allow_nan=True, allow_infinity=True),
    st.decimals(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.binary(max_size=8),
    st.sampled_from(GOOD_STRINGS),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    st.tuples(st.text(max_size=3)),
)
actions = st.one_of(st.sampled_from(sorted(ACTIONS)), junk)


def _facts(draw_action, **fields):
    return Facts(action=draw_action, **fields)


facts_strategy = st.builds(
    _facts,
    actions,
    principal=junk,
    model=junk,
    max_tokens=junk,
    provider=junk,
    gpu=junk,
    cost_per_hour=junk,
    budget=junk,
    instance_count=junk,
    template=junk,
)


def _num(v):
    if type(v) in (int, float, Decimal):
        d = Decimal(repr(v)) if type(v) is float else Decimal(v)
        return d if d.is_finite() else None
    return None


def well_formed(policy: Policy, f: Facts, d: Decision) -> bool:
    """What must be true of the facts whenever the Policy allows."""
    if type(f.action) is not str or f.action not in ACTIONS:
        return False
    if f.action in ("governance.validate", "governance.read"):
        return True
    if policy.missing or not policy.providers and not policy.compute:
        return False  # a failed or refusing policy allows nothing governed
    if f.action in ("inference.chat", "inference.completion"):
        provider = policy.provider_for(f.model) if type(f.model) is str else None
        if provider is None:
            return False
        if f.max_tokens is not None and (type(f.max_tokens) is not int or f.max_tokens < 1):
            return False
        return provider.tokens_min <= d.obligations["max_tokens"] <= provider.tokens_max
    if f.action == "inference.models":
        return True
    if f.action in ("compute.read", "compute.teardown", "compute.offers"):
        return f.provider is None or (type(f.provider) is str and f.provider in policy.compute)
    assert f.action == "compute.provision"
    if type(f.provider) is not str or f.provider not in policy.compute:
        return False
    caps = policy.compute[f.provider]
    cost, budget = _num(f.cost_per_hour), _num(f.budget)
    return (
        type(f.gpu) is str and f.gpu in caps.allowed_gpus
        and type(f.template) is str and f.template in caps.allowed_templates
        and cost is not None and 0 <= cost <= caps.max_dph
        and (f.budget is None or (budget is not None and 0 < budget and cost <= budget))
        and type(f.instance_count) is int and 0 <= f.instance_count < caps.max_instances
    )


BASE_FACTS = [
    dict(action="inference.chat", model="gemma-3-270m", max_tokens=100),
    dict(action="inference.completion", model="gemma-3-270m", max_tokens=None),
    dict(action="inference.chat", model=REMOTE["VASTAI_MODEL"], max_tokens=10**6),
    dict(action="compute.provision", provider="local", gpu="cpu", template="gemma-3-270m", cost_per_hour=0,
         instance_count=0),
    dict(action="compute.provision", provider="vast", gpu="RTX 4090", template="vllm/vllm-openai:v0.6.3",
         cost_per_hour=0.3, budget=0.5, instance_count=1),
    dict(action="compute.read", provider="vast"),
    dict(action="compute.teardown", provider="local"),
    # just over a line: each must be denied
    dict(action="inference.chat", model="gemma-3-270m", max_tokens=0),
    dict(action="compute.provision", provider="local", gpu="cpu", template="gemma-3-270m", cost_per_hour=0,
         instance_count=1),
    dict(action="compute.provision", provider="vast", gpu="RTX 4090", template="vllm/vllm-openai:v0.6.3",
         cost_per_hour=0.3, budget=0.29, instance_count=0),
    dict(action="compute.provision", provider="vast", gpu="RTX 4090", template="vllm/vllm-openai:v0.6.3",
         cost_per_hour=0.3, budget=0.5, instance_count=2),
    dict(action="compute.provision", provider="vast", gpu="RTX 4090", template="vllm/vllm-openai:v0.6.3",
         cost_per_hour=0.61, instance_count=0),
]
FIELDS = ["action", "principal", "model", "max_tokens", "provider", "gpu", "cost_per_hour", "budget",
          "instance_count", "template"]

# a valid (or just-invalid) request for some action, with up to two of its fields replaced by junk
near_valid_facts = st.builds(
    lambda base, corrupt: Facts(**{**base, **corrupt}),
    st.sampled_from(BASE_FACTS),
    st.dictionaries(st.sampled_from(FIELDS), junk, max_size=2),
)


def check_decision(policy: Policy, facts: Facts) -> Decision:
    d = policy.decide(facts)
    assert isinstance(d, Decision) and isinstance(d.allow, bool)
    assert d.policy_revision == policy.revision and d.id
    assert all(isinstance(r, str) for r in d.reasons) and all(isinstance(i, str) for i in d.rule_ids)
    if d.allow:
        assert d.reason_code == "allowed"
        assert well_formed(policy, facts, d), (facts, d)
    else:
        assert d.reason_code != "allowed" and d.obligations == {}
    return d


@settings(max_examples=600, deadline=None)
@given(st.sampled_from(range(len(POLICIES))), facts_strategy)
def test_decide_never_raises_and_never_allows_malformed(index, facts):
    check_decision(POLICIES[index], facts)


def test_near_valid_facts_exercise_both_outcomes_and_never_allow_malformed():
    seen: dict[tuple[str, bool], int] = {}

    @settings(max_examples=1500, deadline=None)
    @given(st.sampled_from(range(len(POLICIES))), near_valid_facts)
    def run(index, facts):
        d = check_decision(POLICIES[index], facts)
        key = (d.action, d.allow)
        seen[key] = seen.get(key, 0) + 1

    run()
    # the property above is not vacuous: allows happen for the hard actions too
    for action in ("inference.chat", "inference.completion", "compute.provision", "compute.read"):
        assert seen.get((action, True)), (action, seen)
        assert seen.get((action, False)), (action, seen)


@settings(max_examples=300, deadline=None)
@given(
    st.integers(min_value=1, max_value=5000),
    st.integers(min_value=0, max_value=5000),
    st.one_of(st.none(), st.integers(min_value=1, max_value=10**7)),
    st.one_of(st.none(), st.integers(min_value=-(10**9), max_value=10**12)),
)
def test_clamp_always_lands_in_bounds(lo, span, default, asked):
    hi = lo + span
    overrides = {"TOKENS_MIN": str(lo), "LOCAL_TOKENS_MAX": str(hi)}
    if default is not None:
        overrides["MAX_TOKENS"] = str(default)
    p = Policy.compile(chain(), env(**overrides), sources_digest="s")
    assert p.missing == ()
    d = p.decide(Facts(action="inference.chat", model="gemma-3-270m", max_tokens=asked))
    if asked is not None and asked < 1:
        assert not d.allow and d.reason_code == "tokens_invalid"
        return
    assert d.allow
    applied = d.obligations["max_tokens"]
    assert lo <= applied <= hi
    if asked is not None and lo <= asked <= hi:
        assert applied == asked


env_value = st.one_of(
    st.none(),
    st.text(max_size=12),
    st.sampled_from(["0", "1", "-3", "12", "1.5", "http://127.0.0.1:1/v1", "a,b", ",", " ", "LOCAL", "NaN", "sk-live-0123456789abcdef"]),
)


@settings(max_examples=300, deadline=None)
@given(st.fixed_dictionaries({name: env_value for name, *_ in SPEC_BINDINGS}), facts_strategy)
def test_compile_on_junk_env_never_raises_and_fails_closed(values, facts):
    e = {k: v for k, v in values.items() if v is not None}
    p = Policy.compile(chain(), e, sources_digest="s")
    d = p.decide(facts)
    assert isinstance(d, Decision)
    if d.allow:
        assert well_formed(p, facts, d), (e, facts, d)
    if p.missing and facts.action not in ("governance.validate", "governance.read"):
        assert not d.allow
    for secret_name, *_rest in [b for b in SPEC_BINDINGS if b[3]]:
        value = e.get(secret_name, "").strip()
        if len(value) < 8:  # shorter ones may match random hex in ids and digests
            continue
        # what the repr would show anyway without the secret (a junk value may be a common substring)
        without = Policy.compile(chain(), {k: v for k, v in e.items() if k != secret_name}, sources_digest="s")
        baseline = repr(without) + repr(without.decide(facts))
        if value not in baseline:
            assert value not in repr(p) and value not in repr(d)

"""The runtime Policy: compiled once from the chain and the environment; ``decide`` is pure.

Default deny. ``decide`` never raises: an exception inside it is a deny (``internal_deny``).
Every Decision carries the policy revision and cites the binding and constraint lines
(``FILE:L<line>``) it used.

Deny codes (``Decision.reason_code``; "allowed" when ``allow``):
  binding_missing  a required binding is missing or mistyped (``Policy.missing``): every governed
                   action except governance.validate / governance.read is denied
  policy_refused   ``Policy.refusing(reason)``: the chain did not compile
  action_unknown   not one of ``ACTIONS``;  internal_deny  an exception inside decide
  model_missing, model_not_bound (render 404), model_not_allowed, tokens_invalid
  facts_missing, facts_invalid, provider_not_allowed, template_not_allowed, gpu_not_allowed,
  price_over_cap, budget_invalid, budget_exceeded, instance_cap
Obligations: inference {"max_tokens": int, "provider": NAME}; inference.models {"models": [...]};
compute.provision {"provider": key, "max_cost_per_hour": str(Decimal)}; compute lookups with a
provider {"provider": key}.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from types import MappingProxyType
from typing import Any

from .decision import ACTIONS, Decision, Facts, ProviderBinding
from .ir import Scope
from .policy_compile import ComputeCaps, TokenRule, compile_tables

__all__ = ["ComputeCaps", "Policy"]

_EMPTY: Mapping[str, Any] = MappingProxyType({})
_INFERENCE = frozenset({"inference.chat", "inference.completion"})
_GOVERNANCE = frozenset({"governance.validate", "governance.read"})
_COMPUTE_LOOKUP = frozenset({"compute.read", "compute.teardown", "compute.offers"})


def _new_id() -> str:
    return os.urandom(16).hex()


def _show(value: object) -> str:
    """A caller's value, short enough to put in a reason."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _number(value: object) -> Decimal | None:
    """int, float or Decimal (never bool) as a finite Decimal, else None."""
    kind = type(value)
    if kind is int:
        return Decimal(value)  # type: ignore[arg-type]
    if kind is float:
        d = Decimal(repr(value))
    elif kind is Decimal:
        d = value  # type: ignore[assignment]
    else:
        return None
    return d if d.is_finite() else None


@dataclass(frozen=True, eq=False)
class Policy:
    revision: str
    sources_digest: str
    providers: Mapping[str, ProviderBinding]
    fallback_provider: str | None
    missing: tuple[str, ...]
    unbound: tuple[str, ...]
    compute: Mapping[str, ComputeCaps]
    # Compiled tables for decide(); not part of the public interface.
    _tokens: Mapping[str, TokenRule] = field(default_factory=lambda: _EMPTY, repr=False)
    _models: Mapping[str, str] = field(default_factory=lambda: _EMPTY, repr=False)
    _allowed_models: frozenset[str] | None = field(default=None, repr=False)
    _allowed_ids: tuple[str, ...] = field(default=(), repr=False)
    _passthrough: frozenset[str] = field(default=frozenset(), repr=False)
    _passthrough_ids: tuple[str, ...] = field(default=(), repr=False)
    _model_ids: tuple[str, ...] = field(default=(), repr=False)
    _fail_ids: tuple[str, ...] = field(default=(), repr=False)
    _refusal: tuple[str, tuple[str, ...], tuple[str, ...]] | None = field(default=None, repr=False)

    # ------------------------------------------------------------------ construction

    @classmethod
    def compile(cls, chain: Sequence[Scope], env: Mapping[str, str], *, sources_digest: str) -> Policy:
        t = compile_tables(chain, env)
        revision = "sha256:" + hashlib.sha256(f"{sources_digest}:{t.config_digest}".encode()).hexdigest()
        refusal = None
        if t.problems:
            reasons = tuple(p.message for p in t.problems)
            ids = tuple(dict.fromkeys(i for p in t.problems for i in p.rule_ids)) + t.fail_closed_ids
            refusal = ("binding_missing", reasons, tuple(dict.fromkeys(ids)))
        return cls(
            revision=revision,
            sources_digest=sources_digest,
            providers=MappingProxyType(dict(t.providers)),
            fallback_provider=t.fallback_provider,
            missing=tuple(p.entry for p in t.problems),
            unbound=t.unbound,
            compute=MappingProxyType(dict(t.compute)),
            _tokens=MappingProxyType(dict(t.tokens)),
            _models=MappingProxyType(dict(t.model_to_provider)),
            _allowed_models=t.allowed_models,
            _allowed_ids=t.allowed_models_ids,
            _passthrough=t.passthrough,
            _passthrough_ids=t.passthrough_ids,
            _model_ids=t.model_ids,
            _fail_ids=t.fail_closed_ids,
            _refusal=refusal,
        )

    @classmethod
    def refusing(cls, reason: str, *, sources_digest: str = "") -> Policy:
        """A Policy that denies every inference and compute action with ``reason``
        (governance.validate / governance.read stay allowed so the failure can be inspected)."""
        revision = "sha256:" + hashlib.sha256(f"{sources_digest}:refusing".encode()).hexdigest()
        return cls(
            revision=revision,
            sources_digest=sources_digest,
            providers=_EMPTY,
            fallback_provider=None,
            missing=(),
            unbound=(),
            compute=_EMPTY,
            _refusal=("policy_refused", (str(reason),), ()),
        )

    # ------------------------------------------------------------------ queries

    def provider_for(self, model: str) -> ProviderBinding | None:
        if type(model) is not str:
            return None
        name = self._models.get(model)
        return self.providers.get(name) if name is not None else None

    def decide(self, facts: Facts) -> Decision:
        try:
            return self._decide(facts)
        except Exception as exc:  # fail closed: an exception is a deny
            try:
                action = facts.action if type(facts.action) is str else "?"
            except Exception:
                action = "?"
            return self._deny(action, "internal_deny", f"policy evaluation failed ({type(exc).__name__})")

    # ------------------------------------------------------------------ evaluation

    def _allow(self, action: str, reason: str, ids: tuple[str, ...], obligations: dict[str, Any]) -> Decision:
        return Decision(_new_id(), True, action, "allowed", (reason,), ids + self._fail_ids, obligations,
                        self.revision)

    def _deny(self, action: str, code: str, reason: str, ids: tuple[str, ...] = ()) -> Decision:
        return Decision(_new_id(), False, action, code, (reason,), ids + self._fail_ids, {}, self.revision)

    def _decide(self, facts: Facts) -> Decision:
        action = facts.action
        if type(action) is not str or action not in ACTIONS:
            return self._deny(action if type(action) is str else "?", "action_unknown",
                              f"unknown action {_show(action)}")
        if action in _GOVERNANCE:
            return self._allow(action, "governance documents are always readable and validatable", (), {})
        if self._refusal is not None:
            code, reasons, ids = self._refusal
            return Decision(_new_id(), False, action, code, reasons, ids, {}, self.revision)
        if action in _INFERENCE:
            return self._inference(action, facts)
        if action == "inference.models":
            return self._allow(action, "model list", self._model_ids, {"models": self._listed_models()})
        if action == "compute.provision":
            return self._provision(facts)
        if action in _COMPUTE_LOOKUP:
            provider = facts.provider
            if provider is None:
                return self._allow(action, "compute lookup across allowed providers", (), {})
            if type(provider) is not str or provider not in self.compute:
                return self._deny(action, "provider_not_allowed",
                                  f"compute provider {_show(provider)} is not allowed (its caps are not bound)")
            return self._allow(action, f"compute provider {provider!r} is allowed",
                               self.compute[provider].rule_ids, {"provider": provider})
        return self._deny(action, "action_unknown", f"no rule for action {action!r}")  # pragma: no cover

    def _listed_models(self) -> list[str]:
        allowed = self._allowed_models
        return [m for m in self._models if allowed is None or m in allowed]

    def _inference(self, action: str, facts: Facts) -> Decision:
        model = facts.model
        if type(model) is not str or not model:
            return self._deny(action, "model_missing", "the request names no model")
        name = self._models.get(model)
        if name is None:
            return self._deny(action, "model_not_bound", f"model {_show(model)} is not served by any bound provider",
                              self._model_ids)
        allowed = self._allowed_models
        if allowed is not None and model not in allowed:
            return self._deny(action, "model_not_allowed", f"model {_show(model)} is not in ALLOWED_MODELS",
                              self._allowed_ids)
        extra = facts.extra_fields
        if extra:
            if type(extra) is not tuple or any(type(f) is not str for f in extra):
                return self._deny(action, "facts_invalid", "extra_fields must be a tuple of field names")
            if "*" not in self._passthrough:
                refused = [f for f in extra if f not in self._passthrough]
                if refused:
                    return self._deny(action, "field_not_allowed",
                                      f"Unrecognized request argument supplied: {_show(refused[0])}",
                                      self._passthrough_ids)
        rule = self._tokens[name]
        requested = facts.max_tokens
        if requested is None:
            return self._allow(action, f"model {model!r} via {name}; default max_tokens {rule.default}",
                               rule.ids_default + self._allowed_ids,
                               {"max_tokens": rule.default, "provider": name})
        if type(requested) is not int or requested < 1:
            return self._deny(action, "tokens_invalid",
                              f"max_tokens must be a positive integer, got {_show(requested)}", rule.ids_explicit)
        applied = rule.lo if requested < rule.lo else rule.hi if requested > rule.hi else requested
        return self._allow(action, f"model {model!r} via {name}; max_tokens {requested} -> {applied}",
                           rule.ids_explicit + self._allowed_ids, {"max_tokens": applied, "provider": name})

    def _provision(self, facts: Facts) -> Decision:
        act = "compute.provision"
        needed = ("provider", "gpu", "template", "cost_per_hour", "instance_count")
        absent = [n for n in needed if getattr(facts, n) is None]
        if absent:
            return self._deny(act, "facts_missing", f"provision facts missing: {', '.join(absent)}")
        provider, gpu, template = facts.provider, facts.gpu, facts.template
        if type(provider) is not str or provider not in self.compute:
            return self._deny(act, "provider_not_allowed",
                              f"compute provider {_show(provider)} is not allowed (its caps are not bound)")
        caps = self.compute[provider]
        ids = caps.rule_ids
        if type(template) is not str or template not in caps.allowed_templates:
            return self._deny(act, "template_not_allowed", f"template {_show(template)} is not allowed on {provider}",
                              caps.template_ids)
        if type(gpu) is not str or gpu not in caps.allowed_gpus:
            return self._deny(act, "gpu_not_allowed", f"gpu {_show(gpu)} is not allowed on {provider}",
                              caps.gpu_ids)
        model = facts.model
        if model is not None and self._allowed_models is not None and (
            type(model) is not str or model not in self._allowed_models
        ):
            return self._deny(act, "model_not_allowed", f"model {_show(model)} is not in ALLOWED_MODELS",
                              self._allowed_ids)
        cost = _number(facts.cost_per_hour)
        if cost is None or cost < 0:
            return self._deny(act, "facts_invalid",
                              f"cost_per_hour must be a number >= 0, got {_show(facts.cost_per_hour)}",
                              caps.dph_ids)
        budget = None
        if facts.budget is not None:
            budget = _number(facts.budget)
            if budget is None or budget <= 0:
                return self._deny(act, "budget_invalid",
                                  f"budget must be a positive number, got {_show(facts.budget)}",
                              caps.dph_ids)
        if cost > caps.max_dph:
            return self._deny(act, "price_over_cap",
                              f"offer costs {cost} $/h, over the {provider} cap of {caps.max_dph} $/h",
                              caps.dph_ids)
        if budget is not None and cost > budget:
            return self._deny(act, "budget_exceeded", f"offer costs {cost} $/h, over the budget of {budget} $/h",
                              caps.dph_ids)
        count = facts.instance_count
        if type(count) is not int or count < 0:
            return self._deny(act, "facts_invalid", f"instance_count must be an integer >= 0, got {_show(count)}",
                              caps.count_ids)
        if count >= caps.max_instances:
            return self._deny(act, "instance_cap",
                              f"{count} instance(s) already on {provider}; the cap is {caps.max_instances}",
                              caps.count_ids)
        cap = caps.max_dph if budget is None or budget > caps.max_dph else budget
        return self._allow(act, f"provision on {provider}: {gpu} at {cost} $/h within {cap} $/h", ids,
                           {"provider": provider, "max_cost_per_hour": str(cap)})

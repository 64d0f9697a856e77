"""Compile the chain's bindings plus an environment into the Policy's tables.

Everything the hot path needs is computed here once: providers by name, the model -> provider
table, token bounds and the rule ids they cite, compute caps per provider, and the problems
that make the Policy refuse every governed action.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal

from .decision import ProviderBinding
from .ir import Scope
from .policy_env import BindingReader, Problem, cap_applies, caps, declared_bindings

_NAME = re.compile(r"[A-Z][A-Z0-9_]*")

# Built-in inference providers: NAME -> (env prefix, api key binding, has a base URL).
BUILTIN_PROVIDERS: dict[str, tuple[str, str | None, bool]] = {
    "VASTAI": ("VASTAI", "VASTAI_API_KEY", True),
    "KILOCODE": ("VASTAI_KILOCODE", "VASTAI_API_KEY", True),
    "LOCAL": ("LOCAL", None, False),
}
_ALIASES = {"VASTAI_KILOCODE": "KILOCODE"}

# Compute providers: key in Policy.compute -> (env prefix, template list bindings in order).
COMPUTE_PROVIDERS: dict[str, tuple[str, tuple[str, ...]]] = {
    "local": ("LOCAL", ("LOCAL_ALLOWED_TEMPLATES",)),
    "vast": ("VASTAI", ("VASTAI_ALLOWED_IMAGES", "VASTAI_ALLOWED_TEMPLATES")),
    "basilica": ("BASILICA", ("BASILICA_ALLOWED_TEMPLATES", "BASILICA_ALLOWED_IMAGES")),
}


@dataclass(frozen=True)
class ComputeCaps:
    provider: str
    allowed_gpus: frozenset[str]
    max_dph: Decimal
    max_instances: int
    allowed_templates: frozenset[str]
    rule_ids: tuple[str, ...]
    # The binding line of each cap, so a denial cites the one rule that denied it.
    gpu_ids: tuple[str, ...] = ()
    dph_ids: tuple[str, ...] = ()
    count_ids: tuple[str, ...] = ()
    template_ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class TokenRule:
    """Per-provider token bounds and the binding lines each path cites."""

    lo: int
    hi: int
    default: int
    ids_explicit: tuple[str, ...]  # lo and hi lines
    ids_default: tuple[str, ...]  # lo, hi and MAX_TOKENS lines


@dataclass
class Compiled:
    providers: dict[str, ProviderBinding] = field(default_factory=dict)
    tokens: dict[str, TokenRule] = field(default_factory=dict)
    model_to_provider: dict[str, str] = field(default_factory=dict)
    fallback_provider: str | None = None
    allowed_models: frozenset[str] | None = None
    allowed_models_ids: tuple[str, ...] = ()
    passthrough: frozenset[str] = frozenset()
    passthrough_ids: tuple[str, ...] = ()
    model_ids: tuple[str, ...] = ()
    compute: dict[str, ComputeCaps] = field(default_factory=dict)
    problems: tuple[Problem, ...] = ()
    unbound: tuple[str, ...] = ()
    fail_closed_ids: tuple[str, ...] = ()
    config_digest: str = ""


def _provider(r: BindingReader, name: str, prefix: str, key: str | None, has_url: bool, *, needed: bool):
    """Build one inference provider, or None when it is not (fully) bound."""
    model_name, url_name = f"{prefix}_MODEL", f"{prefix}_BASE_URL"
    names = (url_name, model_name) if has_url else (model_name,)
    present = [n for n in names if r.is_set(n)]
    values = {n: r.get(n) for n in names}
    if not present:
        if needed:
            for n in names:
                r.unset(
                    n, f"{n}: FALLBACK_PROVIDER names {name} but {n} is not set", r.ids(n, "FALLBACK_PROVIDER")
                )
        else:
            r.mark_unbound(*names)
        return None
    if len(present) != len(names):
        for n in names:
            if n not in present:
                r.unset(n, f"{n}: not set while {', '.join(present)} is set; both are needed")
        return None
    if any(v is None for v in values.values()):
        return None  # mistyped: the reader recorded the problem
    timeout = r.get_int(f"{prefix}_TIMEOUT_MS", minimum=1) if r.is_set(f"{prefix}_TIMEOUT_MS") else None
    tries = r.get_int(f"{prefix}_TRIES", minimum=1) if r.is_set(f"{prefix}_TRIES") else None
    delay = r.get_int(f"{prefix}_RETRY_DELAY_MS", minimum=0) if r.is_set(f"{prefix}_RETRY_DELAY_MS") else None
    timeout = timeout if timeout is not None else r.get_int("VASTAI_TIMEOUT_MS", minimum=1)
    tries = tries if tries is not None else r.get_int("VASTAI_TRIES", minimum=1)
    delay = delay if delay is not None else r.get_int("VASTAI_RETRY_DELAY_MS", minimum=0)
    api_key = r.get(key) if key else None
    extra: dict[str, int] = {}
    if timeout is not None:
        extra["timeout_ms"] = timeout
    if tries is not None:
        extra["tries"] = tries
    if delay is not None:
        extra["retry_delay_ms"] = delay
    return ProviderBinding(
        name=name,
        prefix=prefix,
        model=str(values[model_name]),
        base_url=str(values[url_name]) if has_url else None,
        api_key=str(api_key) if api_key else None,
        rule_ids=r.ids(*names, *((key,) if key else ())),
        **extra,
    )


def _tokens(r: BindingReader, prefix: str) -> TokenRule | None:
    lo_name = f"{prefix}_TOKENS_MIN" if r.is_set(f"{prefix}_TOKENS_MIN") else "TOKENS_MIN"
    hi_name = f"{prefix}_TOKENS_MAX" if r.is_set(f"{prefix}_TOKENS_MAX") else "TOKENS_MAX"
    lo = r.get(lo_name) if r.is_set(lo_name) else 1
    hi = r.get(hi_name)
    if hi is None and not r.is_set(hi_name):
        r.unset(hi_name, f"{hi_name}: not set; a bound provider needs a token ceiling")
    default = r.get("MAX_TOKENS") if r.is_set("MAX_TOKENS") else hi
    if not isinstance(lo, int) or not isinstance(hi, int) or not isinstance(default, int):
        return None
    if not 1 <= lo <= hi:
        r.problem(
            f"LIMIT_CONFIG({lo_name}={lo},{hi_name}={hi})",
            f"LIMIT_CONFIG: {prefix} tokens need 1 <= {lo_name} <= {hi_name}",
            r.ids(lo_name, hi_name),
            code="LIMIT_CONFIG",
        )
        return None
    if default < 1:
        r.problem("MAX_TOKENS", "MAX_TOKENS: must be an integer >= 1")
        return None
    ids = r.ids(lo_name, hi_name)
    return TokenRule(lo, hi, min(max(default, lo), hi), ids, ids + r.ids("MAX_TOKENS"))


def _compute(r: BindingReader, key: str, prefix: str, template_names: tuple[str, ...]) -> ComputeCaps | None:
    names = (f"{prefix}_ALLOWED_GPUS", f"{prefix}_MAX_DPH", f"{prefix}_MAX_INSTANCES")
    present = [n for n in names if r.is_set(n)]
    if not present:
        return None
    if len(present) != len(names):
        for n in names:
            if n not in present:
                r.unset(n, f"{n}: not set while {', '.join(present)} is set; compute caps come together")
        return None
    gpus, dph = r.get(names[0]), r.get(names[1])
    count = r.get_int(names[2], minimum=0)
    templates: object = frozenset()
    used: tuple[str, ...] = ()
    for tname in template_names:
        if r.is_set(tname):
            templates, used = r.get(tname), (tname,)
            break
    else:
        if key == "local" and isinstance(r.get("LOCAL_MODEL"), str):
            templates, used = frozenset({r.get("LOCAL_MODEL")}), ("LOCAL_MODEL",)
    if gpus is None or dph is None or count is None or templates is None:
        return None
    return ComputeCaps(key, gpus, dph, count, templates, r.ids(*names, *used),  # type: ignore[arg-type]
                       gpu_ids=r.ids(names[0]), dph_ids=r.ids(names[1]), count_ids=r.ids(names[2]),
                       template_ids=r.ids(*used))


def _fallback(r: BindingReader) -> tuple[str | None, tuple[str, str | None, bool] | None]:
    raw = r.get("FALLBACK_PROVIDER")
    if raw is None:
        return None, None
    name = str(raw).strip().upper()
    if not _NAME.fullmatch(name):
        r.problem("FALLBACK_PROVIDER", "FALLBACK_PROVIDER: not a provider NAME (A-Z, 0-9, _)")
        return None, None
    name = _ALIASES.get(name, name)
    spec = BUILTIN_PROVIDERS.get(name, (name, f"{name}_API_KEY", True))
    return name, spec


def _config_digest(r: BindingReader) -> str:
    lines = []
    for name in sorted(set(r.read) | set(r.declared)):
        raw = r.raw(name)
        if r.is_secret(name):
            lines.append(f"{name}:{'set' if raw is not None else 'unset'}")
        elif raw is None:
            lines.append(f"{name}:unset")
        else:
            lines.append(f"{name}={raw}")
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def _fail_closed_ids(chain: Sequence[Scope]) -> tuple[str, ...]:
    """The fail_closed constraint lines, root first; a child repeating its parent's text is cited
    once, at the parent's line."""
    seen: dict[str, str] = {}
    for scope in chain:
        for c in scope.constraints:
            if c.kind == "fail_closed":
                seen.setdefault(f"{c.modality} {' '.join(c.text.lower().split())}", c.id)
    return tuple(seen.values())


def _check_caps(r: BindingReader, chain: Sequence[Scope]) -> None:
    """A set int/decimal value must sit inside every ``(check: limit cap<=N)`` of the chain (the
    ordering of the token bounds is ``_tokens``'s; MAX_TOKENS outside them is clamped)."""
    limits = [(c, cap) for s in chain for c in s.constraints if c.kind == "limit" for cap in caps(c)]
    for name in r.declared:
        if r.kind(name) not in ("int", "decimal") or not r.is_set(name):
            continue
        value = r.get(name)
        if value is None:
            continue
        for c, (cap, op, num) in limits:
            if cap_applies(cap, name) and ((op == "<=" and value > num) or (op == ">=" and value < num)):
                r.problem(
                    f"LIMIT_CONFIG({name})",
                    f"LIMIT_CONFIG: {name} ({r.declared[name].id}) is outside the cap {cap}{op}{num} set at {c.id}",
                    (r.declared[name].id, c.id),
                    code="LIMIT_CONFIG",
                )
                break


def compile_tables(chain: Sequence[Scope], env: Mapping[str, str]) -> Compiled:
    r = BindingReader(declared_bindings(list(chain)), dict(env))
    out = Compiled()
    fb_name, fb_spec = _fallback(r)
    order = [n for n in BUILTIN_PROVIDERS if n != fb_name] + ([fb_name] if fb_name else [])
    for name in order:
        prefix, key, has_url = BUILTIN_PROVIDERS.get(name) or fb_spec  # type: ignore[misc]
        provider = _provider(r, name, prefix, key, has_url, needed=name == fb_name)
        if provider is None:
            continue
        tokens = _tokens(r, prefix)
        if tokens is None:
            continue
        out.providers[name] = replace(
            provider, tokens_min=tokens.lo, tokens_max=tokens.hi, tokens_default=tokens.default
        )
        out.tokens[name] = tokens
        out.model_to_provider.setdefault(provider.model, name)
    if fb_name in out.providers:
        out.fallback_provider = fb_name
    allowed = r.get("ALLOWED_MODELS")
    if isinstance(allowed, frozenset):
        out.allowed_models, out.allowed_models_ids = allowed, r.ids("ALLOWED_MODELS")
    passthrough = r.get("PASSTHROUGH_FIELDS")
    if isinstance(passthrough, frozenset):
        out.passthrough = passthrough
    out.passthrough_ids = r.ids("PASSTHROUGH_FIELDS")
    out.model_ids = r.ids(*(f"{p.prefix}_MODEL" for p in out.providers.values()))
    for key, (prefix, template_names) in COMPUTE_PROVIDERS.items():
        caps = _compute(r, key, prefix, template_names)
        if caps is not None:
            out.compute[key] = caps
    _check_caps(r, chain)
    r.check_declared()
    out.fail_closed_ids = _fail_closed_ids(chain)
    out.problems = tuple(r.problems.values())
    missing = {p.entry for p in out.problems}
    out.unbound = tuple(n for n in r.unbound if n not in missing)
    out.config_digest = _config_digest(r)
    return out


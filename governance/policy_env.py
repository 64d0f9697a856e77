"""Reading binding values from an environment mapping, typed, for the Policy compiler.

The documents declare a binding's name, type and optionality; the environment supplies its
value. ``BindingReader`` is the one place that turns ``NAME=value`` into a typed value, records
every problem (missing, mistyped) without ever quoting a value, and remembers which names the
policy read so the revision can cover them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from decimal import Decimal, InvalidOperation
from urllib.parse import urlsplit

from .ir import Binding, Constraint, Scope, type_by_name

_INT = re.compile(r"[+-]?[0-9]+")
_DECIMAL = re.compile(r"[0-9]+(?:\.[0-9]+)?|\.[0-9]+")

TYPES = frozenset({"int", "decimal", "csv", "url", "string", "secret"})
CAP_RE = re.compile(
    r"^(?P<cap>tokens_max|tokens_min|max_dph|max_instances)(?P<op><=|>=)(?P<num>\d+(?:\.\d+)?)$"
)


def cap_applies(cap: str, name: str) -> bool:
    """Whether a ``(check: limit cap<=N)`` cap bounds the binding ``name``."""
    return {
        "tokens_max": name.endswith("TOKENS_MAX") or name == "MAX_TOKENS",
        "tokens_min": name.endswith("TOKENS_MIN"),
        "max_dph": name.endswith("_MAX_DPH"),
        "max_instances": name.endswith("_MAX_INSTANCES"),
    }[cap]


def caps(c: Constraint) -> list[tuple[str, str, Decimal]]:
    """The ``cap<=N`` / ``cap>=N`` args of a limit constraint."""
    out = []
    for arg in c.args.split():
        m = CAP_RE.match(arg)
        if m:
            out.append((m.group("cap"), m.group("op"), Decimal(m.group("num"))))
    return out


def inferred_type(name: str) -> str:
    """The type of a binding read by convention (not declared), from its name's suffix."""
    if name.endswith(("_API_KEY", "_SECRET", "_TOKEN")):
        return "secret"
    return type_by_name(name)


def parse_value(kind: str, raw: str) -> tuple[object, str | None]:
    """(typed value, None) or (None, why it does not parse). ``raw`` is already stripped."""
    if kind == "int":
        if not _INT.fullmatch(raw):
            return None, "not a base-10 integer"
        return int(raw), None
    if kind == "decimal":
        if not _DECIMAL.fullmatch(raw):
            return None, "not a non-negative decimal number"
        try:
            return Decimal(raw), None
        except InvalidOperation:  # pragma: no cover - the pattern admits only valid literals
            return None, "not a non-negative decimal number"
    if kind == "csv":
        items = [item.strip() for item in raw.split(",")]
        if not items or any(not item for item in items):
            return None, "not a comma-separated list of non-empty items"
        return frozenset(items), None
    if kind == "url":
        try:
            parts = urlsplit(raw)
            host = parts.hostname
        except ValueError:
            return None, "not an http(s) URL with a host"
        if parts.scheme not in ("http", "https") or not host:
            return None, "not an http(s) URL with a host"
        return raw, None
    return raw, None  # string, secret: non-empty is checked by the caller


def declared_bindings(chain: list[Scope] | tuple[Scope, ...]) -> dict[str, Binding]:
    """Bindings across the chain, root first. A later (child) declaration gives the type and the
    line; required and secret are sticky (a child cannot weaken its parent)."""
    out: dict[str, Binding] = {}
    for scope in chain:
        for binding in scope.bindings:
            prev = out.get(binding.name)
            if prev is None:
                out[binding.name] = binding
                continue
            out[binding.name] = replace(
                binding,
                optional=prev.optional and binding.optional,
                secret=prev.secret or binding.secret,
            )
    return out


@dataclass(frozen=True)
class Problem:
    entry: str  # what ``Policy.missing`` shows: a binding NAME or a LIMIT_CONFIG(...) entry
    message: str  # never quotes a value
    rule_ids: tuple[str, ...]
    code: str = "BINDING_TYPE"  # the finding code: BINDING_MISSING | BINDING_TYPE | LIMIT_CONFIG


class BindingReader:
    """Typed reads from one environment snapshot. Used only while compiling a Policy."""

    def __init__(self, declared: dict[str, Binding], env: dict[str, str]) -> None:
        self.declared = declared
        self.env = env
        self.problems: dict[str, Problem] = {}
        self.read: dict[str, bool] = {}  # name -> is secret
        self.unbound: list[str] = []

    def kind(self, name: str) -> str:
        binding = self.declared.get(name)
        if binding is None:
            return inferred_type(name)
        if binding.secret:
            return "secret"
        return binding.type if binding.type in TYPES else "string"

    def is_secret(self, name: str) -> bool:
        return self.kind(name) == "secret"

    def ids(self, *names: str) -> tuple[str, ...]:
        return tuple(self.declared[n].id for n in names if n in self.declared)

    def raw(self, name: str) -> str | None:
        self.read.setdefault(name, self.is_secret(name))
        value = self.env.get(name)
        if not isinstance(value, str):
            return None
        value = value.strip()
        return value or None

    def is_set(self, name: str) -> bool:
        return self.raw(name) is not None

    def required(self, name: str) -> bool:
        binding = self.declared.get(name)
        return binding is not None and not binding.optional

    def problem(
        self, entry: str, message: str, rule_ids: tuple[str, ...] = (), code: str = "BINDING_TYPE"
    ) -> None:
        """Record one problem; the message gains the cited line (``NAME (FILE:Ln): why``)."""
        if entry in self.problems:
            return
        ids = rule_ids or self.ids(entry)
        if entry in self.declared and message.startswith(f"{entry}: "):
            message = f"{entry} ({self.declared[entry].id}): {message[len(entry) + 2 :]}"
        self.problems[entry] = Problem(entry, message, ids, code)

    def unset(self, name: str, message: str, rule_ids: tuple[str, ...] = ()) -> None:
        self.problem(name, message, rule_ids, code="BINDING_MISSING")

    def get(self, name: str) -> object:
        """The typed value, or None when unset or mistyped (a mistyped value is a problem)."""
        raw = self.raw(name)
        if raw is None:
            return None
        value, why = parse_value(self.kind(name), raw)
        if why is not None:
            self.problem(name, f"{name}: {why}")
            return None
        return value

    def get_int(self, name: str, *, minimum: int) -> int | None:
        value = self.get(name)
        if value is None:
            return None
        assert isinstance(value, int)
        if value < minimum:
            self.problem(name, f"{name}: must be an integer >= {minimum}")
            return None
        return value

    def mark_unbound(self, *names: str) -> None:
        for name in names:
            if not self.required(name) and name not in self.unbound:
                self.unbound.append(name)

    def check_declared(self) -> None:
        """Every declared binding: a required one must be set; a set one must parse."""
        for name, binding in self.declared.items():
            if self.raw(name) is None:
                if not binding.optional:
                    self.unset(name, f"{name}: required binding is not set")
            else:
                self.get(name)

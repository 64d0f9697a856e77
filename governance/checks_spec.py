"""SPEC checks: sections, the Routes table, the runtime bindings, surface-route namespaces, the
limit caps of the chain, and (for the gateway) the bindings' values as findings."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from urllib.parse import urlsplit

from governance.checks_docs import F
from governance.decision import ACTIONS
from governance.ir import Binding, Finding, Scope
from governance.parse import Doc
from governance.policy_compile import compile_tables
from governance.policy_env import CAP_RE as _CAP_RE
from governance.policy_env import cap_applies, caps  # noqa: F401  (re-exported)

METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})
def spec(scope: Scope, doc: Doc | None) -> list[Finding]:
    if doc is None:
        return []
    out: list[Finding] = []
    titles = [h.title.lower() for h in doc.headings]
    for want, label in (
        ("purpose", "Purpose"),
        ("routes", "Routes"),
        ("binding", "Runtime bindings"),
        ("ecosystem", "Ecosystem"),
    ):
        if not any(want in t for t in titles):
            out.append(
                F(
                    "MISSING_SECTION",
                    "route_declared",
                    "RELATIONAL",
                    doc.path,
                    1,
                    f"the SPEC needs a '{label}' section",
                )
            )
    if not scope.routes:
        out.append(
            F(
                "MISSING_SECTION",
                "route_declared",
                "RELATIONAL",
                doc.path,
                1,
                "the SPEC has no 'Method | Path | Action' Routes table",
            )
        )
    if not scope.bindings:
        out.append(
            F(
                "MISSING_SECTION",
                "env_bindings",
                "RELATIONAL",
                doc.path,
                1,
                "the SPEC declares no runtime bindings",
            )
        )
    seen: dict[tuple[str, str], int] = {}
    for r in scope.routes:
        if r.method not in METHODS or not r.path.startswith("/"):
            out.append(
                F(
                    "MALFORMED_ROUTE",
                    "route_declared",
                    "RELATIONAL",
                    r.file,
                    r.line,
                    f"route '{r.method} {r.path}' is not 'METHOD /path'",
                )
            )
        if r.action != "none" and r.action not in ACTIONS:
            out.append(
                F(
                    "UNKNOWN_ACTION",
                    "route_declared",
                    "RELATIONAL",
                    r.file,
                    r.line,
                    f"action '{r.action}' is not a known action",
                )
            )
        key = (r.method, r.path)
        if key in seen:
            out.append(
                F(
                    "DUPLICATE_ROUTE",
                    "route_declared",
                    "RELATIONAL",
                    r.file,
                    r.line,
                    f"{r.method} {r.path} already declared at line {seen[key]}",
                )
            )
        seen.setdefault(key, r.line)
    names: dict[str, int] = {}
    for b in scope.bindings:
        if b.name in names:
            out.append(
                F(
                    "DUPLICATE_BINDING",
                    "env_bindings",
                    "RELATIONAL",
                    b.file,
                    b.line,
                    f"{b.name} already declared at line {names[b.name]}",
                )
            )
        names.setdefault(b.name, b.line)
    surface = {r.key: r for r in scope.surface_routes}
    magic = surface.get("magic")
    for key, r in surface.items():
        if magic is None or key == "magic" or "surface" not in key:
            continue
        if urlsplit(r.url).path.rstrip("/") != urlsplit(magic.url).path.rstrip("/"):
            out.append(
                F(
                    "NAMESPACE_MISMATCH",
                    "route_declared",
                    "RELATIONAL",
                    r.file,
                    r.line,
                    f"{key} and magic surface routes name different scope paths",
                )
            )
    return out


def served_routes(scope: Scope, served: Sequence[tuple[str, str]]) -> list[Finding]:
    """Compare the app's (method, path) set with the Routes table."""

    def shape(path: str) -> str:  # path parameter names do not matter: {id} == {instance_id}
        return re.sub(r"\{[^}]*\}", "{}", path)

    declared = {(r.method, shape(r.path)) for r in scope.routes}
    out = []
    for method, path in sorted({(m, p) for m, p in served if (m, shape(p)) not in declared}):
        out.append(
            F(
                "ROUTE_UNDECLARED",
                "route_declared",
                "RELATIONAL",
                scope.spec_file,
                1,
                f"{method} {path} is served but not declared",
            )
        )
    return out


def effective_bindings(chain: Sequence[Scope]) -> dict[str, Binding]:
    out: dict[str, Binding] = {}
    for s in chain:  # root first; a child's declaration replaces its parent's
        for b in s.bindings:
            out[b.name] = b
    return out


def constraint_args(chain: Sequence[Scope], bindings: Mapping[str, Binding]) -> list[Finding]:
    """``(check: env_bindings NAME ...)`` names bindings the chain must declare; ``(check: limit
    cap<=N ...)`` args must parse."""
    out: list[Finding] = []
    for s in chain:
        for c in s.constraints:
            if c.kind == "env_bindings":
                for name in c.args.replace(",", " ").split():
                    if name not in bindings:
                        out.append(
                            F(
                                "BINDING_MISSING",
                                "env_bindings",
                                "RELATIONAL",
                                c.file,
                                c.line,
                                f"required binding {name} is not declared in the chain's runtime bindings",
                                constraint=c.id,
                            )
                        )
            elif c.kind == "limit":
                bad = [
                    a
                    for a in c.args.split()
                    if not _CAP_RE.match(a) and not re.fullmatch(r"[A-Z][A-Z0-9_]*", a)
                ]
                if bad:
                    out.append(
                        F(
                            "MALFORMED_CONSTRAINT",
                            "limit",
                            "DECLARE",
                            c.file,
                            c.line,
                            "limit args are 'cap<=N' or 'cap>=N'",
                        )
                    )
    return out


def env_values(chain: Sequence[Scope], env: Mapping[str, str]) -> list[Finding]:
    """The bindings' values as findings: exactly the problems that make the Policy refuse (one
    parser, one set of rules: ``policy_compile.compile_tables``). They carry no coverage bit: a
    configuration problem never changes the documents' score."""
    out: list[Finding] = []
    for p in compile_tables(chain, env).problems:
        file, _, line = (p.rule_ids[0] if p.rule_ids else ":L1").rpartition(":L")
        kind = "limit" if p.code == "LIMIT_CONFIG" else "env_bindings"
        cited = p.rule_ids[1] if p.code == "LIMIT_CONFIG" and len(p.rule_ids) > 1 else None
        out.append(F(p.code, kind, None, file or "", int(line) if line.isdigit() else 1, p.message, constraint=cited))
    return out

"""The closed set of check kinds and the constraint-to-kind mapping.

The per-kind checks live in checks_docs (files, declaration, vocabulary, literals, structure,
roadmap), checks_spec (SPEC, routes, bindings, limits, env), checks_chain (weakening) and
checks_ledger (append-only). This module maps each constraint line to a kind and reports every
line that no check covers: nothing passes silently.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import replace

from governance.checks_docs import F
from governance.ir import Constraint, Finding, Scope

# Ordered pattern table for lines without an explicit (check: kind) suffix. Each hit is reported.
PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"hard-?code.*(credential|endpoint|binding)", re.I), "no_literals"),
    (re.compile(r"fail(s)? closed", re.I), "fail_closed"),
    (re.compile(r"telemetry", re.I), "telemetry"),
    (re.compile(r"route .*through .*gateway", re.I), "route_declared"),
    (re.compile(r"append|overwrite history", re.I), "append_only"),
    (re.compile(r"vocab", re.I), "vocab_closure"),
    (re.compile(r"inherit", re.I), "inheritance"),
)


def auto_map(c: Constraint) -> Constraint:
    if c.mapped_by != "none":
        return c
    for rx, kind in PATTERNS:
        if rx.search(c.text):
            return replace(c, kind=kind, mapped_by="pattern")
    return replace(c, kind="manual")


def mapping(chain: Sequence[Scope]) -> list[Finding]:
    """Map every constraint of the chain (in place) and report auto-mapped, human-only and
    unmapped lines."""
    out: list[Finding] = []
    for s in chain:
        s.constraints = [auto_map(c) for c in s.constraints]
        for c in s.constraints:
            if c.mapped_by == "pattern":
                out.append(
                    F(
                        "AUTO_MAPPED",
                        c.kind,
                        None,
                        c.file,
                        c.line,
                        f"mapped to '{c.kind}' by pattern; add an explicit (check: {c.kind})",
                        "info",
                    )
                )
            elif c.kind == "none" and c.modality in ("MUST", "MUST NOT"):
                out.append(
                    F(
                        "UNMAPPED_CONSTRAINT",
                        "manual",
                        "OPERATIONS",
                        c.file,
                        c.line,
                        f"{c.modality} line is marked (check: none): it is reviewed by hand and earns no bit",
                        "warning",
                    )
                )
            elif c.kind == "none":
                out.append(
                    F(
                        "HUMAN_ONLY",
                        "none",
                        None,
                        c.file,
                        c.line,
                        f"{c.modality} line acknowledged as a human-review rule (check: none)",
                        "info",
                    )
                )
            elif c.kind == "manual" and c.modality in ("MUST", "MUST NOT", "SHOULD", "SHOULD NOT"):
                out.append(
                    F(
                        "UNMAPPED_CONSTRAINT",
                        "manual",
                        "OPERATIONS",
                        c.file,
                        c.line,
                        f"{c.modality} line maps to no check; it is reviewed by hand and earns no bit",
                        "warning",
                    )
                )
    return out

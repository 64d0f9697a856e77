"""Inheritance checks: a child may add to its ancestors, never weaken them (contradict a
MUST, loosen a cap, make an inherited required binding optional)."""

from __future__ import annotations

import re
from collections.abc import Sequence

from governance.checks_docs import F
from governance.checks_spec import caps
from governance.ir import Finding, Scope

_OPPOSITE = {"MUST": "MUST NOT", "MUST NOT": "MUST", "SHOULD": "SHOULD NOT", "SHOULD NOT": "SHOULD"}
# A child restating an inherited line at one of these modalities weakens it (a warning).
_WEAKER = {"SHOULD": ("MUST",), "MAY": ("MUST", "MUST NOT"), "SHOULD NOT": ("MUST NOT",)}


def norm(text: str) -> str:
    return re.sub(r"\s+", " ", text.lower()).strip(" .;")


def weakening(chain: Sequence[Scope]) -> list[Finding]:
    """``chain`` is root first."""
    out: list[Finding] = []
    for idx in range(1, len(chain)):
        child, ancestors = chain[idx], chain[:idx]
        inherited = [c for a in ancestors for c in a.constraints]
        by_text = {(c.modality, norm(c.text)): c for c in inherited}
        parent_caps = [(cap, op, num, c) for c in inherited if c.kind == "limit" for cap, op, num in caps(c)]
        for c in child.constraints:
            opposite = _OPPOSITE.get(c.modality)
            hit = by_text.get((opposite, norm(c.text))) if opposite else None
            if hit is not None:
                out.append(
                    F(
                        "WEAKENING",
                        "inheritance",
                        "INHERITED",
                        c.file,
                        c.line,
                        f"{c.modality} contradicts the inherited {hit.modality} at {hit.id}",
                        constraint=hit.id,
                    )
                )
            for strong in _WEAKER.get(c.modality, ()):
                hit = by_text.get((strong, norm(c.text)))
                if hit is not None:
                    out.append(
                        F(
                            "WEAKENED_MODALITY",
                            "inheritance",
                            "INHERITED",
                            c.file,
                            c.line,
                            f"{c.modality} restates the inherited {hit.modality} at {hit.id} more weakly",
                            "warning",
                            constraint=hit.id,
                        )
                    )
            if c.kind != "limit":
                continue
            for cap, op, num in caps(c):
                for pcap, pop, pnum, pc in parent_caps:
                    if (
                        pcap == cap
                        and pop == op
                        and ((op == "<=" and num > pnum) or (op == ">=" and num < pnum))
                    ):
                        out.append(
                            F(
                                "WEAKENING",
                                "inheritance",
                                "INHERITED",
                                c.file,
                                c.line,
                                f"cap {cap}{op}{num} loosens the inherited {cap}{pop}{pnum} at {pc.id}",
                                constraint=pc.id,
                            )
                        )
        required = {b.name: b for a in ancestors for b in a.bindings if not b.optional}
        for b in child.bindings:
            if b.name in required and b.optional:
                out.append(
                    F(
                        "WEAKENING",
                        "inheritance",
                        "INHERITED",
                        b.file,
                        b.line,
                        f"{b.name} is required at {required[b.name].id}; a child cannot make it optional",
                    )
                )
    return out

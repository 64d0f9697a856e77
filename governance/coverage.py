"""The 8 coverage bits: each a named group of checks. Computed from findings, never read from
COVERAGE.md; a claim that differs from the computed score is a COVERAGE_DRIFT finding.

A bit is set iff the files it needs exist and no error finding falls in its group. Bit 4
(OPERATIONS) also needs every MUST to map to a check and no error anywhere; the claim is
compared with the score computed as if bit 4 were set (the bit-4 loop).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from governance.checks_docs import F
from governance.ir import BITS, Finding, Scope

VALUE = dict(BITS)
TIERS = (("FULL", 255), ("AGENT", 127), ("ENTERPRISE", 63), ("BUSINESS", 43), ("COMMUNITY", 35))
QUESTIONS = ("DECLARE", "VOCAB", "TEMPORAL", "RELATIONAL", "OPERATIONS", "STRUCTURE", "LEARNING", "INHERITED")


def tier(score: int) -> str:
    for name, mask in TIERS:
        if score & mask == mask:
            return name
    return "NONE"


def score_of(bits: Mapping[str, bool]) -> int:
    return sum(VALUE[name] for name, on in bits.items() if on)


def bits_without_operations(findings: Iterable[Finding]) -> dict[str, bool]:
    off = {f.bit for f in findings if f.severity == "error" and f.bit}
    return {name: name not in off for name, _ in BITS}


def operations_ok(findings: Iterable[Finding]) -> bool:
    for f in findings:
        if f.severity == "error" or f.code == "UNMAPPED_CONSTRAINT":
            return False
    return True


def claim_findings(scope: Scope, bits: Mapping[str, bool], files: Mapping[str, str]) -> list[Finding]:
    """COVERAGE_DRIFT: the claimed score against the score as if bit 4 were set, and PASS rows
    whose bit is computed off or whose evidence file is missing or empty."""
    path = scope.path("COVERAGE.md")
    if path not in scope.files:
        return []
    out: list[Finding] = []
    as_if = score_of({**bits, "OPERATIONS": True})
    if scope.coverage_claim is None:
        out.append(
            F(
                "MISSING_SECTION",
                "coverage_claim",
                "OPERATIONS",
                path,
                1,
                "COVERAGE.md states no 'Score: N/255'",
            )
        )
    elif scope.coverage_claim != as_if:
        off = [n for n, on in bits.items() if not on and n != "OPERATIONS"]
        out.append(
            F(
                "COVERAGE_DRIFT",
                "coverage_claim",
                "OPERATIONS",
                path,
                scope.coverage_claim_line or 1,
                f"claims {scope.coverage_claim}/255 but computes {as_if}/255"
                + (f" ({', '.join(off)} off)" if off else ""),
            )
        )
    if len(scope.coverage_rows) != 8:
        out.append(
            F(
                "COVERAGE_DRIFT",
                "coverage_claim",
                "OPERATIONS",
                path,
                1,
                f"COVERAGE.md has {len(scope.coverage_rows)} question rows, not 8",
            )
        )
        return out
    for name, row in zip(QUESTIONS, scope.coverage_rows, strict=True):
        if row.status not in ("PASS", "FAIL"):
            out.append(
                F("COVERAGE_DRIFT", "coverage_claim", "OPERATIONS", path, row.line, "Status is PASS or FAIL")
            )
            continue
        if row.status != "PASS":
            continue
        if name != "OPERATIONS" and not bits[name]:
            out.append(
                F(
                    "COVERAGE_DRIFT",
                    "coverage_claim",
                    "OPERATIONS",
                    path,
                    row.line,
                    f"row says PASS but {name} is computed off",
                )
            )
        for ref in re.findall(r"[A-Za-z0-9_./-]{1,200}\.md", row.evidence):
            target = ref if "/" in ref else scope.path(ref)
            if not files.get(target, "").strip():
                out.append(
                    F(
                        "COVERAGE_DRIFT",
                        "coverage_claim",
                        "OPERATIONS",
                        path,
                        row.line,
                        f"PASS evidence {ref} is missing or empty",
                    )
                )
    return out

"""The intermediate representation the parser produces and the checks and the Policy consume.

Every item carries its source location (repo-relative file, 1-based line) so findings and
denials can cite ``FILE:L<line>``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

SEVERITY_BY_MODALITY = {
    "MUST": "error",
    "MUST NOT": "error",
    "SHALL": "error",
    "SHALL NOT": "error",
    "SHOULD": "warning",
    "SHOULD NOT": "warning",
    "MAY": "info",
}


def rule_id(file: str, line: int) -> str:
    return f"{file}:L{line}"


@dataclass(frozen=True)
class Constraint:
    scope: str
    file: str
    line: int
    modality: str  # MUST, MUST NOT, SHOULD, SHOULD NOT, MAY (SHALL folded into MUST)
    text: str
    kind: str | None = None  # explicit (check: kind) or pattern-mapped kind; None = manual
    args: str = ""
    mapped_by: str = "none"  # explicit | pattern | none
    inherited_from: str | None = None

    @property
    def id(self) -> str:
        return rule_id(self.file, self.line)

    @property
    def severity(self) -> str:
        return SEVERITY_BY_MODALITY[self.modality]


@dataclass(frozen=True)
class Binding:
    """One runtime binding declared in a SPEC: a name and a kind, never a value."""

    name: str
    secret: bool
    type: str  # int | decimal | csv | url | string | secret
    optional: bool
    file: str
    line: int
    note: str = ""

    @property
    def id(self) -> str:
        return rule_id(self.file, self.line)


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    action: str
    file: str
    line: int


@dataclass(frozen=True)
class VocabTerm:
    term: str
    definition: str
    file: str
    line: int


@dataclass(frozen=True)
class LedgerRow:
    cells: tuple[str, ...]
    raw: str
    file: str
    line: int


@dataclass
class Scope:
    """One governed scope (a directory holding CANON.md)."""

    name: str
    dir: str  # repo-relative directory, "" for the repo root
    files: dict[str, str] = field(default_factory=dict)  # repo-relative path -> text
    inherits: str | None = None
    inherits_line: int | None = None
    axiom: str | None = None
    constraints: list[Constraint] = field(default_factory=list)
    capabilities: list[str] = field(default_factory=list)
    vocab: dict[str, VocabTerm] = field(default_factory=dict)
    bindings: list[Binding] = field(default_factory=list)
    routes: list[Route] = field(default_factory=list)
    learning_rows: list[LedgerRow] = field(default_factory=list)
    roadmap: list[tuple[str, int]] = field(default_factory=list)  # (YYYY-MM, line)
    coverage_claim: int | None = None
    coverage_claim_line: int | None = None

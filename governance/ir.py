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
    # additive fields (compiler): declared name, headings, surface routes, coverage rows, ...
    declared_name: str | None = None
    headings: list = field(default_factory=list)  # list[Heading]
    surface_routes: list = field(default_factory=list)  # list[SurfaceRoute]
    coverage_rows: list = field(default_factory=list)  # list[CoverageRow]
    roadmap_items: list = field(default_factory=list)  # list[RoadmapItem]
    archives: dict = field(default_factory=dict)  # LEARNING-<epoch>.md path -> list[LedgerRow]
    learning_header: tuple = ()
    parse_findings: list = field(default_factory=list)  # list[Finding] raised while parsing

    @property
    def spec_file(self) -> str:
        return _join(self.dir, f"{self.name}.md")

    def path(self, name: str) -> str:
        return _join(self.dir, name)


def _join(d: str, name: str) -> str:
    return f"{d}/{name}" if d else name


# -- additive: findings and the extra parsed structure the checks need --------------------------

BITS = (
    ("DECLARE", 1),
    ("VOCAB", 2),
    ("TEMPORAL", 4),
    ("RELATIONAL", 8),
    ("OPERATIONS", 16),
    ("STRUCTURE", 32),
    ("LEARNING", 64),
    ("INHERITED", 128),
)


@dataclass(frozen=True)
class Finding:
    """One result of a check. ``bit`` names the coverage dimension an error clears."""

    severity: str  # error | warning | info
    code: str  # e.g. UNDEFINED_REF, LEDGER_REWRITE
    kind: str  # the check kind that produced it (files_present, vocab_closure, ...)
    file: str
    line: int
    message: str
    bit: str | None = None
    constraint: str | None = None  # FILE:L<line> of the constraint line that asked for it

    @property
    def fingerprint(self) -> str:
        import hashlib

        norm = " ".join(self.message.lower().split())
        return hashlib.sha256(f"{self.code}|{self.file}|{norm}".encode()).hexdigest()[:32]

    def as_dict(self) -> dict:
        return {
            "severity": self.severity,
            "code": self.code,
            "kind": self.kind,
            "bit": self.bit,
            "file": self.file,
            "line": self.line,
            "message": self.message,
            "constraint": self.constraint,
            "fingerprint": self.fingerprint,
        }


@dataclass(frozen=True)
class SurfaceRoute:
    key: str
    url: str
    file: str
    line: int


@dataclass(frozen=True)
class Heading:
    level: int
    title: str
    file: str
    line: int


@dataclass(frozen=True)
class CoverageRow:
    question: str
    status: str
    evidence: str
    file: str
    line: int


@dataclass(frozen=True)
class RoadmapItem:
    section: str
    done: bool
    text: str
    file: str
    line: int


def type_by_name(name: str) -> str:
    """The naming convention for a binding's type, shared by the parser (a declared binding whose
    note names no type) and the Policy (a binding read by convention)."""
    if name.endswith(("_MS", "_TRIES", "TOKENS_MIN", "TOKENS_MAX", "MAX_TOKENS", "_MAX_INSTANCES", "_N_CTX")):
        return "int"
    if name.endswith("_MAX_DPH"):
        return "decimal"
    if name.endswith(("_MODELS", "_GPUS", "_IMAGES", "_TEMPLATES")):
        return "csv"
    if name.endswith("_URL"):
        return "url"
    return "string"

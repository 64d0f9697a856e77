"""The orchestrator: files -> chain of Scopes -> findings -> bits -> (optionally) Policy.

``compile_files`` is the one entry point that ``canonic validate``, ``POST /validate`` and the
gateway's startup share, so CI and the running policy can never disagree.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

from governance import (
    checks,
    checks_chain,
    checks_docs,
    checks_ledger,
    checks_literals,
    checks_spec,
    coverage,
)
from governance.ir import Constraint, Finding, LedgerRow, Scope
from governance.parse import Doc, new_markdown, parse_scope, read_doc, tables

MAX_DEPTH = 32
_SEVERITY_ORDER = {"error": 0, "warning": 1, "info": 2}


@dataclass(frozen=True)
class CompileResult:
    scope: Scope  # the leaf scope being validated
    chain: tuple[Scope, ...]  # root first, leaf last
    findings: tuple[Finding, ...]
    bits: dict[str, bool]
    score: int
    tier: str
    claimed_score: int | None
    sources_digest: str
    constraints: tuple[Constraint, ...] = field(default=())
    mode: str = "scope"  # "scope": the whole chain; "single-file": see ``single_file``

    @property
    def errors(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.severity == "error")

    @property
    def valid(self) -> bool:
        return not self.errors

    def counts(self) -> dict[str, int]:
        out = {"error": 0, "warning": 0, "info": 0, "manual": 0}
        for f in self.findings:
            out[f.severity] = out.get(f.severity, 0) + 1
            if f.code == "UNMAPPED_CONSTRAINT":
                out["manual"] += 1
        return out

    def as_dict(self) -> dict:
        return {
            "valid": self.valid,
            "mode": self.mode,
            "scope": self.scope.name,
            "score": self.score,
            "tier": self.tier,
            "claimed_score": self.claimed_score,
            "bits": dict(self.bits),
            "sources_digest": self.sources_digest,
            "chain": [s.name for s in self.chain],
            "counts": self.counts(),
            "findings": [f.as_dict() for f in self.findings],
            "constraints": [
                {
                    "id": c.id,
                    "modality": c.modality,
                    "kind": c.kind,
                    "mapped_by": c.mapped_by,
                    "inherited_from": c.inherited_from,
                    "text": c.text,
                }
                for c in self.constraints
            ],
        }


def sources_digest(chain: Sequence[Scope]) -> str:
    h = hashlib.sha256()
    for s in chain:
        for path in sorted(s.files):
            data = s.files[path].encode()
            h.update(f"{path}\n{len(data)}\n".encode())
            h.update(data)
    return "sha256:" + h.hexdigest()


def _dir_files(files: Mapping[str, str], d: str) -> dict[str, str]:
    prefix = f"{d}/" if d else ""
    return {p: t for p, t in files.items() if p.startswith(prefix) and "/" not in p[len(prefix) :]}


def _dir_of(path: str) -> str:
    return path.rsplit("/", 1)[0] if "/" in path else ""


def _resolve(ref: str, files: Mapping[str, str], canon_dir: str) -> str | None:
    ref = ref.strip().strip("`")
    for suffix in ("/CANON.md", "CANON.md", "/"):
        if ref.endswith(suffix):
            ref = ref[: -len(suffix)]
    for cand in (ref, f"{canon_dir}/{ref}" if ref else canon_dir):
        if f"{cand}/CANON.md" in files:
            return cand
    return None


def _walk(md, files, leaf_dir, fallback, root, canon_dir):
    """Leaf-first list of (Scope, docs) plus chain findings."""
    found: list[tuple[Scope, dict[str, Doc]]] = []
    out: list[Finding] = []
    d: str | None = leaf_dir
    visited: list[str] = []
    while d is not None and len(visited) < MAX_DEPTH:
        scope, docs = parse_scope(md, d, _dir_files(files, d), fallback)
        visited.append(d)
        found.append((scope, docs))
        canon = scope.path("CANON.md")
        line = scope.inherits_line or 1
        if canon not in files:
            break
        if scope.inherits is None:
            if scope.name == root:
                break  # the root without an inherits: line; declare() reports MISSING_INHERITS
            out.append(
                checks_docs.F(
                    "CHAIN_NO_ROOT",
                    "inheritance",
                    "INHERITED",
                    canon,
                    1,
                    f"{scope.name} inherits nothing and is not the root {root}",
                )
            )
            break
        if scope.inherits.strip() == "." or (_resolve(scope.inherits, files, canon_dir) == d):
            if scope.name != root:
                out.append(
                    checks_docs.F(
                        "CHAIN_NO_ROOT",
                        "inheritance",
                        "INHERITED",
                        canon,
                        line,
                        f"{scope.name} declares itself a root; the configured root is {root}",
                    )
                )
            break
        nxt = _resolve(scope.inherits, files, canon_dir)
        if nxt is None:
            out.append(
                checks_docs.F(
                    "CHAIN_BREAK",
                    "inheritance",
                    "INHERITED",
                    canon,
                    line,
                    f"inherits: {scope.inherits} has no CANON.md",
                )
            )
            break
        if nxt in visited:
            out.append(
                checks_docs.F(
                    "CHAIN_CYCLE",
                    "inheritance",
                    "INHERITED",
                    canon,
                    line,
                    f"inherits: {scope.inherits} closes a cycle ({' -> '.join(visited + [nxt])})",
                )
            )
            break
        d = nxt
    else:
        if d is not None:
            out.append(
                checks_docs.F(
                    "CHAIN_NO_ROOT",
                    "inheritance",
                    "INHERITED",
                    leaf_dir or "CANON.md",
                    1,
                    "inheritance chain too deep",
                )
            )
    return found, out


def compile_files(
    files: Mapping[str, str],
    *,
    scope_dir: str = "",
    previous: Mapping[str, str] | None = None,
    root: str = "MAGIC",
    canon_dir: str = "canon",
    fallback_name: str = "SCOPE",
    served: Sequence[tuple[str, str]] | None = None,
) -> CompileResult:
    """Compile the scope at ``scope_dir`` (repo-relative; "" = the repo root) from ``files``
    ({repo-relative path: text}). ``previous`` enables history checks of LEARNING; ``served``
    compares the app's routes with the Routes table. The documents only: the bindings' values
    are the Policy's business (``compile_policy``, ``checks_spec.env_values``)."""
    md = new_markdown()
    found, findings = _walk(md, files, scope_dir, fallback_name, root, canon_dir)
    leaf, leaf_docs = found[0]
    chain = [s for s, _ in reversed(found)]
    for s in chain[:-1]:
        s.constraints = [replace(c, inherited_from=s.name) for c in s.constraints]
    present = set(files)
    findings += checks.mapping(chain)
    bindings = checks_spec.effective_bindings(chain)
    leaf_files = set(leaf.files)

    def bit_for(path: str, default: str | None) -> str:
        if path not in leaf_files:
            return "INHERITED"
        base = path.rsplit("/", 1)[-1]
        if base == f"{leaf.name}.md":
            return "RELATIONAL"
        if base.startswith("LEARNING"):
            return "LEARNING"
        return default or checks_docs.ROLE_BIT.get(base, "STRUCTURE")

    exempt = checks_literals.surface_lines(chain)
    for idx, (scope, docs) in enumerate(found):
        is_leaf = idx == 0
        ancestors = [s for s, _ in found[idx:]]
        findings += scope.parse_findings
        findings += checks_docs.files_present(scope, is_leaf, present)
        findings += checks_docs.declare(scope, docs.get(scope.path("CANON.md")))
        defined = checks_docs.defined_terms(ancestors) | set(bindings)
        findings += checks_docs.vocab_closure(scope, docs, defined, "VOCAB" if is_leaf else "INHERITED")
        findings += checks_literals.literals(docs.values(), exempt, bit_for)
        findings += checks_docs.structure(docs.values(), present, bit_for)
    findings += checks_docs.roadmap(leaf, leaf_docs.get(leaf.path("ROADMAP.md")))
    findings += checks_spec.spec(leaf, leaf_docs.get(leaf.spec_file))
    findings += checks_spec.constraint_args(chain, bindings)
    findings += checks_chain.weakening(chain)
    findings += checks_ledger.shape(leaf)

    def parse_rows(path: str, text: str) -> list[LedgerRow]:
        rows = []
        for t in tables(read_doc(md, path, text)):
            if t.header and t.header[0].lower() == "date":
                rows.extend(LedgerRow(tuple(c), raw, path, line) for c, raw, line in t.rows)
        return rows

    findings += checks_ledger.history(leaf, previous, parse_rows)
    if served is not None:
        findings += checks_spec.served_routes(leaf, served)
    # an error in an ancestor's file clears INHERITED, whatever group found it
    ancestor_dirs = {s.dir for s in chain[:-1]}
    findings = [
        replace(f, bit="INHERITED") if f.severity == "error" and _dir_of(f.file) in ancestor_dirs else f
        for f in findings
    ]
    bits = coverage.bits_without_operations(findings)
    bits["OPERATIONS"] = coverage.operations_ok(findings)
    for name, needs in (
        ("TEMPORAL", "ROADMAP.md"),
        ("OPERATIONS", "COVERAGE.md"),
        ("LEARNING", "LEARNING.md"),
        ("STRUCTURE", "README.md"),
        ("VOCAB", "VOCAB.md"),
        ("DECLARE", "CANON.md"),
        ("INHERITED", "CANON.md"),
    ):
        if leaf.path(needs) not in leaf.files:
            bits[name] = False
    if leaf.spec_file not in leaf.files:
        bits["RELATIONAL"] = False
    drift = coverage.claim_findings(leaf, bits, files)
    findings += drift
    if any(f.severity == "error" for f in drift):
        bits["OPERATIONS"] = False
    findings.sort(key=lambda f: (_SEVERITY_ORDER.get(f.severity, 3), f.file, f.line, f.code))
    score = coverage.score_of(bits)
    return CompileResult(
        scope=leaf,
        chain=tuple(chain),
        findings=tuple(findings),
        bits=bits,
        score=score,
        tier=coverage.tier(score),
        claimed_score=leaf.coverage_claim,
        sources_digest=sources_digest(chain),
        constraints=tuple(c for s in chain for c in s.constraints),
    )


# Findings that need the scope's other files; a single-file validation cannot judge them.
CROSS_FILE = frozenset(
    {"UNDEFINED_REF", "BINDING_MISSING", "COVERAGE_DRIFT", "NO_BASELINE", "MISSING_FILE", "BROKEN_LINK"}
)
ROLE_FILES = frozenset({"CANON", "README", "VOCAB", "LEARNING", "ROADMAP", "COVERAGE"})
SINGLE_FILE_NOTE = "single-file: findings, valid, score and bits judge this one file's own findings"


def spec_name(path: str) -> str | None:
    """The scope name a lone file implies: ``{NAME}.md`` that is no role file names the SPEC."""
    stem = path.rsplit("/", 1)[-1].removesuffix(".md")
    if stem in ROLE_FILES or stem.startswith("LEARNING-") or not stem:
        return None
    return stem


def single_file(result: CompileResult, path: str) -> CompileResult:
    """``result`` narrowed to one file: its own findings (no cross-file ones), and the bits and
    score recomputed from exactly those, so every report format says the same thing."""
    kept = tuple(f for f in result.findings if f.file == path and f.code not in CROSS_FILE)
    bits = coverage.bits_without_operations(kept)
    bits["OPERATIONS"] = coverage.operations_ok(kept)
    score = coverage.score_of(bits)
    return replace(
        result, findings=kept, bits=bits, score=score, tier=coverage.tier(score), claimed_score=None,
        mode="single-file",
    )


def compile_policy(result: CompileResult, env: Mapping[str, str]):
    """The runtime Policy for a compile result: a refusing Policy when the chain has errors."""
    from governance.policy import Policy

    if not result.valid:
        first = result.errors[0]
        reason = f"governance chain has {len(result.errors)} error finding(s); first: {first.file}:{first.line} {first.code}"
        return Policy.refusing(reason, sources_digest=result.sources_digest)
    return Policy.compile(result.chain, env, sources_digest=result.sources_digest)

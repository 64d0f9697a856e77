"""Document checks: files present, declaration shape, vocabulary closure, structure, roadmap
(literals live in checks_literals). Each function takes parsed scopes/docs and returns findings; none reads the disk."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence

from governance.ir import Finding, Scope
from governance.parse import Doc

TRIAD = ("CANON.md", "VOCAB.md", "README.md")
CLOSURE_EXTRA = ("ROADMAP.md", "COVERAGE.md", "LEARNING.md")
ROLE_BIT = {
    "CANON.md": "DECLARE",
    "VOCAB.md": "VOCAB",
    "ROADMAP.md": "TEMPORAL",
    "COVERAGE.md": "OPERATIONS",
    "README.md": "STRUCTURE",
    "LEARNING.md": "LEARNING",
}
# Words that look like terms but are not: RFC 2119 keywords and HTTP methods.
STOPLIST = frozenset(
    {
        "MUST",
        "NOT",
        "SHALL",
        "SHOULD",
        "MAY",
        "REQUIRED",
        "RECOMMENDED",
        "OPTIONAL",
        "GET",
        "POST",
        "PUT",
        "PATCH",
        "DELETE",
        "HEAD",
        "OPTIONS",
    }
)
STUBS = frozenset({"", "-", "—", "–", "tbd", "todo", "n/a", "governed term in this scope vocabulary."})
TERM_RE = re.compile(r"(?<![A-Za-z0-9_\-./{])[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)*(?![A-Za-z0-9_\-}]|\.[A-Za-z])")
_CODE_SPAN = re.compile(r"`[^`]*`")
# Every pattern below is linear in the line's length (bounded or unambiguous quantifiers):
# documents come from callers of POST /validate.
_CHECK_SUFFIX = re.compile(r"\(check:[^()]{0,300}\)")
_LINK = re.compile(r"\[[^\[\]]{0,300}\]\(([^)\s]{1,300})\)")
URL_RE = re.compile(r"\b[a-z][a-z0-9+.-]{0,30}://[^\s)>\]|`]+", re.IGNORECASE)


def F(
    code: str, kind: str, bit: str, file: str, line: int, msg: str, sev: str = "error", constraint=None
) -> Finding:
    return Finding(sev, code, kind, file, max(1, line), msg, bit, constraint)


def files_present(scope: Scope, leaf: bool, present: Iterable[str]) -> list[Finding]:
    out: list[Finding] = []
    present = set(present)
    need = list(TRIAD) + ([f"{scope.name}.md", *CLOSURE_EXTRA] if leaf else [])
    for base in need:
        path = scope.path(base)
        bit = ROLE_BIT.get(base, "RELATIONAL")
        if path not in scope.files:
            out.append(
                F("MISSING_FILE", "files_present", bit, path, 1, f"{base} is required in scope {scope.name}")
            )
            if base in TRIAD and bit != "STRUCTURE":
                out.append(
                    F("MISSING_FILE", "files_present", "STRUCTURE", path, 1, f"TRIAD file {base} is missing")
                )
        elif not scope.files[path].strip():
            out.append(F("EMPTY_FILE", "files_present", bit, path, 1, f"{base} is empty"))
    prefix = scope.path("LEARNING/")
    for p in sorted(present):
        if p.startswith(prefix):
            out.append(
                F(
                    "NESTED_LEARNING",
                    "files_present",
                    "STRUCTURE",
                    p,
                    1,
                    "LEARNING.md is terminal; no nested LEARNING/",
                )
            )
            break
    return out


def declare(scope: Scope, canon: Doc | None) -> list[Finding]:
    if canon is None:
        return []
    out: list[Finding] = []
    path = canon.path
    axioms = [h for h in canon.headings if h.title.lower() == "axiom"]
    if not axioms:
        out.append(
            F("MISSING_SECTION", "files_present", "DECLARE", path, 1, "CANON.md needs one '## Axiom' section")
        )
    elif len(axioms) > 1:
        out.append(
            F(
                "DUPLICATE_SECTION",
                "files_present",
                "DECLARE",
                path,
                axioms[1].line,
                "more than one '## Axiom'",
            )
        )
    elif not scope.axiom:
        out.append(
            F(
                "MISSING_SECTION",
                "files_present",
                "DECLARE",
                path,
                axioms[0].line,
                "the Axiom section is empty",
            )
        )
    if scope.inherits is None:
        out.append(
            F("MISSING_INHERITS", "inheritance", "DECLARE", path, 1, "CANON.md declares no 'inherits:' line")
        )
    if not any(c.file == path and c.modality in ("MUST", "MUST NOT") for c in scope.constraints):
        out.append(
            F("NO_MUST", "files_present", "DECLARE", path, 1, "CANON.md holds no MUST or MUST NOT constraint")
        )
    for cap in scope.capabilities:
        if not re.fullmatch(r"[A-Z][A-Z0-9_]*", cap):
            line = next((h.line for h in canon.headings if h.title.lower() == "capabilities"), 1)
            out.append(
                F(
                    "MALFORMED_CAPABILITY",
                    "files_present",
                    "DECLARE",
                    path,
                    line,
                    "capabilities are SCREAMING_CASE terms",
                )
            )
            break
    if canon.unclosed_fence:
        out.append(
            F(
                "UNCLOSED_FENCE",
                "files_present",
                "STRUCTURE",
                path,
                canon.unclosed_fence,
                "code fence is never closed",
            )
        )
    return out


def _scan_lines(doc: Doc):
    """Prose lines and constraint lines (a fenced Constraints block counts; other code does not)."""
    for i, raw in enumerate(doc.lines):
        if doc.kind[i] in ("fence_mark", "html", "front"):
            continue
        if doc.kind[i] == "fence" and doc.section[i].strip().lower() not in ("constraints", "governance"):
            continue
        yield i + 1, _CHECK_SUFFIX.sub(" ", _LINK.sub(" ", _CODE_SPAN.sub(" ", raw)))


def vocab_closure(scope: Scope, docs: Mapping[str, Doc], defined: set[str], bit: str) -> list[Finding]:
    out: list[Finding] = []
    for base in ("CANON.md", f"{scope.name}.md", "README.md"):
        doc = docs.get(scope.path(base))
        if doc is None:
            continue
        seen: set[str] = set()
        for line, text in _scan_lines(doc):
            for m in TERM_RE.finditer(URL_RE.sub(" ", text)):
                term = m.group(0)
                if len(term) < 2 or term in STOPLIST or term in defined or term in seen:
                    continue
                seen.add(term)
                out.append(
                    F(
                        "UNDEFINED_REF",
                        "vocab_closure",
                        bit,
                        doc.path,
                        line,
                        f"{term} is not defined in VOCAB.md here or up the chain",
                    )
                )
    for t in scope.vocab.values():
        if t.definition.strip().lower() in STUBS or len(t.definition.split()) < 3:
            out.append(
                F("STUB_TERM", "vocab_closure", bit, t.file, t.line, f"{t.term} has a stub definition")
            )
    return out


def structure(docs: Iterable[Doc], present: set[str], bit_for) -> list[Finding]:
    out: list[Finding] = []
    for doc in docs:
        base_dir = doc.path.rsplit("/", 1)[0] + "/" if "/" in doc.path else ""
        for line, _text in _scan_lines(doc):
            for m in _LINK.finditer(doc.lines[line - 1]):
                target = m.group(1).split("#", 1)[0]
                if (
                    not target
                    or "://" in target
                    or target.startswith(("mailto:", "/"))
                    or not target.endswith(".md")
                ):
                    continue
                parts: list[str] = []
                for seg in (base_dir + target).split("/"):
                    if seg == "..":
                        if parts:
                            parts.pop()
                    elif seg not in ("", "."):
                        parts.append(seg)
                if "/".join(parts) not in present:
                    out.append(
                        F(
                            "BROKEN_LINK",
                            "files_present",
                            "STRUCTURE",
                            doc.path,
                            line,
                            f"link target {target} not found",
                        )
                    )
        for line in doc.long_lines:
            out.append(
                F(
                    "LINE_TOO_LONG",
                    "files_present",
                    bit_for(doc.path, "STRUCTURE"),
                    doc.path,
                    line,
                    "line is longer than 2000 characters; only its start was checked",
                )
            )
        if doc.unclosed_fence and not doc.path.endswith("CANON.md"):
            out.append(
                F(
                    "UNCLOSED_FENCE",
                    "files_present",
                    bit_for(doc.path, "STRUCTURE"),
                    doc.path,
                    doc.unclosed_fence,
                    "code fence is never closed",
                )
            )
    return out


def roadmap(scope: Scope, doc: Doc | None) -> list[Finding]:
    if doc is None:
        return []
    out: list[Finding] = []
    if not scope.roadmap:
        return [
            F(
                "ROADMAP_EMPTY",
                "files_present",
                "TEMPORAL",
                doc.path,
                1,
                "ROADMAP.md has no '## YYYY-MM' section",
            )
        ]
    for (prev, _), (cur, line) in zip(scope.roadmap, scope.roadmap[1:], strict=False):
        if cur <= prev:
            out.append(
                F(
                    "ROADMAP_ORDER",
                    "files_present",
                    "TEMPORAL",
                    doc.path,
                    line,
                    f"section {cur} does not follow {prev}",
                )
            )
    for m, line in scope.roadmap:
        if not any(it.section == m for it in scope.roadmap_items):
            out.append(
                F("ROADMAP_EMPTY", "files_present", "TEMPORAL", doc.path, line, f"section {m} has no items")
            )
    return out


def defined_terms(chain: Sequence[Scope]) -> set[str]:
    out: set[str] = set()
    for s in chain:
        out.update(s.vocab)
        out.update(b.name for b in s.bindings)
    return out

"""Markdown (markdown-it-py) -> the IR, with a source map (repo-relative file, 1-based line).

The parser reads source files only. markdown-it tells us where headings, fences, HTML comments
and list items are; the line grammar (constraints, tables, bindings) runs over the raw lines so
every item keeps its exact line number. Problems found while parsing become findings on the
scope (``Scope.parse_findings``); nothing is dropped silently.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from markdown_it import MarkdownIt

from governance.ir import (
    Binding,
    Constraint,
    CoverageRow,
    Finding,
    LedgerRow,
    RoadmapItem,
    Route,
    Scope,
    SurfaceRoute,
    VocabTerm,
    type_by_name,
)
from governance.source_doc import Doc, Table, new_markdown, read_doc, tables

__all__ = ["CHECK_KINDS", "Doc", "new_markdown", "parse_scope", "read_doc", "tables"]

CHECK_KINDS = frozenset(
    {
        "files_present",
        "vocab_closure",
        "inheritance",
        "coverage_claim",
        "append_only",
        "no_literals",
        "env_bindings",
        "route_declared",
        "telemetry",
        "fail_closed",
        "limit",
        "manual",
        "none",
    }
)

_MODAL = r"MUST NOT|MUST|SHALL NOT|SHALL|SHOULD NOT|SHOULD|MAY"
CONSTRAINT_RE = re.compile(rf"^(?P<modal>{_MODAL})(?::\s*|\s+)(?P<text>\S.*)$")
_CHECK_RE = re.compile(r"\(check:\s*(?P<kind>[a-z_]+)(?P<args>[^()]*)\)$")
_SPLIT_RE = re.compile(r"(?<=\s)(?=(?:MUST|SHOULD)(?: NOT)?:)")
_LIST_MARK = re.compile(r"^\s*(?:[-*+]\s+|\d+[.)]\s*)")
_MODAL_START = re.compile(r"^(?:must|shall|should|may)\b", re.IGNORECASE)
_SCORE_RE = re.compile(r"^\**\s*Score:?\**\s*:?\s*(\d+)\s*/\s*255\b", re.IGNORECASE)
_ROADMAP_SECTION = re.compile(r"^\d{4}-\d{2}$")
_CHECKBOX = re.compile(r"^\s*[-*]\s+\[( |x|X)\]\s+(\S.*)$")
_BULLET_BINDING = re.compile(
    r"^\s*[-*]\s+`?(secret|var)`?\s*:\s*(?P<names>`?[A-Z][A-Z0-9_]*`?(?:\s*,\s*`?[A-Z][A-Z0-9_]*`?)*)\s*(?:\((?P<note>[^)]*)\))?\s*$"
)
_SURFACE_ROUTE = re.compile(
    r"^\s*(?:[-*]\s+)?`?(?P<key>[a-z][a-z0-9_]*)`?\s*:\s*`?(?P<url>[a-z][a-z0-9+.-]*://[^\s`]+)`?\s*$"
)
_TYPE_WORDS = {
    "integer": "int",
    "int": "int",
    "decimal": "decimal",
    "csv": "csv",
    "url": "url",
    "string": "string",
}


def _finding(
    code: str, kind: str, bit: str, file: str, line: int, msg: str, severity: str = "error"
) -> Finding:
    return Finding(severity, code, kind, file, line, msg, bit)


def split_constraint(line: str) -> tuple[str, str, str | None, str] | None:
    """``MODALITY[:] text [(check: kind args)]`` -> (modality, text, kind, args), or None when
    the line is malformed. SHALL folds into MUST. Linear in the line's length."""
    m = CONSTRAINT_RE.match(line)
    if not m:
        return None
    text, kind, args = m.group("text").rstrip(), None, ""
    at = text.rfind("(check:")
    if at >= 0:
        cm = _CHECK_RE.match(text, at)
        if cm is None or at == 0 or not text[at - 1].isspace():
            return None
        kind, args, text = cm.group("kind"), cm.group("args").strip(), text[:at].rstrip()
    if not text or "(check:" in text:
        return None
    return m.group("modal").replace("SHALL", "MUST"), text, kind, args


def _constraints(scope: Scope, doc: Doc) -> None:
    for i, raw in enumerate(doc.lines):
        if doc.kind[i] not in ("text", "fence") or not raw.strip():
            continue
        if doc.section[i].strip().lower() not in ("constraints", "governance"):
            continue
        stripped = _LIST_MARK.sub("", raw, count=1).strip() if doc.kind[i] == "text" else raw.strip()
        is_item = doc.kind[i] == "fence" or doc.list_item[i] or bool(_LIST_MARK.match(raw))
        if not is_item and not _MODAL_START.match(stripped):
            continue  # prose is never a constraint
        parts = _SPLIT_RE.split(stripped)
        if len(parts) > 1:
            scope.parse_findings.append(
                _finding(
                    "RUN_TOGETHER",
                    "manual",
                    "DECLARE",
                    doc.path,
                    i + 1,
                    "several constraints on one line; write one per line",
                    "warning",
                )
            )
        for part in parts:
            parsed = split_constraint(part.strip())
            if parsed is None:
                scope.parse_findings.append(
                    _finding(
                        "MALFORMED_CONSTRAINT",
                        "files_present",
                        "DECLARE",
                        doc.path,
                        i + 1,
                        "constraint line does not match 'MODALITY: text (check: kind)'",
                    )
                )
                continue
            modal, text, kind, args = parsed
            mapped = "explicit"
            if kind is None:
                mapped = "none"
            elif kind not in CHECK_KINDS:
                scope.parse_findings.append(
                    _finding(
                        "UNKNOWN_CHECK",
                        "files_present",
                        "DECLARE",
                        doc.path,
                        i + 1,
                        f"unknown check kind '{kind}'; known: {', '.join(sorted(CHECK_KINDS))}",
                    )
                )
                kind, mapped = None, "none"
            scope.constraints.append(
                Constraint(scope.name, doc.path, i + 1, modal, text, kind, args, mapped)
            )


def _section_lines(doc: Doc, name: str):
    for i, raw in enumerate(doc.lines):
        if doc.kind[i] == "text" and raw.strip() and doc.section[i].strip().lower() == name:
            yield i, raw


def binding_type(name: str, secret: bool, note: str) -> str:
    if secret:
        return "secret"
    first = re.split(r"[\s.,:;]", note.strip(), maxsplit=1)[0].lower() if note.strip() else ""
    if first in _TYPE_WORDS:
        return _TYPE_WORDS[first]
    return type_by_name(name)


def _spec(scope: Scope, doc: Doc, tabs: list[Table]) -> None:
    for t in tabs:
        hdr = [h.lower() for h in t.header]
        if hdr[:2] == ["type", "name"] or hdr[:2] == ["type", "key"]:
            for cells, _raw, line in t.rows:
                typ, name = cells[0].strip("` ").lower(), cells[1].strip("` ")
                req = cells[2].strip().lower() if len(cells) > 3 else ""
                note = cells[-1] if len(cells) > 2 else ""
                if (
                    typ not in ("secret", "var")
                    or not re.fullmatch(r"[A-Z][A-Z0-9_]*", name)
                    or (len(cells) > 3 and req not in ("required", "optional"))
                ):
                    scope.parse_findings.append(
                        _finding(
                            "BINDING_TYPE",
                            "env_bindings",
                            "RELATIONAL",
                            doc.path,
                            line,
                            "binding row needs Type secret|var, a SCREAMING_CASE name and Required required|optional",
                        )
                    )
                    continue
                optional = req == "optional" if len(cells) > 3 else note.lower().startswith("optional")
                scope.bindings.append(
                    Binding(
                        name,
                        typ == "secret",
                        binding_type(name, typ == "secret", note),
                        optional,
                        doc.path,
                        line,
                        note,
                    )
                )
        elif hdr == ["method", "path", "action"]:
            for cells, _raw, line in t.rows:
                scope.routes.append(
                    Route(
                        cells[0].strip("` ").upper(),
                        cells[1].strip("` "),
                        cells[2].strip("` "),
                        doc.path,
                        line,
                    )
                )
        for line, why in t.malformed:
            scope.parse_findings.append(
                _finding("MALFORMED_ROW", "files_present", "RELATIONAL", doc.path, line, why)
            )
    for i, raw in enumerate(doc.lines):
        if doc.kind[i] != "text":
            continue
        sec = doc.section[i].lower()
        m = _BULLET_BINDING.match(raw) if "binding" in sec else None
        if m:
            note = (m.group("note") or "").strip()
            for name in re.split(r"\s*,\s*", m.group("names")):
                name = name.strip("` ")
                secret = m.group(1) == "secret"
                scope.bindings.append(
                    Binding(
                        name,
                        secret,
                        binding_type(name, secret, note),
                        note.lower().startswith("optional"),
                        doc.path,
                        i + 1,
                        note,
                    )
                )
        m = (
            _SURFACE_ROUTE.match(raw)
            if sec.startswith("routes") and not raw.lstrip().startswith("|")
            else None
        )
        if m:
            scope.surface_routes.append(SurfaceRoute(m.group("key"), m.group("url"), doc.path, i + 1))


def _learning(scope: Scope, doc: Doc, tabs: list[Table], archive: bool) -> None:
    rows: list[LedgerRow] = []
    for t in tabs:
        if not t.header or t.header[0].lower() != "date":
            continue
        if not archive:
            scope.learning_header = tuple(t.header)
        rows.extend(LedgerRow(tuple(c), raw, doc.path, line) for c, raw, line in t.rows)
        for line, why in t.malformed:
            scope.parse_findings.append(
                _finding("MALFORMED_ROW", "append_only", "LEARNING", doc.path, line, why)
            )
    if archive:
        scope.archives[doc.path] = rows
    else:
        scope.learning_rows = rows


def _coverage(scope: Scope, doc: Doc, tabs: list[Table]) -> None:
    for i, raw in enumerate(doc.lines):
        m = _SCORE_RE.match(raw.strip()) if doc.kind[i] == "text" else None
        if m and scope.coverage_claim is None:
            scope.coverage_claim, scope.coverage_claim_line = int(m.group(1)), i + 1
    for t in tabs:
        if [h.lower() for h in t.header][:3] == ["question", "status", "evidence"]:
            for cells, _raw, line in t.rows:
                scope.coverage_rows.append(
                    CoverageRow(cells[0], cells[1].strip("* ").upper(), cells[2], doc.path, line)
                )


def _roadmap(scope: Scope, doc: Doc) -> None:
    for h in doc.headings:
        if h.level == 2 and _ROADMAP_SECTION.match(h.title):
            scope.roadmap.append((h.title, h.line))
    for i, raw in enumerate(doc.lines):
        if doc.kind[i] != "text" or not _ROADMAP_SECTION.match(doc.section[i]) or not _LIST_MARK.match(raw):
            continue
        m = _CHECKBOX.match(raw)
        if m:
            scope.roadmap_items.append(
                RoadmapItem(doc.section[i], m.group(1) != " ", m.group(2), doc.path, i + 1)
            )
        elif raw.lstrip()[:1] in "-*":
            scope.parse_findings.append(
                _finding(
                    "MALFORMED_ITEM",
                    "files_present",
                    "TEMPORAL",
                    doc.path,
                    i + 1,
                    "roadmap items are '- [ ] text' or '- [x] text'",
                )
            )


def parse_scope(
    md: MarkdownIt, dir: str, files: Mapping[str, str], fallback_name: str
) -> tuple[Scope, dict[str, Doc]]:
    """Parse the files of one scope directory (``files`` holds only that directory's files,
    keyed by repo-relative path)."""
    prefix = f"{dir}/" if dir else ""
    docs = {p: read_doc(md, p, t) for p, t in files.items()}
    canon = docs.get(prefix + "CANON.md")
    declared = canon.header.get("scope", (None, 0))[0] if canon else None
    name = declared or (dir.rsplit("/", 1)[-1] if dir else fallback_name)
    scope = Scope(name=name, dir=dir, files=dict(files), declared_name=declared)
    for path, doc in docs.items():
        base = path[len(prefix) :]
        scope.headings.extend(doc.headings)
        tabs = tables(doc)
        _constraints(scope, doc)
        if base == "CANON.md":
            if "inherits" in doc.header:
                scope.inherits, scope.inherits_line = doc.header["inherits"]
            for _i, raw in _section_lines(doc, "axiom"):
                if scope.axiom is None:
                    scope.axiom = raw.strip().strip("*").strip()
            for _i, raw in _section_lines(doc, "capabilities"):
                scope.capabilities.extend(c.strip(" `-*") for c in raw.split(",") if c.strip(" `-*"))
        elif base == "VOCAB.md":
            for t in tabs:
                if [h.lower() for h in t.header][:2] == ["term", "definition"]:
                    for cells, _raw, line in t.rows:
                        term = cells[0].strip("`* ")
                        if term in scope.vocab:
                            scope.parse_findings.append(
                                _finding(
                                    "DUPLICATE_TERM",
                                    "vocab_closure",
                                    "VOCAB",
                                    path,
                                    line,
                                    f"term {term} is already defined at line {scope.vocab[term].line}",
                                )
                            )
                            continue
                        scope.vocab[term] = VocabTerm(term, cells[1], path, line)
                    for line, why in t.malformed:
                        scope.parse_findings.append(
                            _finding("MALFORMED_ROW", "vocab_closure", "VOCAB", path, line, why)
                        )
        elif base == f"{name}.md":
            _spec(scope, doc, tabs)
        elif base == "LEARNING.md":
            _learning(scope, doc, tabs, archive=False)
        elif re.fullmatch(r"LEARNING-[A-Za-z0-9_.-]+\.md", base):
            _learning(scope, doc, tabs, archive=True)
        elif base == "COVERAGE.md":
            _coverage(scope, doc, tabs)
        elif base == "ROADMAP.md":
            _roadmap(scope, doc)
    return scope, docs

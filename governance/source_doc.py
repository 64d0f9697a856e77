"""One markdown file as classified lines: markdown-it-py finds headings, fences, HTML blocks
and list items; tables are read from the raw lines so each row keeps its exact line number."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from markdown_it import MarkdownIt

from governance.ir import Heading

_HEADER_KEY = re.compile(r"^(inherits|scope):\s*(\S.*)$")  # matched against stripped lines
# Longer lines are cut to this length before any line grammar runs (and reported): it keeps every
# regex pass linear in the size of the input.
MAX_LINE_CHARS = 2000


@dataclass
class Doc:
    """One file's lines, classified."""

    path: str
    lines: list[str]
    headings: list[Heading] = field(default_factory=list)
    section: list[str] = field(default_factory=list)  # per line: the nearest heading's title ("" before any)
    kind: list[str] = field(
        default_factory=list
    )  # per line: text | fence | fence_mark | html | heading | front
    list_item: list[bool] = field(default_factory=list)
    header: dict[str, tuple[str, int]] = field(default_factory=dict)  # inherits/scope -> (value, line)
    unclosed_fence: int | None = None
    long_lines: list[int] = field(default_factory=list)  # 1-based lines cut to MAX_LINE_CHARS


def new_markdown() -> MarkdownIt:
    return MarkdownIt("commonmark")


def read_doc(md: MarkdownIt, path: str, text: str) -> Doc:
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")  # markdown-it's own line breaks
    long_lines = [i + 1 for i, raw in enumerate(lines) if len(raw) > MAX_LINE_CHARS]
    for i in long_lines:
        lines[i - 1] = lines[i - 1][:MAX_LINE_CHARS]
    n = len(lines)
    doc = Doc(path, lines, section=[""] * n, kind=["text"] * n, list_item=[False] * n)
    doc.long_lines = long_lines
    body = lines
    if lines and lines[0].strip() == "---":
        for end in range(1, n):
            if lines[end].strip() == "---":
                for i in range(0, end + 1):
                    doc.kind[i] = "front"
                    m = _HEADER_KEY.match(lines[i].strip())
                    if m:
                        doc.header.setdefault(m.group(1), (m.group(2), i + 1))
                body = [""] * (end + 1) + lines[end + 1 :]
                break
    tokens = md.parse("\n".join(body))
    for i, tok in enumerate(tokens):
        if tok.map is None:
            continue
        a, b = tok.map
        if a >= n:
            continue
        if tok.type == "heading_open":
            title = tokens[i + 1].content.strip() if i + 1 < len(tokens) else ""
            doc.headings.append(Heading(int(tok.tag[1:]), title, path, a + 1))
            doc.kind[a] = "heading"
        elif tok.type in ("fence", "code_block"):
            for j in range(a, min(b, n)):
                doc.kind[j] = "fence"
            if tok.type == "fence":
                doc.kind[a] = "fence_mark"
                last = min(b, n) - 1
                if last > a and lines[last].strip().startswith(tok.markup):
                    doc.kind[last] = "fence_mark"
                elif last >= a:
                    doc.unclosed_fence = a + 1
        elif tok.type == "html_block":
            for j in range(a, min(b, n)):
                doc.kind[j] = "html"
        elif tok.type == "list_item_open":
            doc.list_item[a] = True
    title, in_header = "", True
    hl = {h.line - 1: h for h in doc.headings}
    for i in range(n):
        if i in hl:
            title = hl[i].title
            in_header = in_header and hl[i].level == 1
        doc.section[i] = title
        if in_header and doc.kind[i] == "text":
            m = _HEADER_KEY.match(lines[i].strip())
            if m:
                doc.header.setdefault(m.group(1), (m.group(2), i + 1))
    return doc


def split_cells(line: str) -> list[str]:
    s = line.strip()
    if s.startswith("|"):
        s = s[1:]
    if s.endswith("|") and not s.endswith("\\|"):
        s = s[:-1]
    return [c.strip() for c in re.split(r"(?<!\\)\|", s)]


@dataclass
class Table:
    header: list[str]
    line: int
    rows: list[tuple[list[str], str, int]]  # (cells, raw line, 1-based line)
    malformed: list[tuple[int, str]]  # (line, why)
    section: str


def tables(doc: Doc) -> list[Table]:
    out: list[Table] = []
    lines, i, n = doc.lines, 0, len(doc.lines)
    while i < n:
        if (
            doc.kind[i] == "text"
            and lines[i].lstrip().startswith("|")
            and i + 1 < n
            and re.match(r"^\s*\|?\s*:?-{3,}", lines[i + 1])
        ):
            t = Table(split_cells(lines[i]), i + 1, [], [], doc.section[i])
            i += 2
            while i < n and lines[i].strip() and doc.kind[i] == "text":
                raw = lines[i]
                if raw.lstrip().startswith("|"):
                    cells = split_cells(raw)
                    if len(cells) != len(t.header):
                        t.malformed.append(
                            (i + 1, f"{len(cells)} cells where the header has {len(t.header)}")
                        )
                    else:
                        t.rows.append((cells, raw, i + 1))
                else:
                    t.malformed.append((i + 1, "a row continues on a second line (one row = one line)"))
                i += 1
            out.append(t)
        else:
            i += 1
    return out

"""The append-only LEARNING ledger: row shape, dates, sources, and (given the previous version)
no rewritten rows, no deleted epochs, rotation only when the archive is byte-identical."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import date

from governance.checks_docs import F
from governance.ir import Finding, LedgerRow, Scope

_ARCHIVE = re.compile(r"LEARNING-[A-Za-z0-9_.-]+\.md$")
_SOURCE = re.compile(
    r"[\w./-]{1,200}\.md\b|\b[0-9a-f]{7,40}\b|[a-z][a-z0-9+.-]{0,30}://\S|\bissue \d+\b", re.IGNORECASE
)


def _first_diff(old: str, new: str) -> int:
    a, b = old.split("\n"), new.split("\n")
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return i + 1
    return min(len(a), len(b)) + (0 if len(a) == len(b) else 1)


def shape(scope: Scope) -> list[Finding]:
    out: list[Finding] = []
    path = scope.path("LEARNING.md")
    if path in scope.files and not scope.learning_header:
        out.append(
            F(
                "MISSING_SECTION",
                "append_only",
                "LEARNING",
                path,
                1,
                "LEARNING.md has no '| Date | ... | Source |' table",
            )
        )
    prev: date | None = None
    for row in scope.learning_rows:
        cell = row.cells[0]
        try:
            d = date.fromisoformat(cell) if re.fullmatch(r"\d{4}-\d{2}-\d{2}", cell) else None
        except ValueError:
            d = None
        if d is None:
            out.append(
                F(
                    "MALFORMED_ROW",
                    "append_only",
                    "LEARNING",
                    row.file,
                    row.line,
                    "the Date cell is not an ISO date",
                )
            )
        elif prev is not None and d < prev:
            out.append(
                F(
                    "DATE_ORDER",
                    "append_only",
                    "LEARNING",
                    row.file,
                    row.line,
                    f"{d} is earlier than the row above",
                )
            )
        prev = d or prev
        if "~~" in row.raw:
            out.append(
                F(
                    "LEDGER_REWRITE",
                    "append_only",
                    "LEARNING",
                    row.file,
                    row.line,
                    "struck-through row: close an item by appending a row that cites it",
                )
            )
        if not _SOURCE.search(row.cells[-1]):
            out.append(
                F(
                    "UNSOURCED_ROW",
                    "append_only",
                    "LEARNING",
                    row.file,
                    row.line,
                    "Source should cite a governed file, a commit or a URL",
                    "warning",
                )
            )
    return out


def history(
    scope: Scope, previous: Mapping[str, str] | None, parse_rows: Callable[[str, str], list[LedgerRow]]
) -> list[Finding]:
    """``previous`` maps repo-relative paths to their earlier text (from git or the caller)."""
    path = scope.path("LEARNING.md")
    if previous is None:
        return [
            F(
                "NO_BASELINE",
                "append_only",
                "LEARNING",
                path,
                1,
                "no base version given: only the ledger's shape was checked",
                "info",
            )
        ]
    out: list[Finding] = []
    prefix = scope.path("")
    for p, old_text in sorted(previous.items()):
        base = p[len(prefix) :] if p.startswith(prefix) else None
        if base is None or "/" in base or not _ARCHIVE.fullmatch(base):
            continue
        if p not in scope.files:
            out.append(
                F("EPOCH_DELETED", "append_only", "LEARNING", p, 1, "an archived LEARNING epoch was deleted")
            )
        elif scope.files[p] != old_text:
            out.append(
                F(
                    "LEDGER_REWRITE",
                    "append_only",
                    "LEARNING",
                    p,
                    _first_diff(old_text, scope.files[p]),
                    "an archived LEARNING epoch was edited",
                )
            )
    old_text = previous.get(path)
    if old_text is None or path not in scope.files:
        return out
    old_rows = [r.raw for r in parse_rows(path, old_text)]
    new_rows = scope.learning_rows
    if [r.raw for r in new_rows[: len(old_rows)]] == old_rows:
        return out
    new_archives = [p for p in scope.archives if p not in previous]
    for p in new_archives:
        if scope.files[p] == old_text:
            first = new_rows[0] if new_rows else None
            if first is None or not first.cells[1].strip("* ").upper().startswith("EVOLUTION"):
                out.append(
                    F(
                        "LEDGER_REWRITE",
                        "append_only",
                        "LEARNING",
                        path,
                        first.line if first else 1,
                        "a rotated ledger must open with an EVOLUTION row naming the epoch",
                    )
                )
            else:
                out.append(
                    F(
                        "EPOCH_ROTATED",
                        "append_only",
                        "LEARNING",
                        p,
                        1,
                        "epoch rotated; archive is byte-identical",
                        "info",
                    )
                )
            return out
    if new_archives:
        p = new_archives[0]
        out.append(
            F(
                "LEDGER_REWRITE",
                "append_only",
                "LEARNING",
                p,
                _first_diff(old_text, scope.files[p]),
                "the new archive does not hold the previous ledger byte for byte",
            )
        )
        return out
    for i, raw in enumerate(old_rows):
        if i >= len(new_rows):
            line = new_rows[-1].line if new_rows else 1
            out.append(F("LEDGER_REWRITE", "append_only", "LEARNING", path, line, "a ledger row was deleted"))
            break
        if new_rows[i].raw != raw:
            out.append(
                F(
                    "LEDGER_REWRITE",
                    "append_only",
                    "LEARNING",
                    path,
                    new_rows[i].line,
                    "an existing ledger row was edited; append a new row instead",
                )
            )
            break
    return out

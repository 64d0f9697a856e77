"""Append-only LEARNING against a previous version: edits, deletions, legal and forged epoch
rotation into LEARNING-<epoch>.md, deleted and edited archives, date order."""

from __future__ import annotations

import pytest

from .docs_helpers import compile_, errors, line_of, off_bits, replace_once, repo_files

EVOLUTION = (
    "# VASTAI learning\n\ninherits: .\n\n## Ledger\n\n| Date | Pattern | Source |\n|------|---------|--------|\n"
    "| 2026-12-05 | EVOLUTION: epoch 2026 closed and archived as LEARNING-2026.md. | LEARNING-2026.md |\n"
)


@pytest.fixture()
def files() -> dict[str, str]:
    return repo_files()


def test_legal_rotation(files):
    old = files["LEARNING.md"]
    files["LEARNING-2026.md"] = old
    files["LEARNING.md"] = EVOLUTION
    r = compile_(files, previous={"LEARNING.md": old})
    assert errors(r) == []
    assert r.score == 255
    assert [(f.code, f.file) for f in r.findings if f.code == "EPOCH_ROTATED"] == [
        ("EPOCH_ROTATED", "LEARNING-2026.md")
    ]


def test_forged_rotation_archive_differs(files):
    old = files["LEARNING.md"]
    files["LEARNING-2026.md"] = replace_once(old, "Reboot is not a reliable", "Reboot is a reliable")
    files["LEARNING.md"] = EVOLUTION
    r = compile_(files, previous={"LEARNING.md": old})
    line = line_of(files["LEARNING-2026.md"], "Reboot is a reliable")
    assert errors(r, "LEDGER_REWRITE") == [("LEDGER_REWRITE", "LEARNING-2026.md", line)]
    assert off_bits(r) == {"LEARNING", "OPERATIONS"}


def test_rotation_without_evolution_row(files):
    old = files["LEARNING.md"]
    files["LEARNING-2026.md"] = old
    files["LEARNING.md"] = replace_once(EVOLUTION, "EVOLUTION: epoch", "Epoch")
    r = compile_(files, previous={"LEARNING.md": old})
    assert errors(r, "LEDGER_REWRITE") == [
        ("LEDGER_REWRITE", "LEARNING.md", line_of(files["LEARNING.md"], "2026-12-05"))
    ]


def test_truncated_ledger_without_archive(files):
    old = files["LEARNING.md"]
    files["LEARNING.md"] = EVOLUTION
    r = compile_(files, previous={"LEARNING.md": old})
    assert errors(r, "LEDGER_REWRITE") == [
        ("LEDGER_REWRITE", "LEARNING.md", line_of(EVOLUTION, "2026-12-05"))
    ]


def test_deleted_row(files):
    old = files["LEARNING.md"]
    files["LEARNING.md"] = "\n".join(line for line in old.split("\n") if "Reboot is not" not in line)
    r = compile_(files, previous={"LEARNING.md": old})
    assert [c for c, _f, _l in errors(r)].count("LEDGER_REWRITE") == 1
    assert off_bits(r) == {"LEARNING", "OPERATIONS"}


def test_deleted_and_edited_archive(files):
    old = files["LEARNING.md"]
    archive = "| Date | Pattern | Source |\n|---|---|---|\n| 2025-01-01 | First lesson of the old epoch. | CANON.md |\n"
    previous = {"LEARNING.md": old, "LEARNING-2025.md": archive}
    r = compile_(files, previous=previous)
    assert errors(r, "EPOCH_DELETED") == [("EPOCH_DELETED", "LEARNING-2025.md", 1)]
    files["LEARNING-2025.md"] = archive.replace("First", "Only")
    r = compile_(files, previous=previous)
    assert errors(r, "LEDGER_REWRITE") == [("LEDGER_REWRITE", "LEARNING-2025.md", 3)]
    files["LEARNING-2025.md"] = archive
    assert errors(compile_(files, previous=previous)) == []


def test_dates_must_not_go_back(files):
    files["LEARNING.md"] += "| 2026-01-01 | A late lesson filed under an earlier date. | CANON.md |\n"
    r = compile_(files)
    assert errors(r, "DATE_ORDER") == [
        ("DATE_ORDER", "LEARNING.md", line_of(files["LEARNING.md"], "A late lesson"))
    ]


def test_unsourced_row_is_a_warning(files):
    files["LEARNING.md"] += "| 2026-12-03 | A lesson with no evidence. | Operator directive |\n"
    r = compile_(files)
    assert errors(r) == []
    assert [(f.severity, f.line) for f in r.findings if f.code == "UNSOURCED_ROW"] == [
        ("warning", line_of(files["LEARNING.md"], "no evidence"))
    ]
    assert r.score == 255  # warnings never clear a bit


def test_without_baseline_the_report_says_so(files):
    r = compile_(files)
    assert [f.severity for f in r.findings if f.code == "NO_BASELINE"] == ["info"]
    assert not [f for f in compile_(files, previous={}).findings if f.code == "NO_BASELINE"]

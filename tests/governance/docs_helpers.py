"""Helpers for the governance tests: the repository's own documents, read through the real
sources reader, and small edits applied to copies of them."""

from __future__ import annotations

import shutil
from pathlib import Path

from governance.compiler import CompileResult, compile_files
from governance.sources import read_scope

REPO = Path(__file__).resolve().parents[2]
ALL_BITS = {"DECLARE", "VOCAB", "TEMPORAL", "RELATIONAL", "OPERATIONS", "STRUCTURE", "LEARNING", "INHERITED"}


def repo_files() -> dict[str, str]:
    return read_scope(REPO)


def line_of(text: str, needle: str) -> int:
    hits = [i + 1 for i, line in enumerate(text.split("\n")) if needle in line]
    assert len(hits) == 1, f"{needle!r} occurs {len(hits)} times"
    return hits[0]


def replace_once(text: str, old: str, new: str) -> str:
    assert text.count(old) == 1, f"{old!r} occurs {text.count(old)} times"
    return text.replace(old, new)


def off_bits(result: CompileResult) -> set[str]:
    return {name for name, on in result.bits.items() if not on}


def errors(result: CompileResult, code: str | None = None) -> list[tuple[str, str, int]]:
    return [(f.code, f.file, f.line) for f in result.errors if code is None or f.code == code]


def compile_(files: dict[str, str], **kw) -> CompileResult:
    return compile_files(files, **kw)


def copy_scope(dst: Path) -> Path:
    """Copy the scope's markdown (root *.md and canon/) into ``dst``."""
    for p in REPO.glob("*.md"):
        shutil.copy(p, dst / p.name)
    shutil.copytree(REPO / "canon", dst / "canon")
    return dst

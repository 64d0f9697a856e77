"""The compiler never crashes on arbitrary documents (a crash would turn /validate into a 500
and `canonic validate` into exit 2); junk documents are never reported as valid."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from governance.compiler import compile_files

from .docs_helpers import repo_files

REPO_FILES = repo_files()
PIECES = st.sampled_from(
    [
        "MUST:",
        "MUST NOT: x (check: limit max_dph<=",
        "| Date | Pattern | Source |",
        "|---|",
        "| a | b |",
        "```",
        "## Constraints",
        "## Axiom",
        "inherits: .",
        "inherits: MAGIC/SERVICES",
        "Score: 300/255",
        "~~",
        "| 2026-13-45 | x | y |",
        "- [ ]",
        "## 2026-02",
        "<!--",
        "-->",
        "---",
        "http://",
        "sk-",
        "{SCOPE}",
        "\t",
        "|",
        "(check:",
        "LEARNING-x.md",
    ]
)
TEXT = st.lists(st.one_of(PIECES, st.text(max_size=40)), max_size=30).map("\n".join)
NAMES = st.sampled_from(
    [
        "CANON.md",
        "VOCAB.md",
        "README.md",
        "VASTAI.md",
        "ROADMAP.md",
        "COVERAGE.md",
        "LEARNING.md",
        "LEARNING-2026.md",
        "canon/MAGIC/CANON.md",
        "canon/MAGIC/SERVICES/CANON.md",
    ]
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(NAMES, TEXT, min_size=1, max_size=6), st.booleans())
def test_never_crashes_and_junk_is_not_valid(edits, with_previous):
    files = {**REPO_FILES, **edits}
    previous = {"LEARNING.md": REPO_FILES["LEARNING.md"]} if with_previous else None
    r = compile_files(files, previous=previous)
    assert 0 <= r.score <= 255
    assert all(f.line >= 1 and f.severity in ("error", "warning", "info") for f in r.findings)
    if r.valid:
        # anything that still validates must keep the bits consistent with zero errors
        assert all(v for k, v in r.bits.items() if k != "OPERATIONS")


@settings(max_examples=40, deadline=None)
@given(st.dictionaries(NAMES, TEXT, min_size=1, max_size=4))
def test_junk_alone_never_validates(files):
    r = compile_files(files)
    assert not r.valid

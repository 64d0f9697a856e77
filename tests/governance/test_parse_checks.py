"""The line grammar and the smaller checks: constraint layouts, auto-mapping, vocabulary
exemptions, spec tables, namespaces, structure, and the report formats."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest

from governance.compiler import compile_files
from governance.report import GITHUB_MAX_PER_SEVERITY, render

from .docs_helpers import REPO, compile_, errors, line_of, off_bits, replace_once, repo_files

CANON_LAYOUTS = {
    "numbered": "## Constraints\n\n1. MUST route through governed gateway (check: route_declared)\n2. MUST NOT hardcode credentials (check: no_literals)\n",
    "bullets": "## Governance\n\n- MUST route through governed gateway (check: route_declared)\n- MUST NOT hardcode credentials (check: no_literals)\n",
    "fenced": "## Constraints\n\n```\nMUST: route through governed gateway (check: route_declared)\nMUST NOT: hardcode credentials (check: no_literals)\n```\n",
}


def scope_with_canon(body: str) -> dict[str, str]:
    files = repo_files()
    head = "# VASTAI\n\nscope: VASTAI\ninherits: MAGIC/SERVICES\n\n## Axiom\n\n**VASTAI provides governed compute.**\n\n"
    files["CANON.md"] = head + body
    return files


@pytest.mark.parametrize("layout", sorted(CANON_LAYOUTS))
def test_three_constraint_layouts(layout):
    files = scope_with_canon(CANON_LAYOUTS[layout])
    r = compile_(files)
    own = [(c.modality, c.kind, c.mapped_by, c.line) for c in r.chain[-1].constraints]
    assert own == [
        ("MUST", "route_declared", "explicit", line_of(files["CANON.md"], "route through")),
        ("MUST NOT", "no_literals", "explicit", line_of(files["CANON.md"], "hardcode credentials")),
    ]
    assert errors(r) == []


def test_prose_under_constraints_is_not_a_constraint():
    files = scope_with_canon(CANON_LAYOUTS["bullets"] + "\nThese rules are enforced at startup.\n")
    assert len(compile_(files).chain[-1].constraints) == 2


def test_run_together_clauses_are_split_with_a_warning():
    files = scope_with_canon(
        "## Constraints\n\nMUST: Route through governed gateway MUST NOT: Bypass governance validation\n"
    )
    r = compile_(files)
    own = r.chain[-1].constraints
    assert [c.modality for c in own] == ["MUST", "MUST NOT"]
    assert [f.severity for f in r.findings if f.code == "RUN_TOGETHER"] == ["warning"]
    # no explicit suffix: one line maps by pattern (reported), the other maps to nothing (manual)
    assert [(c.kind, c.mapped_by) for c in own] == [("route_declared", "pattern"), ("manual", "none")]
    line = line_of(files["CANON.md"], "Route through")
    assert [
        (f.code, f.line)
        for f in r.findings
        if f.file == "CANON.md" and f.code in ("AUTO_MAPPED", "UNMAPPED_CONSTRAINT")
    ] == [("UNMAPPED_CONSTRAINT", line), ("AUTO_MAPPED", line)]
    assert r.bits["OPERATIONS"] is False


def test_shall_folds_into_must_and_may_is_info():
    files = scope_with_canon(
        "## Constraints\n\n- SHALL NOT hardcode endpoints (check: no_literals)\n- MAY cache offers (check: none)\n"
    )
    own = compile_(files).chain[-1].constraints
    assert [(c.modality, c.severity) for c in own] == [("MUST NOT", "error"), ("MAY", "info")]


def test_vocab_exemptions_each_hold():
    files = repo_files()
    extra = (
        "\nMUST and SHOULD NOT are keywords; GET and DELETE are methods; CANON.md and LEARNING-2026.md are files; "
        "`NOT_A_TERM` is code; TOKENS_MAX is a binding.\n"
    )
    files["README.md"] += extra
    assert errors(compile_(files)) == []
    files["README.md"] += "An UNKNOWN_THING appears.\n"
    r = compile_(files)
    assert errors(r, "UNDEFINED_REF") == [
        ("UNDEFINED_REF", "README.md", line_of(files["README.md"], "UNKNOWN_THING"))
    ]
    assert off_bits(r) == {"VOCAB", "OPERATIONS"}


def test_fenced_code_outside_constraints_is_not_scanned_for_terms():
    files = repo_files()
    files["README.md"] += "\n```sh\nSOME_ENV_VAR=1 canonic validate .\n```\n"
    assert errors(compile_(files)) == []


def test_unknown_route_action_and_namespace_mismatch():
    files = repo_files()
    files["VASTAI.md"] = replace_once(
        files["VASTAI.md"],
        "| GET | /v1/models | inference.models |",
        "| GET | /v1/models | inference.everything |",
    )
    files["VASTAI.md"] = replace_once(
        files["VASTAI.md"],
        "magic://hadleylab.org/SERVICES/MAGIC/VASTAI/",
        "magic://hadleylab.org/SERVICES/MAGIC/OTHER/",
    )
    r = compile_(files)
    spec = files["VASTAI.md"]
    assert ("UNKNOWN_ACTION", "VASTAI.md", line_of(spec, "inference.everything")) in errors(r)
    assert ("NAMESPACE_MISMATCH", "VASTAI.md", line_of(spec, "web_surface:")) in errors(r)
    assert off_bits(r) == {"RELATIONAL", "OPERATIONS"}


def test_surface_route_outside_routes_section_is_a_literal():
    files = repo_files()
    files["VASTAI.md"] += "\n## Pages\n\n- web_docs: https://hadleylab.org/\n"
    r = compile_(files)
    assert errors(r, "LITERAL_ENDPOINT") == [
        ("LITERAL_ENDPOINT", "VASTAI.md", line_of(files["VASTAI.md"], "web_docs:"))
    ]


def test_learning_sources_may_cite_urls():
    files = repo_files()
    files["LEARNING.md"] += (
        "| 2026-12-02 | Published limits can be cited. | https://docs.github.com/code-security |\n"
    )
    assert errors(compile_(files)) == []


def test_broken_link_and_nested_learning():
    files = repo_files()
    files["README.md"] += "\nSee [the plan](PLAN.md).\n"
    files["LEARNING/old.md"] = "x"
    r = compile_(files)
    assert ("BROKEN_LINK", "README.md", line_of(files["README.md"], "PLAN.md")) in errors(r)
    assert ("NESTED_LEARNING", "LEARNING/old.md", 1) in errors(r)
    assert off_bits(r) == {"STRUCTURE", "OPERATIONS"}


def test_roadmap_order():
    files = repo_files()
    files["ROADMAP.md"] += "\n## 2026-01\n\n- [ ] late\n"
    r = compile_(files)
    assert errors(r, "ROADMAP_ORDER") == [
        ("ROADMAP_ORDER", "ROADMAP.md", line_of(files["ROADMAP.md"], "## 2026-01"))
    ]
    assert off_bits(r) == {"TEMPORAL", "OPERATIONS"}


def test_self_declared_root_that_is_not_the_root():
    files = repo_files()
    files["CANON.md"] = replace_once(files["CANON.md"], "inherits: MAGIC/SERVICES", "inherits: .")
    r = compile_(files)
    assert errors(r, "CHAIN_NO_ROOT") == [
        ("CHAIN_NO_ROOT", "CANON.md", line_of(files["CANON.md"], "inherits:"))
    ]
    assert compile_files(files, root="VASTAI").bits["INHERITED"] is True


def test_sources_digest_changes_with_any_source_byte():
    files = repo_files()
    a = compile_(files).sources_digest
    files["canon/MAGIC/README.md"] += " "
    assert compile_(files).sources_digest != a


# ---- report formats ---------------------------------------------------------------------------


def broken():
    files = repo_files()
    for i in range(12):
        files["README.md"] += f"\nTERM_{chr(65 + i)}X appears.\n"
    return compile_(files)


def test_github_annotations_are_capped_per_severity():
    out = render(broken(), "github").splitlines()
    errs = [line for line in out if line.startswith("::error file=")]
    assert len(errs) == GITHUB_MAX_PER_SEVERITY
    assert any(line.startswith("::error::") and "more error" in line for line in out)
    # errors sorted by file: the two drift findings in COVERAGE.md, then the first 8 of 12 in README.md
    assert [line.split(",", 1)[0] for line in errs] == ["::error file=COVERAGE.md"] * 2 + [
        "::error file=README.md"
    ] * 8
    assert out[-1].startswith("canonic validate: score ")


def test_junit_has_a_case_per_bit_and_failures_for_off_bits():
    root = ET.fromstring(render(broken(), "junit"))
    suite = root.find("testsuite")
    cases = suite.findall("testcase")
    assert len(cases) == 8
    failed = {c.get("name") for c in cases if c.find("failure") is not None}
    assert failed == {"VOCAB (2)", "OPERATIONS (16)"}
    assert suite.get("failures") == "2"


def test_json_report_fields():
    doc = json.loads(render(compile_(repo_files()), "json", policy_revision="sha256:x"))
    assert {
        "valid",
        "score",
        "tier",
        "bits",
        "policy_revision",
        "sources_digest",
        "findings",
        "counts",
        "constraints",
    } <= set(doc)
    assert doc["policy_revision"] == "sha256:x"
    assert all({"severity", "kind", "code", "file", "line", "message"} <= set(f) for f in doc["findings"])


def test_repo_scope_is_read_from_disk_only_as_markdown():
    from governance.sources import read_scope

    files = read_scope(REPO)
    assert all(p.endswith(".md") for p in files)
    assert "canon/MAGIC/SERVICES/CANON.md" in files and "pyproject.toml" not in files

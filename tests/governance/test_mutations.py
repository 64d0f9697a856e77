"""Mutation tests (issue 2 §5): the repository's valid documents with one violation each give
the exact finding kind, file and line, and exactly the bits that drop."""

from __future__ import annotations

import pytest

from .docs_helpers import ALL_BITS, compile_, errors, line_of, off_bits, replace_once, repo_files


@pytest.fixture()
def files() -> dict[str, str]:
    return repo_files()


def test_untouched_documents_are_clean_and_full(files):
    r = compile_(files)
    assert errors(r) == []
    assert r.score == 255 and r.tier == "FULL" and off_bits(r) == set()
    assert r.claimed_score == 255
    assert [s.name for s in r.chain] == ["MAGIC", "SERVICES", "VASTAI"]
    assert not [f for f in r.findings if f.severity == "warning"]


def test_drop_vocab(files):
    del files["VOCAB.md"]
    r = compile_(files)
    assert ("MISSING_FILE", "VOCAB.md", 1) in errors(r)
    assert off_bits(r) == {"VOCAB", "STRUCTURE", "OPERATIONS"}
    assert r.score == 255 - 2 - 32 - 16


def test_undefined_term(files):
    files["CANON.md"] = replace_once(
        files["CANON.md"],
        "MUST NOT: Bypass governance validation (check: fail_closed)\n",
        "MUST NOT: Bypass governance validation (check: fail_closed)\nMUST: Keep every FROBNICATOR governed (check: fail_closed)\n",
    )
    r = compile_(files)
    assert errors(r, "UNDEFINED_REF") == [
        ("UNDEFINED_REF", "CANON.md", line_of(files["CANON.md"], "FROBNICATOR"))
    ]
    assert off_bits(r) == {"VOCAB", "OPERATIONS"}


def test_stub_and_duplicate_term(files):
    files["VOCAB.md"] += "| VASTAI | TBD |\n| WIDGET | — |\n"
    r = compile_(files)
    assert ("DUPLICATE_TERM", "VOCAB.md", line_of(files["VOCAB.md"], "| VASTAI | TBD |")) in errors(r)
    assert ("STUB_TERM", "VOCAB.md", line_of(files["VOCAB.md"], "| WIDGET |")) in errors(r)
    assert off_bits(r) == {"VOCAB", "OPERATIONS"}


def test_parent_cycle(files):
    path = "canon/MAGIC/CANON.md"
    files[path] = replace_once(files[path], "inherits: .", "inherits: MAGIC/SERVICES")
    r = compile_(files)
    assert errors(r, "CHAIN_CYCLE") == [("CHAIN_CYCLE", path, line_of(files[path], "inherits:"))]
    assert off_bits(r) == {"INHERITED", "OPERATIONS"}


def test_missing_parent(files):
    files["CANON.md"] = replace_once(files["CANON.md"], "inherits: MAGIC/SERVICES", "inherits: MAGIC/NOWHERE")
    r = compile_(files)
    assert errors(r, "CHAIN_BREAK") == [("CHAIN_BREAK", "CANON.md", line_of(files["CANON.md"], "inherits:"))]
    # without the parents their terms (TRIAD, CANON, ...) no longer resolve either
    assert (
        "UNDEFINED_REF",
        "VASTAI.md",
        line_of(files["VASTAI.md"], "VASTAI is a leaf scope under"),
    ) in errors(r)
    assert off_bits(r) == {"INHERITED", "VOCAB", "OPERATIONS"}


def test_child_loosens_parent_cap(files):
    files["CANON.md"] = replace_once(files["CANON.md"], "max_dph<=5)", "max_dph<=50)")
    r = compile_(files)
    assert errors(r, "WEAKENING") == [("WEAKENING", "CANON.md", line_of(files["CANON.md"], "max_dph<=50"))]
    assert off_bits(r) == {"INHERITED", "OPERATIONS"}


def test_child_contradicts_parent_must(files):
    files["CANON.md"] = replace_once(
        files["CANON.md"],
        "MUST: Fail closed on validation failure (check: fail_closed)",
        "MUST NOT: Fail closed on validation failure (check: fail_closed)",
    )
    r = compile_(files)
    line = line_of(files["CANON.md"], "MUST NOT: Fail closed")
    assert errors(r, "WEAKENING") == [("WEAKENING", "CANON.md", line)]
    assert off_bits(r) == {"INHERITED", "OPERATIONS"}


def test_edited_learning_row(files):
    previous = {"LEARNING.md": files["LEARNING.md"]}
    files["LEARNING.md"] = replace_once(files["LEARNING.md"], "32768 does not.", "65536 does not.")
    r = compile_(files, previous=previous)
    assert errors(r, "LEDGER_REWRITE") == [
        ("LEDGER_REWRITE", "LEARNING.md", line_of(files["LEARNING.md"], "65536"))
    ]
    assert off_bits(r) == {"LEARNING", "OPERATIONS"}


def test_appended_learning_row_is_clean(files):
    previous = {"LEARNING.md": files["LEARNING.md"]}
    files["LEARNING.md"] += "| 2026-12-02 | Appending is how the ledger grows. | LEARNING.md:L20 |\n"
    assert errors(compile_(files, previous=previous)) == []


def test_struck_through_row_without_history(files):
    files["LEARNING.md"] = replace_once(
        files["LEARNING.md"], "Reboot is not a reliable", "~~Reboot is not a reliable~~"
    )
    r = compile_(files)
    assert set(errors(r)) - set(errors(r, "COVERAGE_DRIFT")) == {
        ("LEDGER_REWRITE", "LEARNING.md", line_of(files["LEARNING.md"], "~~Reboot"))
    }
    assert off_bits(r) == {"LEARNING", "OPERATIONS"}


def test_wrapped_ledger_row(files):
    files["LEARNING.md"] = replace_once(
        files["LEARNING.md"],
        "one row is one line. | issue 2 |",
        "one row is one line. |\nwrapped source: issue 2 |",
    )
    r = compile_(files)
    assert ("MALFORMED_ROW", "LEARNING.md", line_of(files["LEARNING.md"], "wrapped source")) in errors(r)
    assert off_bits(r) == {"LEARNING", "OPERATIONS"}


def test_credential_in_doc(files):
    files["README.md"] += "\napi_key = sk-live0123456789abcdefghijkl\n"
    r = compile_(files)
    assert errors(r, "LITERAL_SECRET") == [
        ("LITERAL_SECRET", "README.md", line_of(files["README.md"], "api_key"))
    ]
    assert off_bits(r) == {"STRUCTURE", "OPERATIONS"}
    assert all("sk-live" not in f.message for f in r.findings)


def test_hostname_in_binding_note(files):
    files["VASTAI.md"] = replace_once(
        files["VASTAI.md"],
        "URL. Base of the KILOCODE inference server.",
        "URL. Base of the KILOCODE server, vast-deepseek.canonic.org.",
    )
    r = compile_(files)
    assert errors(r, "LITERAL_ENDPOINT") == [
        ("LITERAL_ENDPOINT", "VASTAI.md", line_of(files["VASTAI.md"], "vast-deepseek"))
    ]
    assert off_bits(r) == {"RELATIONAL", "OPERATIONS"}


def test_coverage_claims_255_with_a_failing_bit(files):
    files["ROADMAP.md"] = "# VASTAI roadmap\n\ninherits: .\n"
    r = compile_(files)
    assert ("ROADMAP_EMPTY", "ROADMAP.md", 1) in errors(r)
    assert ("COVERAGE_DRIFT", "COVERAGE.md", line_of(files["COVERAGE.md"], "Score: 255/255")) in errors(r)
    assert off_bits(r) == {"TEMPORAL", "OPERATIONS"}
    assert r.score == 255 - 4 - 16


def test_honest_claim_still_loses_operations_only_for_the_real_gap(files):
    files["ROADMAP.md"] = "# VASTAI roadmap\n\ninherits: .\n"
    files["COVERAGE.md"] = replace_once(files["COVERAGE.md"], "Score: 255/255", "Score: 251/255")
    files["COVERAGE.md"] = replace_once(
        files["COVERAGE.md"], "| When did it happen? | PASS |", "| When did it happen? | FAIL |"
    )
    r = compile_(files)
    assert errors(r, "COVERAGE_DRIFT") == []
    assert off_bits(r) == {"TEMPORAL", "OPERATIONS"}


def test_claim_lower_than_computed_is_drift(files):
    files["COVERAGE.md"] = replace_once(files["COVERAGE.md"], "Score: 255/255", "Score: 127/255")
    r = compile_(files)
    assert errors(r) == [("COVERAGE_DRIFT", "COVERAGE.md", line_of(files["COVERAGE.md"], "Score: 127/255"))]
    assert off_bits(r) == {"OPERATIONS"}


@pytest.mark.parametrize(
    "old,new",
    [
        (
            "MUST: Route through governed gateway (check: route_declared)",
            "MUST: Route through governed gateway (check: route_declared",
        ),
        ("MUST: Route through governed gateway (check: route_declared)", "MUST:"),
        (
            "MUST: Route through governed gateway (check: route_declared)",
            "Must route through governed gateway",
        ),
    ],
)
def test_malformed_constraint_line(files, old, new):
    files["CANON.md"] = replace_once(files["CANON.md"], old, new)
    line = [i + 1 for i, raw in enumerate(files["CANON.md"].split("\n")) if raw == new][0]
    r = compile_(files)
    assert errors(r, "MALFORMED_CONSTRAINT") == [("MALFORMED_CONSTRAINT", "CANON.md", line)]
    assert off_bits(r) == {"DECLARE", "OPERATIONS"}


def test_unknown_check_kind(files):
    files["CANON.md"] = replace_once(
        files["CANON.md"], "governed surfaces (check: telemetry)\n", "governed surfaces (check: telepathy)\n"
    )
    r = compile_(files)
    assert errors(r, "UNKNOWN_CHECK") == [
        ("UNKNOWN_CHECK", "CANON.md", line_of(files["CANON.md"], "telepathy"))
    ]
    assert off_bits(r) == {"DECLARE", "OPERATIONS"}


def test_unmapped_must_is_manual_and_costs_operations(files):
    files["CANON.md"] = replace_once(
        files["CANON.md"],
        "MUST NOT: Bypass governance validation (check: fail_closed)\n",
        "MUST NOT: Bypass governance validation (check: fail_closed)\nMUST: Keep the documents tidy\n",
    )
    r = compile_(files)
    manual = [f for f in r.findings if f.code == "UNMAPPED_CONSTRAINT"]
    assert [(f.severity, f.file, f.line) for f in manual] == [
        ("warning", "CANON.md", line_of(files["CANON.md"], "tidy"))
    ]
    assert off_bits(r) == {"OPERATIONS"}
    assert ("COVERAGE_DRIFT", "COVERAGE.md", line_of(files["COVERAGE.md"], "Score:")) not in errors(r)


def test_missing_required_binding_in_the_spec(files):
    files["VASTAI.md"] = replace_once(
        files["VASTAI.md"],
        "| var | MAX_TOKENS | required | Integer. Token budget used when a request names none. |\n",
        "",
    )
    r = compile_(files)
    line = line_of(files["CANON.md"], "check: env_bindings TOKENS_MIN")
    assert errors(r, "BINDING_MISSING") == [("BINDING_MISSING", "CANON.md", line)]
    assert off_bits(r) == {"RELATIONAL", "OPERATIONS"}


def test_missing_and_mistyped_binding_values(files):
    """Values are the Policy's business: the documents' score does not move, the env findings
    cite the binding lines and the Policy refuses naming the bindings."""
    from gateway.settings import BINDING_DEFAULTS
    from governance.checks_spec import env_values
    from governance.compiler import compile_policy

    env = {k: v for k, v in BINDING_DEFAULTS.items() if k != "LOCAL_MODEL"}
    env["VASTAI_TRIES"] = "three"
    r = compile_(files)
    assert r.valid and r.score == 255
    spec = files["VASTAI.md"]
    found = [(f.code, f.file, f.line) for f in env_values(r.chain, env)]
    assert ("BINDING_MISSING", "VASTAI.md", line_of(spec, "| LOCAL_MODEL |")) in found
    assert ("BINDING_TYPE", "VASTAI.md", line_of(spec, "| VASTAI_TRIES |")) in found
    assert all(f.bit is None for f in env_values(r.chain, env))
    assert set(compile_policy(r, env).missing) == {"LOCAL_MODEL", "VASTAI_TRIES"}
    assert env_values(r.chain, dict(BINDING_DEFAULTS)) == []


def test_env_value_over_an_inherited_cap(files):
    from gateway.settings import BINDING_DEFAULTS
    from governance.checks_spec import env_values

    r = compile_(files)
    found = [(f.code, f.file, f.line) for f in env_values(r.chain, {**BINDING_DEFAULTS, "TOKENS_MAX": "100000"})]
    assert ("LIMIT_CONFIG", "VASTAI.md", line_of(files["VASTAI.md"], "| TOKENS_MAX |")) in found


PARENT_SPEC = """# SERVICES spec

## Runtime bindings

| Type | Name | Required | Meaning |
|------|------|----------|---------|
| var | MAX_TOKENS | required | Integer. Token budget used when a request names none. |
"""


def test_child_makes_inherited_required_binding_optional(files):
    files["canon/MAGIC/SERVICES/SERVICES.md"] = PARENT_SPEC
    assert errors(compile_(files)) == []
    files["VASTAI.md"] = replace_once(
        files["VASTAI.md"], "| var | MAX_TOKENS | required |", "| var | MAX_TOKENS | optional |"
    )
    r = compile_(files)
    assert errors(r, "WEAKENING") == [
        ("WEAKENING", "VASTAI.md", line_of(files["VASTAI.md"], "| MAX_TOKENS |"))
    ]
    assert off_bits(r) == {"INHERITED", "OPERATIONS"}


def test_bits_are_the_eight_named_groups():
    r = compile_(repo_files())
    assert set(r.bits) == ALL_BITS
    assert r.score == sum(
        v for v, on in zip((1, 2, 4, 8, 16, 32, 64, 128), r.bits.values(), strict=True) if on
    )

"""Literal detection and constraint mapping on the repository's own documents (review D3, D4,
D5, D7): each mutation asserts the exact finding and the bits that drop."""

from __future__ import annotations

import re

import pytest

from governance.checks_literals import FILE_EXTENSIONS, host_literal

from .docs_helpers import compile_, errors, line_of, off_bits, replace_once, repo_files

SURFACE = "- web_surface: https://hadleylab.org/SERVICES/MAGIC/VASTAI/"


@pytest.fixture()
def files():
    return repo_files()


def test_untouched_documents_score_255(files):
    r = compile_(files)
    assert r.valid and r.score == 255
    assert not [f for f in r.findings if f.severity == "warning"]


@pytest.mark.parametrize(
    "line",
    [
        "The API is at https://vast-deepseek.canonic.org/v1",
        "- api_base: https://vast-deepseek.canonic.org/v1",
        "- web_api: see vast-deepseek.canonic.org for the server",
    ],
)
def test_only_parsed_surface_routes_are_exempt_in_routes(files, line):
    spec = replace_once(files["VASTAI.md"], SURFACE, f"{SURFACE}\n{line}")
    r = compile_({**files, "VASTAI.md": spec})
    assert errors(r, "LITERAL_ENDPOINT") == [("LITERAL_ENDPOINT", "VASTAI.md", line_of(spec, line))]
    assert off_bits(r) == {"RELATIONAL", "OPERATIONS"}


@pytest.mark.parametrize("host", ["deepseek.example.us", "api.vast.de", "serve.my.app", "x.run.sh-host.io"])
def test_any_alphabetic_tld_is_a_host(files, host):
    spec = replace_once(files["VASTAI.md"], "Base of the KILOCODE inference server.", f"Base at {host}")
    r = compile_({**files, "VASTAI.md": spec})
    assert errors(r, "LITERAL_ENDPOINT") == [("LITERAL_ENDPOINT", "VASTAI.md", line_of(spec, host))]


@pytest.mark.parametrize("ext", sorted(FILE_EXTENSIONS))
def test_file_names_are_not_hosts(ext):
    assert host_literal(f"see notes.{ext} and governance/ir.{ext}") is None


@pytest.mark.parametrize(
    ("text", "what"),
    [("a.b.de", "hostname"), ("10.1.2.3", "IP address"), ("localhost", "hostname"),
     ("README.md", None), ("e.g. this", None), ("Settings.binding_values()", None),
     ("inference.chat", None), ("llama.cpp", None), ("v1.2", None), ("example.x", None)],
)
def test_host_literal_table(text, what):
    assert host_literal(text) == what


def test_must_with_check_none_is_manual_and_keeps_operations_off(files):
    canon = replace_once(
        files["CANON.md"], "MUST: Fail closed on validation failure (check: fail_closed)",
        "MUST: Fail closed on validation failure (check: none)",
    )
    r = compile_({**files, "CANON.md": canon})
    warns = [(f.code, f.file, f.line) for f in r.findings if f.severity == "warning"]
    assert warns == [("UNMAPPED_CONSTRAINT", "CANON.md", line_of(canon, "validation failure (check: none)"))]
    assert r.valid and off_bits(r) == {"OPERATIONS"} and r.counts()["manual"] == 1


def test_every_must_check_none_drops_operations(files):
    for p in ("CANON.md", "canon/MAGIC/CANON.md", "canon/MAGIC/SERVICES/CANON.md"):
        files[p] = re.sub(r"\(check: [^)]*\)", "(check: none)", files[p])
    r = compile_(files)
    assert "OPERATIONS" in off_bits(r) and r.score < 255
    musts = sum(
        1 for s in r.chain for c in s.constraints if c.modality in ("MUST", "MUST NOT")
    )
    assert r.counts()["manual"] == musts


def test_should_with_check_none_stays_info(files):
    r = compile_(files)
    human = [f for f in r.findings if f.code == "HUMAN_ONLY"]
    assert human and all(f.severity == "info" for f in human)
    assert all(
        c.kind != "none" for s in r.chain for c in s.constraints if c.modality in ("MUST", "MUST NOT")
    )


def test_inherited_needs_canon(files):
    del files["CANON.md"]
    r = compile_(files)
    assert "INHERITED" in off_bits(r)
    assert "INHERITED" in off_bits(compile_({"README.md": "# hi"}))
    assert compile_({"README.md": "# hi"}).score == 0


@pytest.mark.parametrize("weaker", ["SHOULD", "MAY"])
def test_child_restating_an_inherited_must_more_weakly_warns(files, weaker):
    canon = replace_once(
        files["CANON.md"], "MUST: Fail closed on validation failure (check: fail_closed)",
        f"{weaker}: Fail closed on validation failure (check: fail_closed)",
    )
    r = compile_({**files, "CANON.md": canon})
    warns = [(f.code, f.file, f.line, f.constraint) for f in r.findings if f.severity == "warning"]
    parent = f"canon/MAGIC/CANON.md:L{line_of(files['canon/MAGIC/CANON.md'], 'MUST: Fail closed on validation')}"
    assert warns == [("WEAKENED_MODALITY", "CANON.md", line_of(canon, "Fail closed on validation"), parent)]

"""``canonic validate`` as a subprocess: exit codes, text output, SARIF shape, --output,
--min-score, and --base-ref against a temporary git repository."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from .docs_helpers import REPO, copy_scope, line_of, replace_once

CANONIC = [sys.executable, "-c", "from gateway.cli import main; main()"]


def run(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    return subprocess.run(
        [*CANONIC, "validate", *args], cwd=cwd, capture_output=True, text=True, timeout=60, env=env
    )


def git(cwd: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false", *args],
        cwd=cwd,
        check=True,
        capture_output=True,
        timeout=30,
    )


def test_repo_validates_clean_with_full_score():
    p = run(".")
    assert p.returncode == 0, p.stdout + p.stderr
    assert "score: 255/255" in p.stdout
    assert "bits: DECLARE=on(1)" in p.stdout and "INHERITED=on(128)" in p.stdout


def test_findings_lines_and_exit_1(tmp_path):
    copy_scope(tmp_path)
    canon = (tmp_path / "CANON.md").read_text()
    canon = replace_once(canon, "max_dph<=5)", "max_dph<=50)")
    (tmp_path / "CANON.md").write_text(canon)
    p = run(str(tmp_path))
    assert p.returncode == 1
    line = line_of(canon, "max_dph<=50")
    assert f"CANON.md:{line} error inheritance WEAKENING:" in p.stdout
    assert "INHERITED=off(128)" in p.stdout and "score: 111/255" in p.stdout


def test_could_not_run_is_exit_2(tmp_path):
    assert run(str(tmp_path / "missing")).returncode == 2
    assert run(str(tmp_path)).returncode == 2  # no CANON.md
    assert run(".", "--format", "yaml").returncode == 2
    assert run(".", "--base-ref", "no-such-ref").returncode == 2


def test_min_score():
    assert run(".", "--min-score", "255").returncode == 0


def test_min_score_fails_below(tmp_path):
    # an unmapped MUST is a warning (exit 0) that keeps OPERATIONS off: 239 < 255
    copy_scope(tmp_path)
    canon = (tmp_path / "CANON.md").read_text()
    (tmp_path / "CANON.md").write_text(
        replace_once(canon, "## Capabilities", "- MUST: Keep the documents tidy\n\n## Capabilities")
    )
    p = run(str(tmp_path))
    assert p.returncode == 0 and "score: 239/255" in p.stdout and "UNMAPPED_CONSTRAINT" in p.stdout
    assert run(str(tmp_path), "--min-score", "255").returncode == 1
    assert run(str(tmp_path), "--min-score", "239").returncode == 0
    assert run(str(tmp_path), "--min-score", "256").returncode == 2


def test_sarif_shape_and_output_file(tmp_path):
    copy_scope(tmp_path)
    readme = (tmp_path / "README.md").read_text() + "\nSee vast-deepseek.canonic.org for details.\n"
    (tmp_path / "README.md").write_text(readme)
    out = tmp_path / "gov.sarif"
    p = run(str(tmp_path), "--format", "sarif", "--output", str(out))
    assert p.returncode == 1 and p.stdout == ""
    doc = json.loads(out.read_text())
    assert doc["version"] == "2.1.0" and "sarif-2.1.0" in doc["$schema"]
    (run_,) = doc["runs"]
    rule_ids = {r["id"] for r in run_["tool"]["driver"]["rules"]}
    assert run_["results"], "an invalid scope has results"
    for res in run_["results"]:
        assert res["ruleId"] in rule_ids
        assert res["level"] in ("error", "warning", "note")
        loc = res["locations"][0]["physicalLocation"]
        assert loc["artifactLocation"]["uri"] and loc["region"]["startLine"] >= 1
    hit = [r for r in run_["results"] if r["ruleId"] == "LITERAL_ENDPOINT"]
    assert [r["locations"][0]["physicalLocation"]["region"]["startLine"] for r in hit] == [
        line_of(readme, "vast-deepseek")
    ]


@pytest.mark.parametrize("fmt", ["json", "github", "junit"])
def test_other_formats(fmt):
    p = run(".", "--format", fmt)
    assert p.returncode == 0
    if fmt == "json":
        doc = json.loads(p.stdout)
        assert doc["valid"] is True and doc["score"] == 255 and doc["bits"]["INHERITED"] is True
    elif fmt == "github":
        assert p.stdout.strip().splitlines()[-1].startswith("canonic validate: score 255/255")
    else:
        assert '<testsuite name="VASTAI" tests="8" failures="0"' in p.stdout


@pytest.fixture()
def repo(tmp_path: Path) -> Path:
    copy_scope(tmp_path)
    git(tmp_path, "init", "-q", "-b", "main")
    git(tmp_path, "add", "-A")
    git(tmp_path, "commit", "-q", "-m", "base")
    return tmp_path


def test_base_ref_edited_row_is_ledger_rewrite(repo):
    ledger = (repo / "LEARNING.md").read_text()
    edited = replace_once(ledger, "32768 does not.", "65536 does not.")
    (repo / "LEARNING.md").write_text(edited)
    p = run(".", "--base-ref", "main", cwd=repo)
    assert p.returncode == 1
    assert f"LEARNING.md:{line_of(edited, '65536')} error append_only LEDGER_REWRITE:" in p.stdout
    # without the base ref the same edit is invisible: only the shape is checked, and the report says so
    p = run(".", cwd=repo)
    assert p.returncode == 0 and "NO_BASELINE" in p.stdout


def test_base_ref_append_is_clean(repo):
    with open(repo / "LEARNING.md", "a") as fh:
        fh.write("| 2026-12-02 | Appending is how the ledger grows. | LEARNING.md:L20 |\n")
    p = run(".", "--base-ref", "main", cwd=repo)
    assert p.returncode == 0, p.stdout
    assert "NO_BASELINE" not in p.stdout


def test_base_ref_rotation_legal_and_deleted_epoch(repo):
    old = (repo / "LEARNING.md").read_text()
    (repo / "LEARNING-2026.md").write_text(old)
    (repo / "LEARNING.md").write_text(
        "# VASTAI learning\n\n| Date | Pattern | Source |\n|---|---|---|\n"
        "| 2026-12-05 | EVOLUTION: epoch 2026 archived. | LEARNING-2026.md |\n"
    )
    assert run(".", "--base-ref", "main", cwd=repo).returncode == 0
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "rotate")
    (repo / "LEARNING-2026.md").unlink()
    p = run(".", "--base-ref", "main", cwd=repo)
    assert p.returncode == 1 and "LEARNING-2026.md:1 error append_only EPOCH_DELETED:" in p.stdout

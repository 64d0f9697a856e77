"""``canonic validate [PATH]``: compile a scope's governance documents and report.

Exit codes: 0 no error finding (warnings allowed), 1 error findings or score below
``--min-score``, 2 the command could not run (bad arguments, unreadable input, git failure).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import typer

from governance.compiler import compile_files
from governance.report import FORMATS, render
from governance.sources import SourceError, read_scope

_ARCHIVE = re.compile(r"LEARNING-[A-Za-z0-9_.-]+\.md$")
GIT_TIMEOUT_S = 20


class GitError(Exception):
    pass


def _git(path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            ["git", "-C", str(path), *args], capture_output=True, text=True, timeout=GIT_TIMEOUT_S
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise GitError(f"git could not run: {exc.__class__.__name__}") from None


def previous_ledgers(path: Path, ref: str) -> dict[str, str]:
    """LEARNING.md and LEARNING-<epoch>.md as they were at ``ref`` (paths relative to ``path``)."""
    if ref.startswith("-"):
        raise GitError(f"invalid ref {ref!r}")
    check = _git(path, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")
    if check.returncode != 0:
        raise GitError(f"--base-ref {ref!r} is not a commit in the repository at {path}")
    listing = _git(path, "ls-tree", "--name-only", ref, "./")
    if listing.returncode != 0:
        raise GitError(f"git ls-tree failed: {listing.stderr.strip()[:200]}")
    out: dict[str, str] = {}
    for name in listing.stdout.splitlines():
        name = name.strip().rsplit("/", 1)[-1]
        if name == "LEARNING.md" or _ARCHIVE.fullmatch(name):
            shown = _git(path, "show", f"{ref}:./{name}")
            if shown.returncode != 0:
                raise GitError(f"git show {ref}:{name} failed")
            out[name] = shown.stdout
    return out


def register(app: typer.Typer) -> None:
    @app.command()
    def validate(
        path: Path = typer.Argument(Path("."), help="The scope directory (holds CANON.md)."),
        fmt: str = typer.Option("text", "--format", help=f"Report format: {'|'.join(FORMATS)}."),
        base_ref: str = typer.Option(
            None, "--base-ref", help="Git ref to check LEARNING's append-only history against."
        ),
        min_score: int = typer.Option(
            None, "--min-score", min=0, max=255, help="Also fail when the score is below N."
        ),
        output: Path = typer.Option(None, "--output", help="Write the report to FILE instead of stdout."),
        root: str = typer.Option("MAGIC", "--root", help="The configured root scope of the chain."),
        canon_dir: str = typer.Option("canon", "--canon-dir", help="Where the vendored parent scopes live."),
    ) -> None:
        """Validate a scope's governance documents: findings, the 8 coverage bits, the score."""
        if fmt not in FORMATS:
            typer.echo(f"error: unknown --format {fmt!r}; choose one of {', '.join(FORMATS)}", err=True)
            raise typer.Exit(2)
        try:
            files = read_scope(path, canon_dir)
            previous = previous_ledgers(path, base_ref) if base_ref else None
        except (SourceError, GitError) as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None
        if "CANON.md" not in files:
            typer.echo(f"error: {path} holds no CANON.md; not a scope directory", err=True)
            raise typer.Exit(2)
        try:
            result = compile_files(
                files, previous=previous, root=root, canon_dir=canon_dir, fallback_name=path.resolve().name
            )
            report = render(result, fmt)
        except Exception as exc:  # a crash of the compiler is "could not run", never "clean"
            typer.echo(f"error: the compiler failed: {exc.__class__.__name__}: {exc}", err=True)
            raise typer.Exit(2) from None
        if output is not None:
            try:
                output.write_text(report, encoding="utf-8")
            except OSError as exc:
                typer.echo(f"error: cannot write {output}: {exc.strerror}", err=True)
                raise typer.Exit(2) from None
            c = result.counts()
            print(
                f"score: {result.score}/255, {c['error']} error(s), {c['warning']} warning(s); report in {output}",
                file=sys.stderr,
            )
        else:
            sys.stdout.write(report)
        if not result.valid or (min_score is not None and result.score < min_score):
            raise typer.Exit(1)

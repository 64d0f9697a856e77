"""``canonic ledger verify|tail``: check the decision ledger's hash chain; show its last records.

Exit codes: 0 chain valid, 1 chain broken (FILE:LINE and what is wrong), 2 could not run.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import typer

from gateway.ledger_verify import canonical_json, read_tail, verify_chain
from gateway.settings import Settings

_HEX64 = re.compile(r"[0-9a-f]{64}")
_COLUMNS = ("seq", "time", "decision_id", "principal", "action", "model", "allow", "outcome", "latency_ms", "rule_ids")


def _default_path(path: Path | None) -> Path:
    """The given path, or the configured one. A bad setting: one line naming it, exit 2 (the
    value itself is not echoed: it may be a secret)."""
    if path is not None:
        return path
    from pydantic import ValidationError

    try:
        settings = Settings()
    except ValidationError as exc:
        err = exc.errors()[0]
        name = ".".join(str(p) for p in err.get("loc", ())) or "?"
        typer.echo(f"error: invalid setting {name} (env CANONIC_{name.upper()}): {err.get('msg')}", err=True)
        raise typer.Exit(2) from None
    return settings.resolve(settings.ledger_path)


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, list):
        return ",".join(str(v) for v in value) or "-"
    return str(value)


def register(app: typer.Typer) -> None:
    ledger = typer.Typer(help="The hash-chained decision ledger.", no_args_is_help=True)

    @ledger.command("verify")
    def verify(
        path: Path = typer.Argument(None, help="The active ledger file (default: the configured ledger path)."),
        as_json: bool = typer.Option(False, "--json", help="Print the result as one JSON object."),
        expect_seq: int = typer.Option(None, "--expect-seq", min=1,
                                       help="The chain must reach this seq (from a record kept elsewhere)."),
        expect_hash: str = typer.Option(None, "--expect-hash",
                                        help="The hash of the record at --expect-seq (or of the last record)."),
    ) -> None:
        """Check the chain across rotated files and up to its anchor; report the first broken,
        truncated or missing record."""
        if expect_hash is not None and not _HEX64.fullmatch(expect_hash):
            typer.echo("error: --expect-hash must be 64 lowercase hex digits (a record's hash)", err=True)
            raise typer.Exit(2)
        target = _default_path(path)
        try:
            result = verify_chain(target, expect_seq=expect_seq, expect_hash=expect_hash)
        except OSError as exc:
            typer.echo(f"error: cannot read ledger {target}: {exc.strerror or exc}", err=True)
            raise typer.Exit(2) from None
        if as_json:
            typer.echo(
                json.dumps(
                    {
                        "ok": result.ok,
                        "records": result.records,
                        "files": [str(f) for f in result.files],
                        "file": str(result.file) if result.file else None,
                        "line": result.line,
                        "problem": result.problem,
                        "last_seq": result.last_seq,
                        "last_hash": result.last_hash,
                    }
                )
            )
        elif result.ok:
            typer.echo(result.describe())
        else:
            typer.echo(result.describe())
            typer.echo(f"chain broken after {result.records} valid record(s)", err=True)
        raise typer.Exit(0 if result.ok else 1)

    @ledger.command("tail")
    def tail(
        path: Path = typer.Argument(None, help="The active ledger file (default: the configured ledger path)."),
        n: int = typer.Option(20, "-n", "--lines", min=0, max=100_000, help="How many records."),
        as_json: bool = typer.Option(False, "--json", help="Print JSON lines instead of a table."),
    ) -> None:
        """Show the last N records (oldest first)."""
        target = _default_path(path)
        try:
            records = read_tail(target, n)
        except OSError as exc:
            typer.echo(f"error: cannot read ledger {target}: {exc.strerror or exc}", err=True)
            raise typer.Exit(2) from None
        if as_json:
            for rec in records:
                typer.echo(canonical_json(rec))
            return
        from rich.console import Console
        from rich.table import Table
        from rich.text import Text

        table = Table(show_edge=False, pad_edge=False)
        for col in _COLUMNS:
            table.add_column(col, overflow="fold")
        for rec in records:
            table.add_row(*(Text(_cell(rec.get(col))) for col in _COLUMNS))
        Console(width=200, soft_wrap=False).print(table)

    app.add_typer(ledger, name="ledger")

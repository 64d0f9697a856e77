"""The ``canonic`` command line: thin Typer commands over the gateway's modules.

Exit codes: 0 success (warnings allowed), 1 findings or a refused operation, 2 could not run.
"""

from __future__ import annotations

import typer

from gateway.cli import compute as _compute
from gateway.cli import ledger as _ledger
from gateway.cli import serve as _serve
from gateway.cli import token as _token
from gateway.cli import validate as _validate


def build() -> typer.Typer:
    app = typer.Typer(
        name="canonic",
        help="canonic-gateway: a governed gateway for LLM inference and GPU compute.",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
    )
    _serve.register(app)
    _token.register(app)
    _validate.register(app)
    _ledger.register(app)
    _compute.register(app)
    return app


def main() -> None:
    build()()

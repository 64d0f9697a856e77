"""``canonic token``: mint a bearer token with the configured shared secret."""

from __future__ import annotations

import re

import typer

from gateway.auth import mint_token
from gateway.settings import Settings

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_ttl(text: str) -> int:
    m = re.fullmatch(r"\s*(\d+)\s*([smhd]?)\s*", text)
    if not m:
        raise ValueError(f"bad --ttl {text!r}: use a number with s, m, h or d (e.g. 90s, 15m, 1h, 7d)")
    return int(m.group(1)) * _UNITS[m.group(2) or "s"]


def register(app: typer.Typer) -> None:
    @app.command()
    def token(
        sub: str = typer.Option(..., "--sub", help="The token's subject (who it is for)."),
        scope: str = typer.Option(
            "inference", "--scope", help="Space-separated scopes: inference compute:read compute:write governance:read"
        ),
        ttl: str = typer.Option("1h", "--ttl", help="Lifetime, e.g. 90s, 15m, 1h, 7d."),
    ) -> None:
        """Mint an HS256 token signed with GATEWAY_JWT_SECRET; prints it on stdout."""
        settings = Settings()
        try:
            ttl_s = parse_ttl(ttl)
            typer.echo(mint_token(settings, sub, scope.split(), ttl_s))
        except ValueError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None

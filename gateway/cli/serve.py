"""``canonic serve``: start uvicorn with ``gateway.app:create_app(settings)``."""

from __future__ import annotations

import ipaddress
import secrets
import sys
from pathlib import Path

import typer

from gateway.auth import SCOPES, Verifier, mint_token
from gateway.settings import Settings
from gateway.telemetry_config import TelemetryConfigError, check_config


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def register(app: typer.Typer) -> None:
    @app.command()
    def serve(
        host: str = typer.Option("127.0.0.1", help="Address to bind."),
        port: int = typer.Option(8080, help="Port to bind."),
        scope: Path = typer.Option(Path("."), "--scope", help="The governed scope's directory."),
        log_level: str = typer.Option("info", help="uvicorn log level."),
        embedded: bool = typer.Option(
            True, "--embedded-local/--no-embedded-local",
            help="Start the local llama.cpp model when no remote provider is bound.",
        ),
    ) -> None:
        """Start the gateway."""
        import uvicorn

        from gateway.app import create_app

        settings = Settings(host=host, port=port, scope_dir=scope, embedded_local=embedded)
        try:
            check_config(settings)
        except TelemetryConfigError as exc:
            typer.echo(f"refusing to start: {exc}", err=True)
            raise typer.Exit(2) from None
        if not settings.jwt_secret and not settings.jwt_public_key:
            if not _is_loopback(host):
                typer.echo(
                    "refusing to start: no GATEWAY_JWT_SECRET or GATEWAY_JWT_PUBLIC_KEY is configured and "
                    f"--host {host} is not loopback. Set a key, or bind to 127.0.0.1.",
                    err=True,
                )
                raise typer.Exit(2)
            settings = settings.model_copy(update={"jwt_secret": secrets.token_urlsafe(32)})
            token = mint_token(settings, "admin", SCOPES, 12 * 3600)
            print(
                "No JWT key configured: generated an ephemeral secret for this loopback-only run.\n"
                "Admin token (valid 12h, all scopes):\n"
                f"  export CANONIC_TOKEN={token}",
                file=sys.stderr,
                flush=True,
            )
        try:
            verifier = Verifier(settings)
        except ValueError as exc:
            typer.echo(f"refusing to start: {exc}", err=True)
            raise typer.Exit(2) from None
        if not verifier.configured:
            typer.echo(
                f"refusing to start: JWT algorithms {verifier.algorithms} (CANONIC_JWT_ALGORITHMS) need "
                + ("GATEWAY_JWT_SECRET" if verifier.algorithms[0].startswith("HS") else "GATEWAY_JWT_PUBLIC_KEY")
                + ", which is not set",
                err=True,
            )
            raise typer.Exit(2)
        uvicorn.run(create_app(settings), host=host, port=port, log_level=log_level)

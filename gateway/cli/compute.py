"""``canonic compute spinup|teardown|teardown-all|list|pull|ssh-info``: the seed's six verbs.

They drive the providers directly (no running gateway needed) through the same governed path as
the REST routes: the policy compiled from the scope directory decides, the decision is recorded in
the ledger at ``settings.ledger_path``, and a spinup is health-gated. ``--json`` prints exactly one
JSON document on stdout (an ``{"error": ...}`` body when the verb fails); progress goes to
stderr. Exit 0 ok; 1 refused by policy or the provider, or the operation failed; 2 could not
run (bad arguments such as a negative budget or an unknown provider, invalid settings, a missing
or unreadable --scope, the provider or the ledger unavailable, the ledger held by a gateway).
"""

from __future__ import annotations

import asyncio
import getpass
import json
import logging
import os
import re
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import typer

from gateway.errors import GatewayError

PROVIDER = typer.Option("local", "--provider", help="Compute provider (local; vast and basilica later).")
SCOPE = typer.Option(None, "--scope", help="The governed scope's directory (default: CANONIC_SCOPE_DIR or .).")
JSON = typer.Option(False, "--json", help="Print exactly one JSON document on stdout.")
YES = typer.Option(False, "--yes", help="Do not ask for confirmation.")
INSTANCE = typer.Option(..., "--instance", help="The instance id.")


def _principal() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except Exception:  # no passwd entry (containers)
        return "cli:unknown"


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _emit(as_json: bool, document: Any, human: Callable[[], None]) -> None:
    if as_json:
        sys.stdout.write(json.dumps(document, sort_keys=False) + "\n")
        sys.stdout.flush()
    else:
        human()


def _fail(as_json: bool, err: GatewayError) -> None:
    from gateway.compute_errors import exit_code

    if as_json:
        sys.stdout.write(json.dumps(err.body()) + "\n")
    print(f"error: {err.message}", file=sys.stderr, flush=True)
    raise typer.Exit(exit_code(err))


def _run(scope: Path | None, as_json: bool, action: Callable[[Any], Awaitable[Any]]) -> Any:
    """Build Settings, governance, ledger and the ComputeService; run ``action(service)``."""
    from pydantic import ValidationError

    from gateway.settings import Settings

    if scope is not None and not (scope.is_dir() and os.access(scope, os.R_OK | os.X_OK)):
        what = "does not exist" if not scope.exists() else "is not a readable directory"
        _fail(as_json, GatewayError(f"--scope {scope} {what}", status=400, code="bad_scope", param="scope"))
    try:
        settings = Settings() if scope is None else Settings(scope_dir=scope)
    except ValidationError as exc:
        _fail(as_json, GatewayError(f"invalid settings: {exc.errors()[0].get('msg')}", status=400, code="bad_settings"))
        raise typer.Exit(2) from None

    async def main() -> Any:
        from gateway.compute import ComputeService
        from gateway.governance_state import load_governance
        from gateway.ledger import Ledger
        from gateway.upstreams import UpstreamRegistry

        governance = load_governance(settings)
        ledger = Ledger(settings)
        ledger_log = logging.getLogger("canonic.ledger")
        quiet, ledger_log.disabled = ledger_log.disabled, True  # a held ledger is said once, below
        try:
            await ledger.start()
        finally:
            ledger_log.disabled = quiet
        held = _held_by(ledger)
        if held is not None:
            await ledger.stop()
            raise GatewayError(f"the ledger at {settings.ledger_path} is held by a running gateway ({held}); "
                               "use its REST API /v1/compute/... or stop it", status=503, code="ledger_locked")
        try:
            service = ComputeService(settings, governance.policy, UpstreamRegistry(governance.policy), ledger,
                                     None, owns_instances=False)
            return await action(service)
        finally:
            await ledger.stop()

    try:
        return asyncio.run(main())
    except GatewayError as err:
        _fail(as_json, err)
    except OSError as exc:
        _fail(as_json, GatewayError(f"could not run: {exc}", status=503, code="ledger_unavailable"))


def _held_by(ledger: Any) -> str | None:
    """'pid N' when another process holds the ledger's lock (a running gateway), else None."""
    if ledger.available:
        return None
    detail = str(ledger.readiness().get("detail", ""))
    if "locked by another process" not in detail:
        return None
    pid = re.search(r"pid\s*[=:]?\s*(\d+)", detail)
    return f"pid {pid.group(1)}" if pid else "pid unknown"


def _confirm(yes: bool, what: str) -> None:
    if yes:
        return
    if not sys.stdin.isatty():
        print(f"refusing to {what} without --yes (no terminal to confirm on)", file=sys.stderr)
        raise typer.Exit(1)
    if not typer.confirm(f"{what}?", default=False, err=True):
        print("aborted", file=sys.stderr)
        raise typer.Exit(1)


def _print_instance(doc: dict[str, Any]) -> None:
    for key, value in doc.items():
        print(f"{key}: {'-' if value is None else value}")


def register(app: typer.Typer) -> None:
    compute = typer.Typer(help="Governed GPU compute: the provider contract's six verbs.", no_args_is_help=True)
    app.add_typer(compute, name="compute")

    @compute.command()
    def spinup(
        gpu: str = typer.Option(..., "--gpu", help="GPU type (cpu for the local provider)."),
        disk: float = typer.Option(..., "--disk", help="Disk in GB."),
        template: str = typer.Option(..., "--template", help="Template, image or model (gemma-3-270m)."),
        budget: float = typer.Option(None, "--budget", help="USD/h cap; tightens the policy's cap."),
        yes: bool = YES,
        as_json: bool = JSON,
        provider: str = PROVIDER,
        scope: Path = SCOPE,
    ) -> None:
        """Create and start an instance (a repeat with the same gpu/disk/template returns it)."""
        instance = _run(scope, as_json, lambda s: s.spinup(principal=_principal(), provider=provider, gpu=gpu,
                                                         disk_gb=disk, template=template, budget=budget,
                                                         progress=_progress))
        doc = instance.to_json()
        _emit(as_json, doc, lambda: _print_instance(doc))

    @compute.command()
    def teardown(instance: str = INSTANCE, yes: bool = YES, as_json: bool = JSON, provider: str = PROVIDER,
                 scope: Path = SCOPE) -> None:
        """Destroy one instance (succeeds and does nothing when it is already terminated)."""
        _confirm(yes, f"destroy instance {instance}")
        doc = _run(scope, as_json, lambda s: s.teardown(principal=_principal(), instance_id=instance,
                                                       provider=provider, progress=_progress))
        _emit(as_json, doc, lambda: print(_teardown_line(doc)))
        if doc.get("warning"):
            print(doc["warning"], file=sys.stderr)

    @compute.command("teardown-all")
    def teardown_all(yes: bool = YES, as_json: bool = JSON, provider: str = PROVIDER, scope: Path = SCOPE) -> None:
        """Destroy every instance of the provider."""
        _confirm(yes, f"destroy ALL {provider} instances")
        docs = _run(scope, as_json, lambda s: s.teardown_all(principal=_principal(), provider=provider,
                                                            progress=_progress))
        _emit(as_json, docs, lambda: [print(_teardown_line(d)) for d in docs] or print("no instances"))

    @compute.command("list")
    def list_(as_json: bool = JSON, provider: str = PROVIDER, scope: Path = SCOPE) -> None:
        """Active instances ([] when there are none)."""
        found = _run(scope, as_json, lambda s: s.list(principal=_principal(), provider=provider))
        docs = [i.to_json() for i in found]
        _emit(as_json, docs, lambda: [print(_list_line(d)) for d in docs] or print("no instances"))

    @compute.command()
    def pull(instance: str = INSTANCE, remote: str = typer.Option(..., "--remote", help="Path on the instance."),
             local: Path = typer.Option(..., "--local", help="Where to write it here."),
             as_json: bool = JSON, provider: str = PROVIDER, scope: Path = SCOPE) -> None:
        """Download a file or directory from an instance."""
        _run(scope, as_json, lambda s: s.pull(principal=_principal(), instance_id=instance, remote=remote,
                                             local=str(local), provider=provider))
        doc = {"instance_id": instance, "remote": remote, "local": str(local)}
        _emit(as_json, doc, lambda: print(f"pulled {remote} from {instance} to {local}"))

    @compute.command("ssh-info")
    def ssh_info(instance: str = INSTANCE, as_json: bool = JSON, provider: str = PROVIDER,
                 scope: Path = SCOPE) -> None:
        """SSH host, port, user and key of an instance."""
        doc = _run(scope, as_json, lambda s: s.ssh_info(principal=_principal(), instance_id=instance,
                                                       provider=provider))
        _emit(as_json, doc, lambda: print(f"ssh -p {doc['port']} {doc['user']}@{doc['host']}"))


def _teardown_line(doc: dict[str, Any]) -> str:
    if doc.get("already_terminated"):
        return f"{doc['instance_id']}: already terminated"
    confirmed = "billing confirmed stopped" if doc.get("billing_confirmed") else "billing NOT confirmed stopped"
    return f"{doc['instance_id']}: {doc['status']} ({confirmed})"


def _list_line(doc: dict[str, Any]) -> str:
    return (f"{doc['instance_id']}  {doc['provider']}  {doc['gpu']}  {doc['status']}  "
            f"{doc['cost_per_hour']:g} $/h  since {doc['started_at']}")

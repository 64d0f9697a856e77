"""``canonic compute ...`` as a subprocess on the real local provider: --json shape, exit codes,
refusals without --yes, and a CLI killed between the server's start and the end of the gate."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from providers.contract import INSTANCE_KEYS
from tests.compute.conftest import (
    CANONIC,
    cli_env,
    ledger_records,
    needs_local,
    run_cli,
    servers_under,
    wait_for,
)

pytestmark = [needs_local, pytest.mark.timeout(240)]

SPINUP = ("spinup", "--provider", "local", "--gpu", "cpu", "--disk", "1", "--template", "gemma-3-270m")


def one_json(stdout: str):
    """stdout holds exactly one JSON document and nothing else."""
    return json.loads(stdout)


def test_lifecycle_json_and_exit_codes(root):
    assert one_json(run_cli(root, "list", "--json").stdout) == []
    up = run_cli(root, *SPINUP, "--json")
    assert up.returncode == 0, up.stderr
    doc = one_json(up.stdout)
    assert tuple(doc) == INSTANCE_KEYS and doc["status"] == "RUNNING" and isinstance(doc["cost_per_hour"], float)
    again = run_cli(root, *SPINUP, "--json")
    assert again.returncode == 0 and one_json(again.stdout)["instance_id"] == doc["instance_id"]
    listed = one_json(run_cli(root, "list", "--json").stdout)
    assert [i["instance_id"] for i in listed] == [doc["instance_id"]]
    assert len(servers_under(root)) == 1

    (root / "instances" / doc["instance_id"] / "result.txt").write_text("42\n")
    pulled = run_cli(root, "pull", "--instance", doc["instance_id"], "--remote", "result.txt",
                     "--local", str(root / "out" / "result.txt"), "--json")
    assert pulled.returncode == 0, pulled.stderr
    assert (root / "out" / "result.txt").read_text() == "42\n"

    ssh = run_cli(root, "ssh-info", "--instance", doc["instance_id"], "--json")
    assert ssh.returncode == 1 and "no SSH; use pull" in one_json(ssh.stdout)["error"]["message"]

    refused = run_cli(root, "teardown", "--instance", doc["instance_id"])  # no --yes, no TTY
    assert refused.returncode == 1 and "without --yes" in refused.stderr and refused.stdout == ""
    assert len(servers_under(root)) == 1
    assert run_cli(root, "teardown-all").returncode == 1

    down = run_cli(root, "teardown", "--instance", doc["instance_id"], "--yes", "--json")
    assert down.returncode == 0, down.stderr
    result = one_json(down.stdout)
    assert result["status"] == "TERMINATED" and result["billing_confirmed"] is True
    assert servers_under(root) == []
    twice = run_cli(root, "teardown", "--instance", doc["instance_id"], "--yes", "--json")
    assert twice.returncode == 0 and one_json(twice.stdout)["already_terminated"] is True
    assert one_json(run_cli(root, "list", "--json").stdout) == []

    actions = [(r["action"], r["allow"]) for r in ledger_records(root / "ledger" / "decisions.jsonl")]
    assert ("compute.provision", True) in actions and ("compute.teardown", True) in actions


def test_refusals_and_could_not_run(root):
    denied = run_cli(root, "spinup", "--gpu", "cpu", "--disk", "1", "--template", "llama-70b", "--json")
    assert denied.returncode == 1
    error = one_json(denied.stdout)["error"]
    assert error["code"] == "template_not_allowed" and ".md:L" in error["message"]
    assert run_cli(root, "spinup", "--gpu", "cpu").returncode == 2  # missing flags: could not run
    unknown = run_cli(root, "teardown", "--instance", "local-nope", "--yes", "--json")
    assert unknown.returncode == 1 and one_json(unknown.stdout)["error"]["code"] == "instance_not_found"
    missing = run_cli(root, *SPINUP, "--json", env={"LOCAL_MODEL_PATH": str(root / "absent.gguf")})
    assert missing.returncode == 2 and one_json(missing.stdout)["error"]["code"] == "provider_unavailable"
    assert servers_under(root) == []
    records = ledger_records(root / "ledger" / "decisions.jsonl")
    assert any(r["action"] == "compute.provision" and r["allow"] is False and r["reason_code"] ==
               "template_not_allowed" for r in records)


def test_cli_killed_before_the_gate_ends_is_adopted(root):
    child = subprocess.Popen([CANONIC, "compute", *SPINUP, "--json"], env=cli_env(root), cwd=root,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    try:
        def started():
            for record in (root / "instances").glob("*/instance.json"):
                data = json.loads(record.read_text() or "{}")
                if data.get("pid") and not data.get("ready_at"):
                    return data
            return None

        first = wait_for(started, 30, 0.02)
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=10)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(timeout=10)
    assert child.returncode == -signal.SIGKILL
    assert len(servers_under(root)) == 1  # the server outlived its CLI
    up = run_cli(root, *SPINUP, "--json")
    assert up.returncode == 0, up.stderr
    doc = one_json(up.stdout)
    assert doc["instance_id"] == first["instance_id"]  # adopted, not a second server
    time.sleep(0.5)
    assert len(servers_under(root)) == 1
    listed = one_json(run_cli(root, "list", "--json").stdout)
    assert [i["instance_id"] for i in listed] == [doc["instance_id"]]
    assert run_cli(root, "teardown-all", "--yes").returncode == 0
    assert servers_under(root) == []


def test_exit_codes_for_bad_arguments_and_scope(root):
    """2: the verb could not run (bad arguments, settings or scope); 1: refused or failed."""
    negative = run_cli(root, *SPINUP, "--budget", "-1", "--json")
    assert negative.returncode == 2 and one_json(negative.stdout)["error"]["code"] == "invalid_value"
    zero = run_cli(root, *SPINUP, "--budget", "0", "--json")
    assert zero.returncode == 2 and "budget" in one_json(zero.stdout)["error"]["message"]
    for verb in (("list",), ("teardown", "--instance", "x", "--yes"), ("ssh-info", "--instance", "x"),
                 ("pull", "--instance", "x", "--remote", "a", "--local", str(root / "a")), ("teardown-all", "--yes")):
        unknown = run_cli(root, *verb, "--provider", "nope", "--json")
        assert unknown.returncode == 2, (verb, unknown.stdout, unknown.stderr)
        assert one_json(unknown.stdout)["error"]["code"] == "unknown_provider"
    absent = run_cli(root, "list", "--scope", str(root / "no-such-scope"), "--json")
    assert absent.returncode == 2 and "does not exist" in one_json(absent.stdout)["error"]["message"]
    bad = run_cli(root, "list", "--json", env={"CANONIC_SPINUP_TIMEOUT_S": "soon"})
    assert bad.returncode == 2 and one_json(bad.stdout)["error"]["code"] == "bad_settings"
    assert servers_under(root) == []


def test_ssh_info_on_a_terminated_instance_says_so(root):
    up = run_cli(root, *SPINUP, "--json")
    assert up.returncode == 0, up.stderr
    instance_id = one_json(up.stdout)["instance_id"]
    assert run_cli(root, "teardown", "--instance", instance_id, "--provider", "local", "--yes").returncode == 0
    ssh = run_cli(root, "ssh-info", "--instance", instance_id, "--provider", "local", "--json")
    assert ssh.returncode == 1
    assert one_json(ssh.stdout)["error"]["message"] == f"Instance {instance_id} is terminated. No SSH."


LEDGER_LOCKS = "locked by another process" in "".join(
    p.read_text() for p in (Path(__file__).resolve().parents[2] / "gateway").glob("ledger*.py"))


@pytest.mark.skipif(not LEDGER_LOCKS, reason="the ledger has no per-file lock yet (the ledger helper adds it)")
def test_cli_says_when_a_gateway_holds_the_ledger(root):
    from tests.compute.conftest import running_gateway

    with running_gateway(root) as gw:
        held = run_cli(root, "list", "--json")
        assert held.returncode == 2, (held.stdout, held.stderr)
        lines = [line for line in held.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and str(gw.settings.ledger_path) in lines[0]
        assert f"held by a running gateway (pid {os.getpid()})" in lines[0] and "/v1/compute/" in lines[0]

"""The local llama.cpp adapter: refusals, availability, failures, adoption and forced teardown."""

from __future__ import annotations

import http.client
import json
import os
import signal
import stat
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

from providers.contract import Spec
from providers.errors import (
    ProviderUnavailable,
    PullFailed,
    Refused,
    SpinupFailed,
    SpinupTimeout,
    Unsupported,
)
from providers.lifecycle import State
from providers.local import LocalBackend, local_provider
from tests.providers.cases import LOCAL, TEST_DEADLINES, local_leftovers

SPEC = LOCAL.spec


def _nothing_created(root: Path) -> bool:
    instances = root / "instances"
    return not instances.exists() or not any(instances.iterdir())


@pytest.mark.parametrize(
    "spec,message",
    [
        (Spec("RTX_3090", 1, "gemma-3-270m"), "--gpu must be 'cpu', got 'RTX_3090'"),
        (Spec("cpu", 1, "llama-70b"), "unknown template 'llama-70b' for the local provider; it serves 'gemma-3-270m'"),
        (Spec("cpu", 10**9, "gemma-3-270m"), "--disk 1e+09 GB requested but only"),
    ],
)
def test_refusals_are_specific_and_create_nothing(local, root, spec, message):
    provider = local()
    with pytest.raises(Refused) as refused:
        provider.spinup(spec)
    assert message in str(refused.value)
    assert _nothing_created(root) and provider.list() == []


def test_ssh_info_says_to_use_pull(local):
    provider = local()
    instance = provider.spinup(SPEC)
    with pytest.raises(Unsupported, match="^local instances have no SSH; use pull$"):
        provider.ssh_info(instance.instance_id)


def test_instance_serves_the_model_for_chat(local):
    instance = local().spinup(SPEC)
    assert instance.model == "gemma-3-270m" and instance.base_url.startswith("http://127.0.0.1:")
    connection = http.client.HTTPConnection("127.0.0.1", instance.extra["port"], timeout=30)
    body = {"model": "gemma-3-270m", "messages": [{"role": "user", "content": "Say hi"}], "max_tokens": 8}
    connection.request("POST", "/v1/chat/completions", json.dumps(body), {"content-type": "application/json"})
    reply = json.loads(connection.getresponse().read())
    connection.close()
    assert reply["choices"][0]["message"]["content"].strip()
    assert reply["usage"]["completion_tokens"] > 0


def _python_without_site(root: Path) -> str:
    script = root / "bare-python.sh"
    script.write_text(f'#!/bin/sh\nexec {sys.executable} -S "$@"\n')
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return str(script)


def test_unavailable_without_llama_cpp_says_how_to_install(root):
    provider = local_provider(tracking_dir=root / "config", instances_dir=root / "instances",
                              python=_python_without_site(root), deadlines=TEST_DEADLINES)
    availability = provider.available()
    assert not availability.ok and "llama-cpp-python[server] is not installed" in availability.reason
    assert "pip install" in availability.install_hint
    with pytest.raises(ProviderUnavailable, match=r"pip install 'canonic-gateway\[local\]'"):
        provider.spinup(SPEC)
    assert provider.list() == [] and _nothing_created(root)


def test_unavailable_for_a_missing_python_or_model(root):
    missing_python = LocalBackend(instances_dir=root, python=str(root / "no-python"))
    assert "cannot be run" in missing_python.available().reason
    missing_model = LocalBackend(instances_dir=root, model="mine", model_path=root / "absent.gguf")
    assert "absent.gguf does not exist" in missing_model.available().reason
    assert "LOCAL_MODEL_PATH" in missing_model.available().install_hint


def test_a_server_that_cannot_load_its_model_fails_clearly_and_is_cleaned_up(local, root):
    junk = root / "junk.gguf"
    junk.write_bytes(b"not a gguf file" * 100)
    provider = local(model="junk", model_path=junk)
    with pytest.raises(SpinupFailed) as failed:
        provider.spinup(Spec("cpu", 1, "junk"))
    text = str(failed.value)
    assert "failed before RUNNING" in text and "last log lines" in text and "Billing confirmed stopped." in text
    assert provider.list() == [] and local_leftovers(root) == []


def test_pull_refuses_paths_outside_the_instance_and_missing_files(local, root):
    provider = local()
    instance = provider.spinup(SPEC)
    with pytest.raises(PullFailed, match="outside instance"):
        provider.pull(instance.instance_id, "../../config/secret", str(root / "out"))
    with pytest.raises(PullFailed, match="'nope.txt' does not exist"):
        provider.pull(instance.instance_id, "nope.txt", str(root / "out"))
    provider.pull(instance.instance_id, "server.log", str(root / "out" / "server.log"))
    assert (root / "out" / "server.log").stat().st_size > 0


def test_a_dead_server_is_removed_and_the_next_spinup_starts_a_new_one(local, root):
    first = local()
    dead = first.spinup(SPEC)
    os.killpg(dead.extra["pid"], signal.SIGKILL)
    later = local()  # another process's view
    for _ in range(100):
        if later.list() == []:
            break
        time.sleep(0.05)
    assert later.list() == []
    record = json.loads((root / "instances" / dead.instance_id / "instance.json").read_text())
    assert record["status"] == "terminated"
    fresh = later.spinup(SPEC)
    assert fresh.instance_id != dead.instance_id and fresh.status == State.RUNNING
    assert local_leftovers(root) == [fresh.extra["pid"]]
    assert later.teardown(dead.instance_id).already_terminated


def test_an_unanswering_server_is_not_adopted_but_destroyed_sigterm_then_sigkill(local, root):
    stuck = local().spinup(SPEC)
    os.kill(stuck.extra["pid"], signal.SIGSTOP)  # alive, port open, never answers; ignores SIGTERM
    short = replace(TEST_DEADLINES, spinup_s=1.5, teardown_s=0.5, force_grace_s=5.0)
    provider = local(deadlines=short)
    messages: list[str] = []
    with pytest.raises(SpinupTimeout, match=f"Instance {stuck.instance_id} did not reach RUNNING"):
        provider.spinup(SPEC, progress=messages.append)
    assert any("forcing destroy" in m for m in messages)
    assert provider.list() == [] and local_leftovers(root) == []
    assert LOCAL.gone(stuck)


def _python_that_orphans_the_server(root: Path) -> str:
    """A launcher whose server escapes into its own session: killing the launcher's group leaves
    the port answering, so teardown cannot confirm the instance is gone."""
    script = root / "orphaning-python.sh"
    script.write_text(f'#!/bin/sh\nsetsid {sys.executable} "$@" &\nwait\n')
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return str(script)


def test_teardown_that_cannot_confirm_warns_with_the_seed_sentence(local, root):
    short = replace(TEST_DEADLINES, teardown_s=0.5, force_grace_s=1.0)
    provider = local(deadlines=short, python=_python_that_orphans_the_server(root))
    instance = provider.spinup(SPEC)
    messages: list[str] = []
    result = provider.teardown(instance.instance_id, progress=messages.append)
    warning = "Could not confirm billing stopped. Check your provider dashboard."
    assert result.warning == warning and not result.billing_confirmed
    assert result.status == State.STOPPING
    assert warning in messages
    assert any(e["event"] == "warning" and e["message"] == warning for e in provider.tracker.read().events)
    assert [i.status for i in provider.list()] == [State.STOPPING]  # still reported, not hidden

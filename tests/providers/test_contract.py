"""The seed's contract checklist (001), run against every provider case unchanged."""

from __future__ import annotations

import json
import re
import threading
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from providers.contract import INSTANCE_KEYS, Offer, Provider, Spec
from providers.errors import (
    InstanceNotFound,
    InstanceTerminated,
    ProviderError,
    Refused,
    SpinupFailed,
    SpinupTimeout,
)
from providers.lifecycle import State
from tests.providers.cases import TEST_DEADLINES

ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")


def test_spinup_creates_instance_and_returns_required_json(case, provider, root):
    instance = provider.spinup(case.spec)
    body = instance.to_json()
    assert tuple(body) == INSTANCE_KEYS
    assert body["provider"] == case.name
    assert body["status"] == "RUNNING"
    assert isinstance(body["instance_id"], str) and body["instance_id"]
    assert isinstance(body["cost_per_hour"], float) and body["cost_per_hour"] >= 0
    assert ISO_UTC.match(body["started_at"]), body["started_at"]
    started = datetime.fromisoformat(body["started_at"].replace("Z", "+00:00"))
    assert abs((datetime.now(UTC) - started).total_seconds()) < 600
    if case.ssh:
        assert isinstance(body["ssh_host"], str) and isinstance(body["ssh_port"], int)
    else:
        assert body["ssh_host"] is None and body["ssh_port"] is None
    assert len(case.leftovers(root)) == 1  # exactly one thing really runs (local: one server process)


def test_spinup_json_is_valid_json(case, provider, root):
    """The CLI's ``--json`` stdout is one JSON document with the seed's keys (run for real)."""
    from tests.compute.conftest import run_cli

    spec = case.spec
    done = run_cli(root, "spinup", "--provider", case.name, "--gpu", spec.gpu, "--disk", f"{spec.disk_gb:g}",
                   "--template", spec.template, "--json")
    assert done.returncode == 0, done.stderr
    again = json.loads(done.stdout)
    assert tuple(again) == INSTANCE_KEYS
    assert isinstance(again["cost_per_hour"], int | float)
    assert [i.instance_id for i in provider.list()] == [again["instance_id"]]  # the provider sees it


def test_spinup_is_idempotent(case, provider, make_provider):
    first = provider.spinup(case.spec)
    second = provider.spinup(case.spec)
    # the budget is a cap, not identity; and another process (a fresh provider object) finds it too
    capped = Spec(case.spec.gpu, case.spec.disk_gb, case.spec.template, budget=first.cost_per_hour + 1)
    third = make_provider().spinup(capped)
    assert first.instance_id == second.instance_id == third.instance_id
    assert [i.instance_id for i in provider.list()] == [first.instance_id]
    created = [e for e in provider.tracker.read().events if e["event"] == "created"]
    assert len(created) == 1


def test_list_shows_the_running_instance(case, provider):
    instance = provider.spinup(case.spec)
    listed = provider.list()
    assert [i.instance_id for i in listed] == [instance.instance_id]
    assert listed[0].status == State.RUNNING
    assert listed[0].identity == case.spec.identity(case.name)


def test_ssh_info_returns_valid_details(case, provider):
    if not case.ssh:
        pytest.skip(f"not applicable: {case.name} instances have no SSH (ssh_host/ssh_port are null); pull covers files")
    info = provider.ssh_info(provider.spinup(case.spec).instance_id)
    assert info.host and 0 < info.port < 65536 and info.user


def test_ssh_connection_succeeds(case, provider):
    if not case.ssh:
        pytest.skip(f"not applicable: {case.name} instances have no SSH to connect to")
    assert case.ssh_connect is not None, "SSH-capable cases must provide an SSH connection check"
    info = provider.ssh_info(provider.spinup(case.spec).instance_id)
    assert case.ssh_connect(info)


def test_pull_downloads_a_test_file(case, provider, root):
    instance = provider.spinup(case.spec)
    payload = b"contract pull payload\n" * 100
    remote = case.put_remote_file(root, instance, "pull-test.bin", payload)
    target = root / "downloads" / "pulled.bin"
    provider.pull(instance.instance_id, remote, str(target))
    assert target.read_bytes() == payload


def test_teardown_destroys_the_instance(case, provider):
    instance = provider.spinup(case.spec)
    result = provider.teardown(instance.instance_id)
    assert result.status == State.TERMINATED
    assert result.billing_confirmed and result.warning is None and not result.already_terminated
    assert case.gone(instance)
    events = [e["event"] for e in provider.tracker.read().events if e["instance_id"] == instance.instance_id]
    assert events[0] == "created" and events[-1] == "destroyed"


def test_teardown_is_idempotent(case, provider):
    instance = provider.spinup(case.spec)
    provider.teardown(instance.instance_id)
    again = provider.teardown(instance.instance_id)
    assert again.status == State.TERMINATED and again.already_terminated and again.billing_confirmed


def test_list_shows_no_instances_after_teardown(case, provider):
    assert provider.list() == []
    instance = provider.spinup(case.spec)
    provider.teardown(instance.instance_id)
    assert provider.list() == []


def test_teardown_all_destroys_all_instances(case, provider, root):
    first = provider.spinup(case.spec)
    second = provider.spinup(case.other_spec)
    assert first.instance_id != second.instance_id
    assert len(provider.list()) == 2
    results = provider.teardown_all()
    assert sorted(r.instance_id for r in results) == sorted([first.instance_id, second.instance_id])
    assert all(r.billing_confirmed for r in results)
    assert provider.list() == []
    assert case.gone(first) and case.gone(second)
    assert case.leftovers(root) == []
    assert provider.teardown_all() == []


def test_error_messages_are_clear_and_actionable(case, provider, root):
    # pull from a terminated instance: the seed's exact sentence
    instance = provider.spinup(case.spec)
    provider.teardown(instance.instance_id)
    with pytest.raises(InstanceTerminated) as terminated:
        provider.pull(instance.instance_id, "anything", str(root / "x"))
    assert str(terminated.value) == f"Instance {instance.instance_id} is terminated. Nothing to download."
    # unknown ids name the id and the provider
    with pytest.raises(InstanceNotFound, match="no-such-id"):
        provider.teardown("no-such-id")
    # a spec the provider cannot serve is refused before anything is created
    with pytest.raises(Refused) as refused:
        provider.spinup(case.refused_spec)
    assert all(word in str(refused.value) for word in case.refused_words)
    with pytest.raises(Refused, match="disk_gb must be a positive"):
        provider.spinup(Spec(case.spec.gpu, -1, case.spec.template))
    assert provider.list() == []


def test_offers_and_billing_facts(case, provider):
    assert isinstance(provider, Provider) and provider.name == case.name
    assert provider.billing_starts in ("allocation", "ready")
    offers = provider.offers(case.spec)
    assert offers and all(isinstance(o, Offer) and isinstance(o.cost_per_hour, float) for o in offers)
    assert all(o.provider == case.name for o in offers)


def test_budget_below_price_is_refused_and_destroyed(case, provider):
    price = provider.offers(case.spec)[0].cost_per_hour
    if price == 0:
        pytest.skip(f"not applicable: {case.name} costs 0 USD/h, so no budget is below its price")
    cheap = Spec(case.spec.gpu, case.spec.disk_gb, case.spec.template, budget=price / 2)
    with pytest.raises(Refused, match="budget"):
        provider.spinup(cheap)
    assert provider.list() == []


def test_teardown_while_pending_cancels(case, make_provider, root):
    provider = make_provider(slow_start_s=3.0)
    outcome: dict[str, object] = {}

    def spin() -> None:
        try:
            outcome["instance"] = provider.spinup(case.spec)
        except ProviderError as exc:
            outcome["error"] = exc

    worker = threading.Thread(target=spin, daemon=True)
    worker.start()
    pending = None
    for _ in range(200):
        listed = provider.list()
        if listed:
            pending = listed[0]
            break
        threading.Event().wait(0.02)
    assert pending is not None and pending.status == State.PENDING
    result = provider.teardown(pending.instance_id)
    worker.join(timeout=30)
    assert not worker.is_alive()
    assert result.status == State.TERMINATED and result.billing_confirmed
    assert isinstance(outcome.get("error"), SpinupFailed), outcome
    assert "TERMINATED" in str(outcome["error"])
    assert provider.list() == [] and case.leftovers(root) == []


def test_spinup_past_deadline_is_terminated_and_cleaned_up(case, make_provider, root):
    short = replace(TEST_DEADLINES, spinup_s=1.0, progress_every_s=0.3)
    provider = make_provider(deadlines=short, slow_start_s=3.0)
    messages: list[str] = []
    with pytest.raises(SpinupTimeout) as timeout:
        provider.spinup(case.spec, progress=messages.append)
    text = str(timeout.value)
    assert "did not reach RUNNING within 1 s" in text and "TERMINATED" in text
    assert "Billing confirmed stopped." in text
    assert provider.list() == [] and case.leftovers(root) == []
    states = [(e["from"], e["to"]) for e in provider.tracker.read().events if e["event"] == "state"]
    assert states == [("IDLE", "PENDING"), ("PENDING", "TERMINATED")]
    assert any(m.startswith("still pending: spinup of") for m in messages), messages

"""The local adapter's bounded pull, the pruning of old working directories, and SSH details
through ManagedProvider's retry hook (a backend with a real loopback connect)."""

from __future__ import annotations

import json
import socket
from dataclasses import replace
from pathlib import Path

import pytest

from providers.contract import SSHInfo
from providers.errors import InstanceTerminated, PullFailed
from providers.local import LocalBackend
from providers.managed import ManagedProvider
from tests.providers.cases import LOCAL, TEST_DEADLINES, local_leftovers

SPEC = LOCAL.spec


def test_pull_past_its_deadline_fails_and_leaves_no_partial_copy(local, root):
    provider = local(deadlines=replace(TEST_DEADLINES, pull_s=0.0))
    instance = provider.spinup(SPEC)
    (root / "instances" / instance.instance_id / "big.bin").write_bytes(b"x" * (3 << 20))
    target = root / "out" / "big.bin"
    with pytest.raises(PullFailed, match="did not finish within 0 s"):
        provider.pull(instance.instance_id, "big.bin", str(target))
    assert not target.exists()


def test_prune_keeps_the_newest_terminated_and_every_live_instance(local, root):
    provider = local()
    live = provider.spinup(SPEC)
    instances = root / "instances"
    for n in range(5):
        ended = instances / f"local-old{n}"
        ended.mkdir()
        (ended / "server.log").write_text("old log\n")
        (ended / "instance.json").write_text(json.dumps({
            "instance_id": ended.name, "status": "terminated", "port": 1, "started_at": "2025-01-01T00:00:00+00:00",
            "terminated_at": f"2025-01-0{n + 1}T00:00:00+00:00"}))
    removed = provider.backend.prune(keep=2)
    assert sorted(removed) == ["local-old0", "local-old1", "local-old2"]
    assert sorted(p.name for p in instances.iterdir()) == sorted([live.instance_id, "local-old3", "local-old4"])
    assert (instances / "local-old4" / "server.log").read_text() == "old log\n"  # recent logs are kept


class _SSHBackend(LocalBackend):
    """A backend whose SSH check is one real TCP connect to a loopback port that refuses at first."""

    ssh_retry_on = (ConnectionRefusedError,)

    def __init__(self, listener: socket.socket, refusals: int, **kw) -> None:
        super().__init__(**kw)
        self.listener, self.refusals, self.attempts = listener, refusals, []

    def ssh_info(self, instance, connect_timeout_s: float = 10.0) -> SSHInfo:
        self.attempts.append(connect_timeout_s)
        if len(self.attempts) > self.refusals:
            self.listener.listen(1)
        port = self.listener.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port), timeout=connect_timeout_s):
            return SSHInfo("127.0.0.1", port, "root")


def test_ssh_info_retries_transient_refusals_with_backoff(local, root, case):
    local()  # skips where the local adapter is unavailable
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))  # bound, not listening: a connect is refused
        backend = _SSHBackend(listener, 2, instances_dir=root / "instances")
        deadlines = replace(TEST_DEADLINES, ssh_connect_s=2.0, ssh_attempts=3, ssh_backoff_s=0.05)
        provider = ManagedProvider(backend, tracking_dir=root / "config", deadlines=deadlines)
        instance = provider.spinup(SPEC)
        try:
            info = provider.ssh_info(instance.instance_id)
            assert info.port == listener.getsockname()[1] and backend.attempts == [2.0, 2.0, 2.0]
            backend.attempts.clear()
            backend.refusals = 5
            provider.teardown(instance.instance_id)
            with pytest.raises(InstanceTerminated, match=r"^Instance .* is terminated\. No SSH\.$"):
                provider.ssh_info(instance.instance_id)
            assert backend.attempts == []
        finally:
            provider.teardown_all()
    assert local_leftovers(Path(root)) == []

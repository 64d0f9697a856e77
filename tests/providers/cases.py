"""Provider cases for the contract suite. Each later adapter (vast, basilica) adds one entry."""

from __future__ import annotations

import stat
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from providers.contract import Instance, Spec, SSHInfo
from providers.lifecycle import Deadlines
from providers.local import local_provider
from providers.managed import ManagedProvider
from tests.procs import processes_under

# Small deadlines so every wait in the suite is bounded well under pytest-timeout.
TEST_DEADLINES = Deadlines(
    spinup_s=60.0, progress_every_s=0.5, teardown_s=10.0, force_grace_s=5.0, pull_s=10.0, lock_s=90.0
)


@dataclass(frozen=True)
class ProviderCase:
    name: str
    # (root dir, deadlines, slow start seconds) -> provider. Slow start stretches PENDING.
    make: Callable[[Path, Deadlines, float], ManagedProvider]
    spec: Spec
    other_spec: Spec  # a second identity, for teardown-all
    refused_spec: Spec  # a spec this provider must refuse, with `refused_words` in the message
    refused_words: tuple[str, ...]
    ssh: bool
    put_remote_file: Callable[[Path, Instance, str, bytes], str]  # -> remote path for pull
    leftovers: Callable[[Path], list[int]]  # what still runs (pids, ids) under a root
    gone: Callable[[Instance], bool]  # the instance is really gone (process, port, bill)
    # SSH-capable cases: open a connection with the returned details (e.g. to the fake's sshd)
    ssh_connect: Callable[[SSHInfo], bool] | None = None


def _slow_python(root: Path, delay_s: float) -> str:
    script = root / "slow-python.sh"
    script.write_text(f'#!/bin/sh\ncase "$2" in llama_cpp.server) sleep {delay_s};; esac\nexec {sys.executable} "$@"\n')
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return str(script)


def make_local(root: Path, deadlines: Deadlines = TEST_DEADLINES, slow_start_s: float = 0.0, **kw) -> ManagedProvider:
    python = _slow_python(root, slow_start_s) if slow_start_s else None
    return local_provider(
        tracking_dir=root / "config", instances_dir=root / "instances", deadlines=deadlines,
        python=kw.pop("python", python), **kw,
    )


def local_put(root: Path, instance: Instance, name: str, data: bytes) -> str:
    (root / "instances" / instance.instance_id / name).write_bytes(data)
    return name


def local_leftovers(root: Path) -> list[int]:
    return processes_under(root / "instances")


def local_gone(instance: Instance) -> bool:
    import socket

    pid = instance.extra.get("pid")
    alive = False
    if pid:
        try:
            alive = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0] not in ("Z", "X")
        except OSError:
            alive = False
    with socket.socket() as sock:
        sock.settimeout(0.2)
        port_open = sock.connect_ex(("127.0.0.1", int(instance.extra["port"]))) == 0
    return not alive and not port_open


LOCAL = ProviderCase(
    name="local",
    make=make_local,
    spec=Spec(gpu="cpu", disk_gb=1, template="gemma-3-270m"),
    other_spec=Spec(gpu="cpu", disk_gb=2, template="gemma-3-270m"),
    refused_spec=Spec(gpu="RTX_3090", disk_gb=1, template="gemma-3-270m"),
    refused_words=("cpu", "RTX_3090"),
    ssh=False,
    put_remote_file=local_put,
    leftovers=local_leftovers,
    gone=local_gone,
)

CASES = {"local": LOCAL}

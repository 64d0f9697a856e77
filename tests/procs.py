"""Finding and killing the local model servers a test started (processes leave no orphans)."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path


def processes_under(root: Path) -> list[int]:
    """Live processes whose working directory is under ``root`` (the llama.cpp servers run there)."""
    base = str(root.resolve())
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cwd = os.readlink(entry / "cwd")
            state = (entry / "stat").read_text().rsplit(")", 1)[-1].split()[0]
        except OSError:
            continue
        if cwd.startswith(base + "/") and state not in ("Z", "X"):
            found.append(int(entry.name))
    return found


def kill_groups(find: Callable[[], list[int]], *, wait_s: float = 5.0) -> list[int]:
    """SIGKILL the process group of every pid ``find()`` names, then wait (bounded) until it names
    none. Returns the pids that were found alive."""
    left = find()
    for pid in left:
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    deadline = time.monotonic() + wait_s
    while find() and time.monotonic() < deadline:
        time.sleep(0.05)
    return left

"""Cross-process exclusive file locks (fcntl.flock), waited on under a deadline."""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from providers.errors import LockTimeout


@contextmanager
def exclusive(path: Path, *, deadline_s: float, interval_s: float = 0.05) -> Iterator[int]:
    """Hold an exclusive flock on ``path`` (created if missing); yields the descriptor.

    flock locks belong to the open file description, so two threads of one process that each
    call this also exclude each other. A crashed holder's lock is released by the kernel.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        started = time.monotonic()
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() - started >= deadline_s:
                    raise LockTimeout(f"lock {path.name} still held by another process after {deadline_s:g} s") from None
                time.sleep(interval_s)
        try:
            yield fd
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)

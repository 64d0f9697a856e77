"""The append-only ``<dir>/<provider>_tracked_instances.jsonl`` event log.

One JSON object per line, appended with a single ``write()`` under an exclusive flock, so
concurrent writers never interleave. A writer that crashed mid-line leaves a torn last line: the
next append starts on a fresh line, and :meth:`Tracker.read` skips and reports torn lines.
"""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from providers.locks import exclusive

EVENTS = frozenset({"created", "state", "adopted", "destroyed", "warning", "failed"})


@dataclass
class TrackedLog:
    events: list[dict[str, Any]] = field(default_factory=list)
    # (line number, raw text) of lines that could not be parsed: torn writes.
    skipped: list[tuple[int, str]] = field(default_factory=list)


class Tracker:
    def __init__(self, directory: Path, provider: str, run_id: str | None = None, lock_s: float = 10.0) -> None:
        self.path = Path(directory) / f"{provider}_tracked_instances.jsonl"
        self.provider = provider
        self.run_id = run_id or uuid.uuid4().hex
        self._lock_path = self.path.with_name(self.path.name + ".lock")
        self._lock_s = lock_s

    def append(self, event: str, instance_id: str, *, once: bool = False, **fields: Any) -> dict[str, Any] | None:
        """Append one event. With ``once`` a ``state`` event whose ``to`` this instance already
        reached (another thread or process tracked it) is not appended again; returns None then."""
        if event not in EVENTS:
            raise ValueError(f"unknown tracking event {event!r}; expected one of {sorted(EVENTS)}")
        record = {
            "ts": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "event": event,
            "provider": self.provider,
            "run_id": self.run_id,
            "instance_id": str(instance_id),
            **fields,
        }
        line = json.dumps(record, sort_keys=True, default=str).encode() + b"\n"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with exclusive(self._lock_path, deadline_s=self._lock_s):
            if once and self._reached(str(instance_id), fields.get("to")):
                return None
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                if self._ends_torn():
                    line = b"\n" + line
                os.write(fd, line)
            finally:
                os.close(fd)
        return record

    def _ends_torn(self) -> bool:
        try:
            with self.path.open("rb") as handle:
                handle.seek(0, os.SEEK_END)
                if handle.tell() == 0:
                    return False
                handle.seek(-1, os.SEEK_END)
                return handle.read(1) != b"\n"
        except FileNotFoundError:
            return False

    def read(self) -> TrackedLog:
        log = TrackedLog()
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return log
        for number, line in enumerate(raw.split(b"\n"), start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                if not isinstance(record, dict):
                    raise ValueError("not an object")
            except ValueError:
                log.skipped.append((number, line.decode(errors="replace")))
                continue
            log.events.append(record)
        return log

    def _reached(self, instance_id: str, state: object) -> bool:
        return any(e.get("event") == "state" and e.get("instance_id") == instance_id and e.get("to") == state
                   for e in self.read().events)

    def known(self, instance_id: str) -> bool:
        """Whether this log has ever recorded ``instance_id`` (any run, any process)."""
        return any(event.get("instance_id") == str(instance_id) for event in self.read().events)

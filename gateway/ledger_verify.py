"""The decision ledger's on-disk format, read side: canonical JSON, record hashes, the order of
rotated files, chain verification and tail reading. Pure functions over files; no asyncio.

File naming: the active file is the configured path (``decisions.jsonl``). When it would grow past
``ledger_max_bytes`` it is renamed to ``decisions.jsonl.<N>`` where ``N`` is one more than the
highest existing suffix, so ``.1`` is the OLDEST rotated file and the chain reads
``.1, .2, ..., .N, decisions.jsonl``. Each record's ``prev`` is the previous record's ``hash`` across
file boundaries; the first record ever has ``seq`` 1 and ``prev`` = 64 zeros.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

GENESIS = "0" * 64
_HEX64 = re.compile(r"[0-9a-f]{64}")


def canonical_json(obj: Any) -> str:
    """Sorted keys, compact separators, UTF-8 text, no NaN/Infinity."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def record_hash(record: dict[str, Any]) -> str:
    """sha256 over the canonical JSON of the record without its ``hash`` field."""
    body = {k: v for k, v in record.items() if k != "hash"}
    return hashlib.sha256(canonical_json(body).encode("utf-8")).hexdigest()


def ledger_files(path: Path) -> list[Path]:
    """Rotated files oldest first (numeric suffix ascending), then the active file if it exists."""
    path = Path(path)
    rotated: list[tuple[int, Path]] = []
    parent = path.parent
    if parent.is_dir():
        prefix = path.name + "."
        for p in parent.iterdir():
            suffix = p.name[len(prefix) :] if p.name.startswith(prefix) else ""
            if suffix.isdigit():
                rotated.append((int(suffix), p))
    files = [p for _, p in sorted(rotated)]
    if path.exists():
        files.append(path)
    return files


def next_rotation_name(path: Path) -> Path:
    """The name the active file gets when it is rotated: one past the highest existing suffix."""
    existing = [int(p.name.rsplit(".", 1)[1]) for p in ledger_files(path) if p != path]
    return path.with_name(f"{path.name}.{max(existing, default=0) + 1}")


@dataclass
class VerifyResult:
    ok: bool
    records: int = 0
    files: list[Path] = field(default_factory=list)
    last_seq: int = 0
    last_hash: str = GENESIS
    file: Path | None = None
    line: int | None = None
    problem: str | None = None

    def describe(self) -> str:
        if self.ok:
            return f"ok: {self.records} records in {len(self.files)} file(s); last seq {self.last_seq}, hash {self.last_hash}"
        return f"{self.file}:{self.line}: {self.problem}"


def check_record(raw: bytes, *, expect_seq: int, expect_prev: str) -> tuple[dict[str, Any] | None, str | None]:
    """Parse and check one complete line (without its newline). Returns (record, problem)."""
    try:
        rec = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        return None, f"not a JSON record ({exc.__class__.__name__})"
    if not isinstance(rec, dict):
        return None, "not a JSON object"
    for name in ("seq", "prev", "hash"):
        if name not in rec:
            return None, f"missing field {name!r}"
    if not isinstance(rec["hash"], str) or not _HEX64.fullmatch(rec["hash"]):
        return None, "field 'hash' is not a sha256 hex digest"
    try:
        actual = record_hash(rec)
    except ValueError:
        return None, "record cannot be canonicalised"
    if actual != rec["hash"]:
        return None, f"hash mismatch: stored {rec['hash'][:12]}..., content hashes to {actual[:12]}... (record edited?)"
    if rec["prev"] != expect_prev:
        return None, f"broken link: prev {str(rec['prev'])[:12]}... is not the previous record's hash {expect_prev[:12]}... (record deleted, inserted or reordered?)"
    if type(rec["seq"]) is not int or rec["seq"] != expect_seq:
        return None, f"bad seq: {rec['seq']!r}, expected {expect_seq} (record deleted, inserted or reordered?)"
    return rec, None


def _lines(path: Path) -> Iterator[tuple[int, bytes, bool]]:
    """(line number, bytes without newline, complete?) for each line of a file."""
    with open(path, "rb") as f:
        for n, raw in enumerate(f, start=1):
            complete = raw.endswith(b"\n")
            yield n, raw[:-1] if complete else raw, complete


def verify_chain(path: Path) -> VerifyResult:
    """Walk every file of the ledger at ``path`` in order and check the whole chain.

    Returns the first broken record (file, line, what is wrong). Raises OSError when the ledger
    cannot be read at all (FileNotFoundError when no file of it exists)."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a directory, not a ledger file")
    files = ledger_files(path)
    if not files:
        raise FileNotFoundError(f"no ledger at {path}")
    result = VerifyResult(ok=True, files=files)
    expect_seq, prev = 1, GENESIS
    for fpath in files:
        for n, raw, complete in _lines(fpath):
            if not complete:
                result.ok, result.file, result.line = False, fpath, n
                result.problem = "truncated record: partial last line without newline (crash mid-write?)"
                return result
            rec, problem = check_record(raw, expect_seq=expect_seq, expect_prev=prev)
            if problem:
                result.ok, result.file, result.line, result.problem = False, fpath, n, problem
                return result
            assert rec is not None
            prev, expect_seq = rec["hash"], expect_seq + 1
            result.records += 1
    result.last_seq, result.last_hash = expect_seq - 1, prev
    return result


def read_tail(path: Path, n: int) -> list[dict[str, Any]]:
    """The last ``n`` complete, parseable records across rotated files, oldest first."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a directory, not a ledger file")
    files = ledger_files(path)
    if not files:
        raise FileNotFoundError(f"no ledger at {path}")
    out: deque[dict[str, Any]] = deque()
    for fpath in reversed(files):
        if len(out) >= n:
            break
        kept: deque[dict[str, Any]] = deque(maxlen=max(n - len(out), 0))
        for _, raw, complete in _lines(fpath):
            if not complete:
                continue
            try:
                rec = json.loads(raw.decode("utf-8"))
            except (UnicodeDecodeError, ValueError):
                continue
            if isinstance(rec, dict):
                kept.append(rec)
        out.extendleft(reversed(kept))
    return list(out)[-n:] if n > 0 else []

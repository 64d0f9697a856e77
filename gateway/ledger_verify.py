"""The decision ledger's on-disk format, read side: canonical JSON, record hashes, the order of
rotated files, chain verification and tail reading. Pure functions over files; no asyncio.

File naming: the active file is the configured path (``decisions.jsonl``). When it would grow past
``ledger_max_bytes`` it is renamed to ``decisions.jsonl.<N>`` where ``N`` is one more than the
highest existing suffix, so ``.1`` is the OLDEST rotated file and the chain reads
``.1, .2, ..., .N, decisions.jsonl``. Each record's ``prev`` is the previous record's ``hash`` across
file boundaries; the first record ever has ``seq`` 1 and ``prev`` = 64 zeros.

Each line must be exactly ``canonical_json(record)``: a line with duplicate keys, extra whitespace or
other escapes is rejected even when its parsed value hashes right (a reader that keeps the first of
two duplicate keys would otherwise see different content than the one that was hashed).

Truncation of the newest records: a hash chain alone cannot tell "the last two records were
removed" from "there were never more". The writer therefore keeps an anchor, ``<ledger>.head``
(``{"hash":...,"seq":...}`` of the last record written, replaced atomically after each batch).
``verify_chain`` and the writer at start refuse a chain that ends before the anchor's ``seq`` or
whose record at that ``seq`` has another hash. Remaining limit: someone who can delete records can
also delete or rewrite the anchor; then only an externally kept ``(seq, hash)`` catches it
(``canonic ledger verify --expect-seq N --expect-hash H``, e.g. from a previous run or a ship-off).
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


def anchor_path(path: Path) -> Path:
    """The anchor next to the active ledger file: ``decisions.jsonl.head``."""
    path = Path(path)
    return path.with_name(path.name + ".head")


def parse_anchor(raw: bytes) -> tuple[int, str]:
    """``(seq, hash)`` from the anchor's bytes; ValueError when it is not a valid anchor."""
    try:
        obj = json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicates)
        seq, digest = obj["seq"], obj["hash"]
    except (UnicodeDecodeError, ValueError, TypeError, KeyError) as exc:
        raise ValueError(f"anchor is not valid ({type(exc).__name__})") from None
    if type(seq) is not int or seq < 0 or not isinstance(digest, str) or not _HEX64.fullmatch(digest):
        raise ValueError("anchor is not valid (seq or hash malformed)")
    return seq, digest


def read_anchor(path: Path) -> tuple[int, str] | None:
    """The anchor of the ledger at ``path`` or None when there is none. ValueError when corrupt."""
    try:
        raw = anchor_path(path).read_bytes()
    except FileNotFoundError:
        return None
    return parse_anchor(raw)


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        dup = next(k for k, _ in pairs if k in seen or seen.add(k))
        raise _DuplicateKey(dup)
    return obj


class _DuplicateKey(ValueError):
    pass


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
        rec = json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicates)
    except _DuplicateKey as exc:
        return None, f"duplicate key {str(exc)[:40]!r} (record forged?)"
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
    if actual == rec["hash"] and canonical_json(rec).encode("utf-8") != raw:
        return None, "line is not the record's canonical JSON (whitespace, key order or escapes edited)"
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


def verify_chain(path: Path, *, expect_seq: int | None = None, expect_hash: str | None = None) -> VerifyResult:
    """Walk every file of the ledger at ``path`` in order and check the whole chain, then that it
    reaches its anchor (``<ledger>.head``) and the caller's ``expect_seq``/``expect_hash``.

    ``expect_hash`` alone means "the last record has this hash"; with ``expect_seq`` it is the hash
    of the record at that seq. Returns the first broken record (file, line, what is wrong). Raises
    OSError when the ledger cannot be read at all (FileNotFoundError when neither a file of it nor
    its anchor exists)."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a directory, not a ledger file")
    files = ledger_files(path)
    result = VerifyResult(ok=True, files=files)
    try:
        anchor = read_anchor(path)
    except ValueError as exc:
        result.ok, result.file, result.line, result.problem = False, anchor_path(path), 1, str(exc)
        return result
    if not files and anchor is None:
        raise FileNotFoundError(f"no ledger at {path}")
    # (seq, hash or None, what it is): points the chain must pass through
    marks: dict[int, list[tuple[str | None, str]]] = {}
    if anchor is not None and anchor[0] > 0:
        marks.setdefault(anchor[0], []).append((anchor[1], f"the anchor {anchor_path(path).name}"))
    if expect_seq is not None:
        marks.setdefault(expect_seq, []).append((expect_hash, "--expect-seq/--expect-hash"))
    expect_seq_n, prev = 1, GENESIS
    last_file, last_line = (files[-1] if files else path), 0
    for fpath in files:
        last_file, last_line = fpath, 0
        for n, raw, complete in _lines(fpath):
            last_line = n
            if not complete:
                result.ok, result.file, result.line = False, fpath, n
                result.problem = "truncated record: partial last line without newline (crash mid-write?)"
                return result
            rec, problem = check_record(raw, expect_seq=expect_seq_n, expect_prev=prev)
            if problem is None and expect_seq_n in marks:
                for want, what in marks[expect_seq_n]:
                    if want is not None and rec["hash"] != want:
                        problem = (f"record seq {expect_seq_n} has hash {rec['hash'][:12]}... but {what} says "
                                   f"{want[:12]}... (chain rewritten?)")
            if problem:
                result.ok, result.file, result.line, result.problem = False, fpath, n, problem
                return result
            assert rec is not None
            prev, expect_seq_n = rec["hash"], expect_seq_n + 1
            result.records += 1
    result.last_seq, result.last_hash = expect_seq_n - 1, prev
    missing = [(seq, what) for seq, items in marks.items() if seq > result.last_seq for _, what in items]
    if expect_seq is None and expect_hash is not None and prev != expect_hash:
        missing.append((result.last_seq, "--expect-hash (as the last record's hash)"))
    if missing:
        seq, what = max(missing)
        result.ok, result.file, result.line = False, last_file, last_line + 1
        if seq > result.last_seq:
            result.problem = (f"missing record(s): the chain ends at seq {result.last_seq} but {what} records "
                              f"seq {seq} (newest records or a whole file removed?)")
        else:
            result.problem = f"the last record's hash {prev[:12]}... is not the one given by {what}"
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

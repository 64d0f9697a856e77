"""Editing, deleting, reordering or truncating records is reported at the right file and line,
both by verify_chain and by `canonic ledger verify` (exit 0 valid, 1 broken, 2 could not run)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from gateway.ledger_verify import canonical_json, record_hash, verify_chain
from tests.ledger.conftest import ledger_path, make_settings, run_cli, write_ledger


def _edit_field(lines: list[str]) -> list[str]:
    rec = json.loads(lines[3])
    rec["allow"] = not rec["allow"]
    lines[3] = canonical_json(rec)
    return lines


def _edit_and_rehash(lines: list[str]) -> list[str]:
    rec = json.loads(lines[3])
    rec["principal"] = "mallory"
    rec["hash"] = record_hash(rec)
    lines[3] = canonical_json(rec)
    return lines


def _edit_text_in_place(lines: list[str]) -> list[str]:
    lines[6] = lines[6].replace('"outcome":"n6"', '"outcome":"n7"')
    return lines


def _delete(lines: list[str]) -> list[str]:
    del lines[3]
    return lines


def _delete_first(lines: list[str]) -> list[str]:
    del lines[0]
    return lines


def _swap(lines: list[str]) -> list[str]:
    lines[3], lines[4] = lines[4], lines[3]
    return lines


def _duplicate(lines: list[str]) -> list[str]:
    lines.insert(5, lines[4])
    return lines


def _garbage(lines: list[str]) -> list[str]:
    lines[7] = "this is not json"
    return lines


def _forged_seq(lines: list[str]) -> list[str]:
    rec = json.loads(lines[2])
    rec["seq"] = 99
    rec["hash"] = record_hash(rec)
    lines[2] = canonical_json(rec)
    # re-link the rest so only the seq is wrong
    prev = rec["hash"]
    for i in range(3, len(lines)):
        r = json.loads(lines[i])
        r["prev"] = prev
        r["hash"] = record_hash(r)
        prev = r["hash"]
        lines[i] = canonical_json(r)
    return lines


CASES = [
    (_edit_field, 4, "hash mismatch"),
    (_edit_and_rehash, 5, "broken link"),
    (_edit_text_in_place, 7, "hash mismatch"),
    (_delete, 4, "broken link"),
    (_delete_first, 1, "broken link"),
    (_swap, 4, "broken link"),
    (_duplicate, 6, "broken link"),
    (_garbage, 8, "not a JSON record"),
    (_forged_seq, 3, "bad seq"),
]


@pytest.mark.parametrize(("tamper", "line", "problem"), CASES, ids=[c[0].__name__ for c in CASES])
async def test_tampering_is_found_at_the_right_line(tmp_path: Path, tamper, line: int, problem: str) -> None:
    settings = make_settings(tmp_path)
    await write_ledger(settings, 10)
    path = ledger_path(settings)
    assert verify_chain(path).ok
    lines = path.read_text().splitlines()
    path.write_text("\n".join(tamper(lines)) + "\n")
    result = verify_chain(path)
    assert not result.ok
    assert (result.file, result.line) == (path, line), result.describe()
    assert problem in result.problem
    assert result.records == line - 1


async def test_cli_verify_exit_codes_and_location(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    await write_ledger(settings, 6)
    path = ledger_path(settings)

    ok = run_cli("ledger", "verify", str(path))
    assert ok.returncode == 0, ok.stderr
    assert "6 records" in ok.stdout

    lines = path.read_text().splitlines()
    path.write_text("\n".join(_swap(lines)) + "\n")
    broken = run_cli("ledger", "verify", str(path))
    assert broken.returncode == 1
    assert f"{path}:4:" in broken.stdout and "broken link" in broken.stdout

    as_json = json.loads(run_cli("ledger", "verify", "--json", str(path)).stdout)
    assert as_json["ok"] is False and as_json["line"] == 4 and as_json["file"] == str(path)

    missing = run_cli("ledger", "verify", str(tmp_path / "nope" / "decisions.jsonl"))
    assert missing.returncode == 2 and "cannot read ledger" in missing.stderr
    a_dir = run_cli("ledger", "verify", str(tmp_path))
    assert a_dir.returncode == 2


async def test_cli_verify_defaults_to_the_configured_path(tmp_path: Path) -> None:
    import os

    settings = make_settings(tmp_path)
    await write_ledger(settings, 3)
    env = {**os.environ, "CANONIC_SCOPE_DIR": str(tmp_path), "CANONIC_LEDGER_PATH": "var/ledger/decisions.jsonl"}
    proc = run_cli("ledger", "verify", env=env)
    assert proc.returncode == 0 and "3 records" in proc.stdout, proc.stdout + proc.stderr


async def test_partial_last_line_is_reported_as_truncated(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    await write_ledger(settings, 5)
    path = ledger_path(settings)
    data = path.read_bytes()
    path.write_bytes(data[:-40])  # a crash cut the last record short
    result = verify_chain(path)
    assert not result.ok and result.line == 5 and "truncated" in result.problem
    proc = run_cli("ledger", "verify", str(path))
    assert proc.returncode == 1 and f"{path}:5:" in proc.stdout


async def test_non_utf8_line_is_a_broken_record(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    await write_ledger(settings, 3)
    path = ledger_path(settings)
    with open(path, "ab") as f:
        f.write(b"\xff\xfe\x00garbage\n")
    result = verify_chain(path)
    assert not result.ok and result.line == 4 and "not a JSON record" in result.problem


def test_canonical_hash_is_sha256_of_sorted_compact_json() -> None:
    rec = {"b": 1, "a": "x", "seq": 1, "prev": "0" * 64, "hash": "ignored"}
    expected = hashlib.sha256(b'{"a":"x","b":1,"prev":"' + b"0" * 64 + b'","seq":1}').hexdigest()
    assert record_hash(rec) == expected

"""Time a full validation of the repository's governance documents (target: under 50 ms).

Prints the median and p95 of (a) the compiler alone over texts already in memory, (b) reading
the scope from disk plus compiling (what ``canonic validate .`` does), and (c) ``POST
/validate`` through the app in-process. Run: ``.venv/bin/python bench/bench_validate.py``.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from fastapi.testclient import TestClient  # noqa: E402

from gateway.app import create_app  # noqa: E402
from gateway.settings import Settings  # noqa: E402
from governance.compiler import compile_files  # noqa: E402
from governance.sources import read_scope  # noqa: E402

ROUNDS = 50


def timed(fn, rounds: int = ROUNDS) -> tuple[float, float]:
    fn()  # warm-up
    samples = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1000)
    samples.sort()
    return statistics.median(samples), samples[int(0.95 * (len(samples) - 1))]


def main() -> None:
    files = read_scope(REPO)
    size = sum(len(t) for t in files.values())
    result = compile_files(files)
    print(
        f"documents: {len(files)} files, {size} bytes; score {result.score}/255, {len(result.errors)} errors"
    )
    for label, fn in (
        ("compile (in memory)", lambda: compile_files(files)),
        ("read + compile (canonic validate .)", lambda: compile_files(read_scope(REPO))),
    ):
        med, p95 = timed(fn)
        print(f"{label:40s} median {med:7.2f} ms   p95 {p95:7.2f} ms")
    body = {"files": {k: v for k, v in files.items() if not k.startswith("canon/")}}
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(scope_dir=REPO, ledger_path=Path(tmp) / "ledger.jsonl", telemetry_enabled=False)
        with TestClient(create_app(settings)) as client:
            med, p95 = timed(lambda: client.post("/validate", json=body).raise_for_status())
    print(f"{'POST /validate (in-process)':40s} median {med:7.2f} ms   p95 {p95:7.2f} ms")
    print("target: full validate under 50 ms")


if __name__ == "__main__":
    main()

"""What telemetry costs the gateway: the same workload with telemetry off, with the default sampler
(parent-based ratio 0.01) and at ratio 0.1 exporting to a loopback OTLP receiver, and with every
span sampled. (bench/bench_inference.py measures the same on the governed inference path, with the
modes in alternating rounds; this script is the quick one for any route.)

For each mode a fresh gateway runs as a subprocess (uvicorn, one worker) and an aiohttp client sends
``--requests`` GETs/POSTs at ``--concurrency``. Reported per mode: requests/s and the gateway
process's CPU per request (user+system from /proc, so the load generator's CPU on the same 2 cores
does not hide the overhead), and both relative to telemetry off.

    .venv/bin/python bench/bench_telemetry.py [--path /healthz] [--requests 4000] [--concurrency 32]

For an inference path pass ``--path /v1/chat/completions --body '{...}' --token <jwt>`` and the
gateway's own environment (upstreams) through the shell environment, which the subprocess inherits.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import aiohttp

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.fakes.otlp_receiver import OtlpReceiver  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _modes(endpoint: str) -> dict[str, dict[str, str]]:
    export = {"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint, "OTEL_METRIC_EXPORT_INTERVAL": "5000"}
    return {
        "off": {"CANONIC_TELEMETRY_ENABLED": "false"},
        "on, no exporter": {},
        "default (ratio 0.01)": export,
        "ratio 0.1": {**export, "OTEL_TRACES_SAMPLER_ARG": "0.1"},
        "always_on": {**export, "OTEL_TRACES_SAMPLER": "always_on"},
    }


async def _load(url: str, n: int, concurrency: int, body: bytes | None, headers: dict) -> tuple[float, int]:
    failures = 0
    left = n

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal left, failures
        while left > 0:
            left -= 1
            if body is None:
                resp = await session.get(url, headers=headers)
            else:
                resp = await session.post(url, data=body, headers=headers)
            async with resp:
                await resp.read()
                failures += resp.status >= 400

    conn = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=conn, timeout=timeout) as session:
        t0 = time.perf_counter()
        await asyncio.wait_for(asyncio.gather(*(worker(session) for _ in range(concurrency))), timeout=600)
        return time.perf_counter() - t0, failures


def run_mode(name: str, env_extra: dict[str, str], args) -> dict:
    port = _free_port()
    env = {**os.environ, **env_extra, "CANONIC_LEDGER_PATH": str(Path(args.workdir) / f"ledger-{port}.jsonl")}
    cmd = [sys.executable, "-m", "uvicorn", "gateway.app:create_app", "--factory", "--host", "127.0.0.1",
           "--port", str(port), "--log-level", "warning", "--no-access-log"]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=REPO, env=env)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"gateway for mode {name!r} did not start") from None
                time.sleep(0.05)
        headers = {"content-type": "application/json"}
        if args.token:
            headers["authorization"] = f"Bearer {args.token}"
        body = args.body.encode() if args.body else None
        url = base + args.path
        asyncio.run(_load(url, args.warmup, args.concurrency, body, headers))
        cpu0 = _cpu_s(proc.pid)
        wall, failures = asyncio.run(_load(url, args.requests, args.concurrency, body, headers))
        cpu = _cpu_s(proc.pid) - cpu0
        return {
            "mode": name,
            "rps": args.requests / wall,
            "cpu_us_per_req": cpu / args.requests * 1e6,
            "failures": failures,
        }
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--path", default="/healthz")
    p.add_argument("--body", default=None, help="JSON body: POST instead of GET")
    p.add_argument("--token", default=None)
    p.add_argument("--requests", type=int, default=4000)
    p.add_argument("--warmup", type=int, default=300)
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--workdir", default="/tmp")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    with OtlpReceiver() as receiver:
        results = [run_mode(name, extra, args) for name, extra in _modes(receiver.endpoint).items()]
        spans = len(receiver.spans)
    if args.json:
        print(json.dumps({"results": results, "spans_received": spans}, indent=2))
        return 0
    off = results[0]
    print(f"{args.requests} x {args.path} at concurrency {args.concurrency}; spans received: {spans}")
    print(f"{'mode':<22}{'req/s':>10}{'vs off':>9}{'CPU us/req':>13}{'vs off':>9}{'errors':>8}")
    for r in results:
        print(
            f"{r['mode']:<22}{r['rps']:>10.0f}{r['rps'] / off['rps'] - 1:>+9.1%}"
            f"{r['cpu_us_per_req']:>13.0f}{r['cpu_us_per_req'] / off['cpu_us_per_req'] - 1:>+9.1%}{r['failures']:>8}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

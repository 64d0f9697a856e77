"""Inference throughput and latency, side by side in one run.

Four targets serve the same chat-completion workload from one fake vLLM upstream (a
subprocess), each measured with the same aiohttp load generator:
  direct       the fake upstream itself
  passthrough  a bare FastAPI + aiohttp proxy (bench/passthrough.py)
  gateway      canonic-gateway, telemetry disabled
  gateway+otel canonic-gateway exporting to a loopback OTLP receiver, default sampler
               (parent-based, trace-id ratio 0.1)
  gateway+all  the same with every span sampled (OTEL_TRACES_SAMPLER=always_on)

    .venv/bin/python bench/bench_inference.py [--requests 2000] [--concurrency 32] [--stream]

Prints requests/s, p50/p99 latency (and time to first byte for --stream) per target, and each
as a ratio of direct and of passthrough. Targets (DESIGN.md / issue 3, 4): the gateway close to
the pass-through; telemetry costs under 10% of throughput.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from gateway.auth import mint_token  # noqa: E402
from gateway.settings import Settings  # noqa: E402

PY = sys.executable
SECRET = "bench-secret-0123456789abcdef0123456789"
MODEL = "fake-model"
# The OTLP receiver runs in its own process, so decoding protobuf does not compete with the load
# generator; it prints the number of spans it received when it is stopped.
RECEIVER = (
    "import sys, signal, time; sys.path.insert(0, {repo!r});"
    "from tests.fakes.otlp_receiver import OtlpReceiver;"
    "r = OtlpReceiver(port={port}); r.accept();"
    "signal.signal(signal.SIGTERM, lambda *a: (print(len(r.spans), flush=True), sys.exit(0)));"
    "time.sleep(3600)"
)
FAKE = (
    "import sys, time; sys.path.insert(0, {repo!r});"
    "from tests.fakes.fake_vllm import FakeVLLM;"
    "f = FakeVLLM(model={model!r}, port={port}).start();"
    "time.sleep(3600)"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_up(url: str, deadline_s: float = 30.0) -> None:
    import urllib.request

    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        try:
            urllib.request.urlopen(url, timeout=1)
            return
        except Exception as exc:  # noqa: BLE001 - any failure means not up yet
            if getattr(exc, "code", None):  # an HTTP error status still means it is serving
                return
            time.sleep(0.1)
    raise SystemExit(f"{url} did not come up within {deadline_s}s")


def spawn(args: list[str], env: dict[str, str] | None = None) -> subprocess.Popen:
    return subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


async def load(url: str, headers: dict, body: bytes, n: int, conc: int, stream: bool) -> dict:
    lat: list[float] = []
    ttfb: list[float] = []
    errors = 0
    queue = iter(range(n))
    conn = aiohttp.TCPConnector(limit=conc)
    async with aiohttp.ClientSession(connector=conn) as session:

        async def worker() -> None:
            nonlocal errors
            for _ in queue:
                t0 = time.perf_counter()
                try:
                    async with session.post(url, data=body, headers=headers) as resp:
                        first = None
                        async for _chunk in resp.content.iter_any():
                            if first is None:
                                first = time.perf_counter()
                        if resp.status != 200:
                            errors += 1
                except aiohttp.ClientError:
                    errors += 1
                    continue
                t1 = time.perf_counter()
                lat.append(t1 - t0)
                ttfb.append((first or t1) - t0)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(conc)))
        elapsed = time.perf_counter() - started
    lat.sort()
    ttfb.sort()
    return {
        "rps": len(lat) / elapsed,
        "p50_ms": statistics.median(lat) * 1000,
        "p99_ms": lat[int(len(lat) * 0.99) - 1] * 1000,
        "ttfb_p50_ms": statistics.median(ttfb) * 1000,
        "errors": errors,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--stream", action="store_true")
    args = ap.parse_args()

    procs: list[subprocess.Popen] = []
    tmp = tempfile.mkdtemp(prefix="canonic-bench-")
    rport = free_port()
    receiver = subprocess.Popen([PY, "-c", RECEIVER.format(repo=str(REPO), port=rport)], stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, text=True)
    try:
        fport = free_port()
        procs.append(spawn([PY, "-c", FAKE.format(repo=str(REPO), model=MODEL, port=fport)]))
        upstream = f"http://127.0.0.1:{fport}/v1"
        wait_up(upstream + "/models")
        pport = free_port()
        procs.append(spawn([PY, str(REPO / "bench" / "passthrough.py"), str(pport), upstream]))
        base_env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
        base_env.update({
            "GATEWAY_JWT_SECRET": SECRET, "VASTAI_BASE_URL": upstream, "VASTAI_MODEL": MODEL,
            "CANONIC_LEDGER_PATH": f"{tmp}/ledger/decisions.jsonl", "PYTHONPATH": str(REPO),
        })
        serve = [PY, "-m", "uvicorn", "--factory", "gateway.app:create_app", "--host", "127.0.0.1",
                 "--log-level", "warning", "--app-dir", str(REPO)]
        gport, oport, aport = free_port(), free_port(), free_port()
        procs.append(spawn(serve + ["--port", str(gport)], {**base_env, "CANONIC_TELEMETRY_ENABLED": "false"}))
        otel_env = {**base_env, "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{rport}",
                    "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}
        procs.append(spawn(serve + ["--port", str(oport)], otel_env))
        procs.append(spawn(serve + ["--port", str(aport)], {**otel_env, "OTEL_TRACES_SAMPLER": "always_on"}))
        for port in (pport, gport, oport, aport):
            wait_up(f"http://127.0.0.1:{port}/healthz" if port != pport else f"http://127.0.0.1:{port}/docs")

        token = mint_token(Settings(jwt_secret=SECRET), "bench", ["inference"], 3600)
        payload = {"model": MODEL, "messages": [{"role": "user", "content": "Say hello"}], "max_tokens": 16}
        if args.stream:
            payload["stream"] = True
        body = json.dumps(payload).encode()
        plain = {"content-type": "application/json"}
        authed = {**plain, "authorization": f"Bearer {token}"}
        targets = [
            ("direct", upstream + "/chat/completions", plain),
            ("passthrough", f"http://127.0.0.1:{pport}/v1/chat/completions", plain),
            ("gateway", f"http://127.0.0.1:{gport}/v1/chat/completions", authed),
            ("gateway+otel", f"http://127.0.0.1:{oport}/v1/chat/completions", authed),
            ("gateway+all", f"http://127.0.0.1:{aport}/v1/chat/completions", authed),
        ]
        results = {}
        for name, url, headers in targets:
            asyncio.run(load(url, headers, body, min(200, args.requests), args.concurrency, args.stream))  # warm-up
            results[name] = asyncio.run(load(url, headers, body, args.requests, args.concurrency, args.stream))
        mode = "stream" if args.stream else "non-stream"
        print(f"chat completions, {mode}, {args.requests} requests at concurrency {args.concurrency}")
        print(f"{'target':<14}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'ttfb ms':>9}{'errors':>8}"
              f"{'vs direct':>11}{'vs bare':>9}")
        for name, r in results.items():
            print(f"{name:<14}{r['rps']:>9.0f}{r['p50_ms']:>9.2f}{r['p99_ms']:>9.2f}{r['ttfb_p50_ms']:>9.2f}"
                  f"{r['errors']:>8}{r['rps'] / results['direct']['rps']:>11.2f}"
                  f"{r['rps'] / results['passthrough']['rps']:>9.2f}")
        for name in ("gateway+otel", "gateway+all"):
            loss = 1 - results[name]["rps"] / results["gateway"]["rps"]
            print(f"telemetry cost ({name}): {loss * 100:.1f}% of gateway throughput (target < 10% at the default)")
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        receiver.terminate()
        try:
            spans = receiver.communicate(timeout=10)[0].strip()
            print(f"spans received by the loopback OTLP receiver: {spans}")
        except subprocess.TimeoutExpired:
            receiver.kill()


if __name__ == "__main__":
    main()

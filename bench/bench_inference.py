"""Inference throughput and latency, side by side in one run.

Five targets serve the same chat-completion workload from one fake vLLM upstream (a
subprocess), each measured with the same aiohttp load generator:
  direct       the fake upstream itself
  passthrough  a bare FastAPI + aiohttp proxy (bench/passthrough.py)
  gateway      canonic-gateway, telemetry disabled
  gateway+otel canonic-gateway exporting traces and metrics to a loopback OTLP receiver, default
               sampler (parent-based, trace-id ratio 0.01)
  gateway+all  the same with every span sampled (OTEL_TRACES_SAMPLER=always_on)

    .venv/bin/python bench/bench_inference.py [--requests 2000] [--concurrency 32] [--serial 500] [--rounds 5]

Four runs per target: non-stream at --concurrency and at concurrency 1, streamed at concurrency 16
and at concurrency 1. Prints requests/s, p50/p99 latency and time to first byte per target, each as a
ratio of direct and of the bare pass-through; then each gateway against the targets of
reference/openai-vllm.md 4.3 (added latency, TTFT, req/s, RSS idle and after the load, startup).

Last, the cost of telemetry (target: under 10% of throughput at the default sampler): the gateways
(plus gateway+otel@0.1, the default exporter at ratio 0.1) take --rounds alternating turns of
--requests non-stream requests at --concurrency, so drift on a shared machine hits every mode
alike; medians of requests/s and of the gateway process's own CPU per request (user + system from
/proc, which the load generator's CPU on the same cores cannot hide) are printed against
telemetry disabled.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
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


async def load(url: str, headers: dict, body: bytes, n: int, conc: int) -> dict:
    """Closed-loop load: ``conc`` workers share ``n`` requests. Latency samples are 200s only."""
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
                        ok = resp.status == 200
                except aiohttp.ClientError:
                    ok = False
                if not ok:
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
    if not lat:
        return {"rps": 0.0, "p50_ms": float("nan"), "p99_ms": float("nan"), "ttfb_p50_ms": float("nan"),
                "errors": errors}
    return {
        "rps": len(lat) / elapsed,
        "p50_ms": statistics.median(lat) * 1000,
        "p99_ms": lat[max(0, int(len(lat) * 0.99) - 1)] * 1000,
        "ttfb_p50_ms": statistics.median(ttfb) * 1000,
        "errors": errors,
    }


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` (all its threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def telemetry_cost(ports: dict[str, int], pids: dict[str, int], headers: dict, body: bytes, args) -> None:
    """Alternating rounds over the gateways; medians of req/s and of CPU per request."""
    n, conc = args.requests, args.concurrency
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in ports}
    for _ in range(max(1, args.rounds)):
        for name, port in ports.items():
            url = f"http://127.0.0.1:{port}/v1/chat/completions"
            asyncio.run(load(url, headers, body, min(100, n), conc))  # warm-up
            c0 = cpu_s(pids[name])
            r = asyncio.run(load(url, headers, body, n, conc))
            c1 = cpu_s(pids[name])
            samples[name].append((r["rps"], (c1 - c0) / max(1, n - r["errors"]) * 1e6))
    med = {name: (statistics.median(s[0] for s in v), statistics.median(s[1] for s in v)) for name, v in samples.items()}
    base_rps, base_cpu = med["gateway"]
    print(f"\ntelemetry cost, non-stream c={conc}: medians of {max(1, args.rounds)} alternating rounds of {n} requests")
    print(f"{'target':<18}{'req/s':>8}{'loss':>8}{'CPU us/req':>12}{'added':>9}")
    for name, (rps, cpu) in med.items():
        print(f"{name:<18}{rps:>8.0f}{(1 - rps / base_rps) * 100:>7.1f}%{cpu:>12.0f}{(cpu / base_cpu - 1) * 100:>8.1f}%")
    rps, cpu = med["gateway+otel"]
    loss = (1 - rps / base_rps) * 100
    print(f"telemetry cost (gateway+otel, the default sampler): {loss:.1f}% of gateway throughput, "
          f"{(cpu / base_cpu - 1) * 100:.1f}% more CPU per request (target < 10%: {'met' if loss < 10 else 'NOT met'})")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=2000, help="requests per run at concurrency")
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--serial", type=int, default=500, help="requests per run at concurrency 1")
    ap.add_argument("--rounds", type=int, default=5, help="alternating rounds of the telemetry-cost runs")
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
        wait_up(f"http://127.0.0.1:{pport}/docs")
        base_env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
        base_env.update({"GATEWAY_JWT_SECRET": SECRET, "VASTAI_BASE_URL": upstream, "VASTAI_MODEL": MODEL,
                         "PYTHONPATH": str(REPO)})
        serve = [PY, "-m", "uvicorn", "--factory", "gateway.app:create_app", "--host", "127.0.0.1",
                 "--log-level", "warning", "--app-dir", str(REPO)]
        otel = {"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{rport}", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}
        gateways = {  # name -> extra environment; each gateway has its own ledger file
            "gateway": {"CANONIC_TELEMETRY_ENABLED": "false"},
            "gateway+otel": otel,
            "gateway+all": {**otel, "OTEL_TRACES_SAMPLER": "always_on"},
            "gateway+otel@0.1": {**otel, "OTEL_TRACES_SAMPLER_ARG": "0.1"},  # the cost section only
        }
        main_gateways = [name for name in gateways if "@" not in name]
        ports: dict[str, int] = {}
        gprocs: dict[str, subprocess.Popen] = {}
        startup: dict[str, float] = {}
        for name, extra in gateways.items():
            port = free_port()
            env = {**base_env, **extra, "CANONIC_LEDGER_PATH": f"{tmp}/{name}/decisions.jsonl"}
            t0 = time.perf_counter()
            gprocs[name] = spawn(serve + ["--port", str(port)], env)
            wait_up(f"http://127.0.0.1:{port}/healthz")
            startup[name] = time.perf_counter() - t0
            ports[name] = port
        idle = {name: rss_mb(p.pid) for name, p in gprocs.items()}

        token = mint_token(Settings(jwt_secret=SECRET), "bench", ["inference"], 3600)
        plain = {"content-type": "application/json"}
        authed = {**plain, "authorization": f"Bearer {token}"}
        targets = [("direct", upstream, plain), ("passthrough", f"http://127.0.0.1:{pport}/v1", plain)]
        targets += [(name, f"http://127.0.0.1:{ports[name]}/v1", authed) for name in main_gateways]

        def body(stream: bool) -> bytes:
            payload = {"model": MODEL, "messages": [{"role": "user", "content": "Is Santa real?"}], "max_tokens": 16}
            if stream:
                payload["stream"] = True
            return json.dumps(payload).encode()

        runs = [
            (f"non-stream c={args.concurrency}", False, args.requests, args.concurrency),
            ("non-stream c=1", False, args.serial, 1),
            (f"stream c={min(16, args.concurrency)}", True, args.requests // 2, min(16, args.concurrency)),
            ("stream c=1", True, args.serial, 1),
        ]
        results: dict[str, dict[str, dict]] = {}
        for label, stream, n, conc in runs:
            results[label] = {}
            for name, url, headers in targets:
                url = url + "/chat/completions"
                asyncio.run(load(url, headers, body(stream), min(100, n), conc))  # warm-up
                results[label][name] = asyncio.run(load(url, headers, body(stream), n, conc))
        after = {name: rss_mb(p.pid) for name, p in gprocs.items()}

        for label, rows in results.items():
            print(f"\nchat completions, {label}")
            print(f"{'target':<14}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'ttfb ms':>9}{'errors':>8}"
                  f"{'vs direct':>11}{'vs bare':>9}")
            for name, r in rows.items():
                print(f"{name:<14}{r['rps']:>9.0f}{r['p50_ms']:>9.2f}{r['p99_ms']:>9.2f}{r['ttfb_p50_ms']:>9.2f}"
                      f"{r['errors']:>8}{r['rps'] / rows['direct']['rps']:>11.2f}"
                      f"{r['rps'] / rows['passthrough']['rps']:>9.2f}")
        serial = results["non-stream c=1"]
        stream_rows = results["stream c=1"]
        print("\nagainst the targets (reference/openai-vllm.md 4.3), gateway+otel = auth + policy + ledger + telemetry:")
        for name in main_gateways:
            added50 = serial[name]["p50_ms"] - serial["direct"]["p50_ms"]
            added99 = serial[name]["p99_ms"] - serial["direct"]["p99_ms"]
            ttfb = stream_rows[name]["ttfb_p50_ms"] - stream_rows["direct"]["ttfb_p50_ms"]
            rps = results[runs[0][0]][name]["rps"]
            print(f"  {name:<13} added p50 {added50:5.2f} ms (<= 1.5), p99 {added99:5.2f} ms (<= 5), "
                  f"TTFT at c=1 +{ttfb:5.2f} ms (<= 2), {rps:5.0f} req/s at c={args.concurrency} (>= 700), "
                  f"RSS {idle[name]:.0f} -> {after[name]:.0f} MB (<= 100), startup {startup[name]:.2f} s (<= 2)")
        telemetry_cost(ports, {name: p.pid for name, p in gprocs.items()}, authed, body(False), args)
    finally:
        for p in procs + list(locals().get("gprocs", {}).values()):
            p.terminate()
        for p in procs + list(locals().get("gprocs", {}).values()):
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
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()

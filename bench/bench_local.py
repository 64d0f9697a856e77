"""The local model (llama.cpp + Gemma 3 270M) direct versus through the gateway, side by side.

    .venv/bin/python bench/bench_local.py [--rounds 8] [--tokens 64]

1. Starts ``canonic serve`` (embedded local default on) in a fresh directory and times how long it
   takes until the first chat completion through the gateway is answered (a warm install: the
   llama.cpp wheel is built and the model file assembled).
2. Interleaves streamed chat completions, the same prompt at temperature 0, straight to the
   llama.cpp server and through the gateway; reports median time to first token and tokens/s
   (content chunks over the time from the first to the last chunk) and their ratios.
3. Stops the gateway with SIGINT and checks that no llama.cpp server is left behind.
Targets (issue 9): under 2% loss in tokens/s, under 5 ms added to time to first token.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
CANONIC = str(Path(sys.executable).with_name("canonic"))
SECRET = "bench-local-secret-0123456789abcdef"
MODEL = "gemma-3-270m"
PROMPT = "Write a short paragraph about the sea."


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def token() -> str:
    sys.path.insert(0, str(REPO))
    from gateway.auth import mint_token
    from gateway.settings import Settings

    return mint_token(Settings(jwt_secret=SECRET), "bench", ["inference", "compute:read"], 3600)


def stream_once(client: httpx.Client, url: str, headers: dict, max_tokens: int) -> tuple[float, float, int]:
    """(ttft_s, tokens_per_s, tokens) of one streamed chat completion."""
    body = {"model": MODEL, "messages": [{"role": "user", "content": PROMPT}], "max_tokens": max_tokens,
            "temperature": 0, "seed": 1, "stream": True}
    started = time.perf_counter()
    first = last = None
    n = 0
    with client.stream("POST", url + "/chat/completions", json=body, headers=headers) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            choices = chunk.get("choices") or []
            if choices and (choices[0].get("delta") or {}).get("content"):
                now = time.perf_counter()
                first = first or now
                last = now
                n += 1
    if first is None or n < 2:
        raise RuntimeError(f"stream from {url} produced {n} content chunks")
    return first - started, (n - 1) / (last - first), n


def live_servers(root: Path) -> list[int]:
    base = str(root.resolve())
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.readlink(entry / "cwd").startswith(base + "/"):
                    pids.append(int(entry.name))
            except OSError:
                pass
    return pids


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=64)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-local-"))
    port = free_port()
    env = {**os.environ, "GATEWAY_JWT_SECRET": SECRET, "CANONIC_LEDGER_PATH": str(root / "ledger.jsonl"),
           "CANONIC_TRACKING_DIR": str(root / "config"), "CANONIC_INSTANCES_DIR": str(root / "instances"),
           "LOCAL_TOKENS_MAX": "1024", "CANONIC_TELEMETRY_ENABLED": "false"}
    gateway = f"http://127.0.0.1:{port}/v1"
    auth = {"Authorization": f"Bearer {token()}"}
    started = time.perf_counter()
    serve = subprocess.Popen([CANONIC, "serve", "--port", str(port), "--scope", str(REPO), "--log-level", "warning"],
                             env=env, cwd=root, stdout=subprocess.DEVNULL, stderr=open(root / "serve.log", "wb"))
    try:
        with httpx.Client(timeout=60, trust_env=False) as client:
            ready_s, last = None, "no answer"
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                try:
                    r = client.post(gateway + "/chat/completions", headers=auth, json={
                        "model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1})
                    if r.status_code == 200:
                        ready_s = time.perf_counter() - started
                        break
                    last = f"HTTP {r.status_code}: {r.text[:300]}"
                except httpx.TransportError as exc:
                    last = type(exc).__name__
                time.sleep(0.05)
            if ready_s is None:
                print(f"the gateway never answered ({last}); see", root / "serve.log")
                return 1
            record = json.loads(next((root / "instances").glob("*/instance.json")).read_text())
            direct = f"http://127.0.0.1:{record['port']}/v1"
            for url, headers in ((direct, {}), (gateway, auth)):  # warm both paths
                stream_once(client, url, headers, 8)
            rows: dict[str, list[tuple[float, float, int]]] = {"direct": [], "gateway": []}
            for i in range(args.rounds):
                order = [("direct", direct, {}), ("gateway", gateway, auth)]
                for name, url, headers in order if i % 2 == 0 else reversed(order):
                    rows[name].append(stream_once(client, url, headers, args.tokens))
    finally:
        serve.send_signal(signal.SIGINT)
        try:
            serve.wait(timeout=60)
        except subprocess.TimeoutExpired:
            serve.kill()
    time.sleep(0.5)
    left = live_servers(root)
    ttft = {k: statistics.median(r[0] for r in v) * 1000 for k, v in rows.items()}
    tps = {k: statistics.median(r[1] for r in v) for k, v in rows.items()}
    tokens = {k: statistics.median(r[2] for r in v) for k, v in rows.items()}
    print(f"canonic serve -> first answered request (warm install): {ready_s:.2f} s")
    print(f"rounds {args.rounds}, max_tokens {args.tokens}, median tokens per stream "
          f"direct {tokens['direct']:.0f} / gateway {tokens['gateway']:.0f}")
    print(f"time to first token  direct {ttft['direct']:8.1f} ms   gateway {ttft['gateway']:8.1f} ms   "
          f"added {ttft['gateway'] - ttft['direct']:+.1f} ms (target < 5 ms)")
    loss = (1 - tps["gateway"] / tps["direct"]) * 100
    print(f"tokens/s             direct {tps['direct']:8.1f}      gateway {tps['gateway']:8.1f}      "
          f"ratio {tps['gateway'] / tps['direct']:.3f}, loss {loss:+.1f}% (target < 2%)")
    print(f"llama.cpp servers left after SIGINT: {len(left)}")
    return 0 if not left else 1


if __name__ == "__main__":
    raise SystemExit(main())

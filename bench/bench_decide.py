"""Time one Policy.decide for chat facts and for provision facts (target: under 20 microseconds).

Run: .venv/bin/python bench/bench_decide.py [--repeat N]

The Policy is compiled from hand-built IR shaped like the VASTAI scope's bindings plus an
environment with the shipped defaults and two remote providers on loopback addresses.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from governance.decision import Facts  # noqa: E402
from governance.ir import Binding, Constraint, Scope  # noqa: E402
from governance.policy import Policy  # noqa: E402

BINDINGS = [
    ("VASTAI_API_KEY", "secret", True, True),
    ("VASTAI_BASE_URL", "url", True, False),
    ("VASTAI_MODEL", "string", True, False),
    ("VASTAI_KILOCODE_BASE_URL", "url", True, False),
    ("VASTAI_KILOCODE_MODEL", "string", True, False),
    ("VASTAI_TOKENS_MAX", "int", True, False),
    ("VASTAI_TIMEOUT_MS", "int", False, False),
    ("VASTAI_TRIES", "int", False, False),
    ("VASTAI_RETRY_DELAY_MS", "int", False, False),
    ("FALLBACK_PROVIDER", "string", True, False),
    ("TOKENS_MIN", "int", False, False),
    ("TOKENS_MAX", "int", False, False),
    ("MAX_TOKENS", "int", False, False),
    ("ALLOWED_MODELS", "csv", True, False),
    ("VASTAI_ALLOWED_GPUS", "csv", True, False),
    ("VASTAI_MAX_DPH", "decimal", True, False),
    ("VASTAI_MAX_INSTANCES", "int", True, False),
    ("VASTAI_ALLOWED_IMAGES", "csv", True, False),
    ("LOCAL_MODEL", "string", False, False),
]
ENV = {
    "TOKENS_MIN": "1",
    "TOKENS_MAX": "4096",
    "MAX_TOKENS": "512",
    "VASTAI_TIMEOUT_MS": "60000",
    "VASTAI_TRIES": "3",
    "VASTAI_RETRY_DELAY_MS": "250",
    "VASTAI_API_KEY": "bench-not-a-real-key",
    "VASTAI_BASE_URL": "http://127.0.0.1:18001/v1",
    "VASTAI_MODEL": "Qwen/Qwen2.5-7B-Instruct",
    "VASTAI_KILOCODE_BASE_URL": "http://127.0.0.1:18002/v1",
    "VASTAI_KILOCODE_MODEL": "deepseek-ai/deepseek-coder-6.7b-instruct",
    "FALLBACK_PROVIDER": "LOCAL",
    "LOCAL_MODEL": "gemma-3-270m",
    "LOCAL_TOKENS_MAX": "512",
    "VASTAI_ALLOWED_GPUS": "RTX 4090,RTX 3090",
    "VASTAI_MAX_DPH": "0.60",
    "VASTAI_MAX_INSTANCES": "2",
    "VASTAI_ALLOWED_IMAGES": "vllm/vllm-openai:v0.6.3",
}


def build_policy() -> Policy:
    magic = Scope(name="MAGIC", dir="canon/MAGIC")
    magic.constraints.append(Constraint("MAGIC", "canon/MAGIC/CANON.md", 12, "MUST", "Fail closed", kind="fail_closed"))
    vastai = Scope(name="VASTAI", dir="", inherits="MAGIC")
    for i, (name, kind, optional, secret) in enumerate(BINDINGS):
        vastai.bindings.append(Binding(name, secret, kind, optional, "VASTAI.md", 40 + i))
    return Policy.compile([magic, vastai], ENV, sources_digest="sha256:bench")


def per_call_us(policy: Policy, facts: Facts, n: int, repeat: int) -> tuple[float, float]:
    decide = policy.decide
    runs = []
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(n):
            decide(facts)
        runs.append((time.perf_counter() - start) / n * 1e6)
    return min(runs), statistics.median(runs)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20_000, help="calls per run")
    parser.add_argument("--repeat", type=int, default=5, help="runs; best and median are printed")
    args = parser.parse_args()

    start = time.perf_counter()
    policy = build_policy()
    compile_us = (time.perf_counter() - start) * 1e6
    cases = {
        "chat (allow, clamp)": Facts("inference.chat", principal="bench", model="Qwen/Qwen2.5-7B-Instruct",
                                     max_tokens=100_000),
        "chat (deny, not bound)": Facts("inference.chat", principal="bench", model="gpt-4"),
        "provision (allow)": Facts("compute.provision", principal="bench", provider="vast", gpu="RTX 4090",
                                   template="vllm/vllm-openai:v0.6.3", cost_per_hour=0.45, budget=0.5,
                                   instance_count=1),
        "provision (deny, price)": Facts("compute.provision", principal="bench", provider="vast", gpu="RTX 4090",
                                         template="vllm/vllm-openai:v0.6.3", cost_per_hour=0.75, instance_count=0),
    }
    for facts in cases.values():  # sanity: the bench measures what it says
        policy.decide(facts)
    assert policy.decide(cases["chat (allow, clamp)"]).allow
    assert policy.decide(cases["provision (allow)"]).allow
    assert not policy.decide(cases["provision (deny, price)"]).allow

    print(f"Policy.compile: {compile_us:.0f} us (once at startup)")
    print(f"{'case':<26} {'best us':>9} {'median us':>10}  target < 20 us")
    worst = 0.0
    for name, facts in cases.items():
        best, median = per_call_us(policy, facts, args.n, args.repeat)
        worst = max(worst, median)
        print(f"{name:<26} {best:>9.2f} {median:>10.2f}")
    print("PASS" if worst < 20 else "OVER TARGET", f"(worst median {worst:.2f} us)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

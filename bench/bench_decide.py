"""Time one Policy.decide for chat facts and for provision facts (target: under 20 microseconds).

Run: .venv/bin/python bench/bench_decide.py [--repeat N]

The Policy is the one the gateway runs: this repository's scope documents compiled with the
shipped defaults plus two remote providers on loopback addresses and provisioning caps.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gateway.governance_state import load_governance  # noqa: E402
from gateway.settings import Settings  # noqa: E402
from governance.decision import Facts  # noqa: E402
from governance.policy import Policy  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
# Beyond the shipped defaults (gateway/settings.py): two remote providers on loopback addresses,
# a fallback, and provisioning caps, so every kind of check in decide() has something to check.
ENV = {
    "VASTAI_API_KEY": "bench-not-a-real-key",
    "VASTAI_BASE_URL": "http://127.0.0.1:18001/v1",
    "VASTAI_MODEL": "Qwen/Qwen2.5-7B-Instruct",
    "VASTAI_KILOCODE_BASE_URL": "http://127.0.0.1:18002/v1",
    "VASTAI_KILOCODE_MODEL": "deepseek-ai/deepseek-coder-6.7b-instruct",
    "FALLBACK_PROVIDER": "LOCAL",
    "VASTAI_ALLOWED_GPUS": "RTX 4090,RTX 3090",
    "VASTAI_MAX_DPH": "0.60",
    "VASTAI_MAX_INSTANCES": "2",
    "VASTAI_ALLOWED_IMAGES": "vllm/vllm-openai:v0.6.3",
}


def build_policy() -> Policy:
    """The Policy the gateway itself would run: this repository's scope documents, compiled."""
    state = load_governance(Settings(scope_dir=REPO, bindings_env=ENV))
    if state.load_error or not state.result or not state.result.valid:
        raise SystemExit(f"the scope did not compile: {state.load_error or 'see canonic validate .'}")
    return state.policy


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

    print(f"read + compile the scope + Policy.compile: {compile_us / 1000:.1f} ms (once at startup)")
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

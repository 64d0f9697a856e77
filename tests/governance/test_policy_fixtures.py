"""Hand-built IR for the Policy tests (no dependency on the parser)."""

from __future__ import annotations

from governance.ir import Binding, Constraint, Scope

# Shipped defaults, spelled out here so the tests do not depend on gateway settings.
DEFAULTS = {
    "TOKENS_MIN": "1",
    "TOKENS_MAX": "4096",
    "MAX_TOKENS": "512",
    "VASTAI_TIMEOUT_MS": "60000",
    "VASTAI_TRIES": "3",
    "VASTAI_RETRY_DELAY_MS": "250",
    "LOCAL_MODEL": "gemma-3-270m",
    "LOCAL_N_CTX": "2048",
    "LOCAL_TOKENS_MAX": "512",
    "LOCAL_ALLOWED_GPUS": "cpu",
    "LOCAL_MAX_DPH": "0",
    "LOCAL_MAX_INSTANCES": "1",
}

# name, type, optional, secret
SPEC_BINDINGS = [
    ("VASTAI_API_KEY", "secret", True, True),
    ("VASTAI_BASE_URL", "url", True, False),
    ("VASTAI_MODEL", "string", True, False),
    ("VASTAI_KILOCODE_BASE_URL", "url", True, False),
    ("VASTAI_KILOCODE_MODEL", "string", True, False),
    ("VASTAI_TOKENS_MAX", "int", True, False),
    ("VASTAI_TIMEOUT_MS", "int", False, False),
    ("VASTAI_TRIES", "int", False, False),
    ("VASTAI_RETRY_DELAY_MS", "int", False, False),
    ("VASTAI_INSTANCE_ID", "string", True, False),
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
    ("LOCAL_N_CTX", "int", False, False),
    ("LOCAL_TOKENS_MAX", "int", True, False),
    ("LOCAL_ALLOWED_GPUS", "csv", True, False),
    ("LOCAL_MAX_DPH", "decimal", True, False),
    ("LOCAL_MAX_INSTANCES", "int", True, False),
]

SPEC_FIRST_LINE = 40
FAIL_CLOSED_ID = "canon/MAGIC/CANON.md:L12"


def line_of(name: str) -> str:
    names = [b[0] for b in SPEC_BINDINGS]
    return f"VASTAI.md:L{SPEC_FIRST_LINE + names.index(name)}"


def chain(*, extra: list[Binding] | None = None, fail_closed: bool = True) -> list[Scope]:
    magic = Scope(name="MAGIC", dir="canon/MAGIC")
    if fail_closed:
        magic.constraints.append(
            Constraint("MAGIC", "canon/MAGIC/CANON.md", 12, "MUST", "Fail closed on validation failure",
                       kind="fail_closed")
        )
    magic.constraints.append(Constraint("MAGIC", "canon/MAGIC/CANON.md", 13, "MUST", "Route through gateway",
                                        kind="route_declared"))
    vastai = Scope(name="VASTAI", dir="", inherits="MAGIC")
    for i, (name, kind, optional, secret) in enumerate(SPEC_BINDINGS):
        vastai.bindings.append(Binding(name, secret, kind, optional, "VASTAI.md", SPEC_FIRST_LINE + i))
    vastai.bindings.extend(extra or [])
    return [magic, vastai]


def env(**overrides: str) -> dict[str, str]:
    out = dict(DEFAULTS)
    for key, value in overrides.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = value
    return out


REMOTE = {
    "VASTAI_BASE_URL": "http://127.0.0.1:18001/v1",
    "VASTAI_MODEL": "Qwen/Qwen2.5-7B-Instruct",
    "VASTAI_API_KEY": "sk-test-secret-value-123",
    "VASTAI_KILOCODE_BASE_URL": "http://127.0.0.1:18002/v1",
    "VASTAI_KILOCODE_MODEL": "deepseek-ai/deepseek-coder-6.7b-instruct",
}

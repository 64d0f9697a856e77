"""Settings: every configuration value of the gateway, typed, built once and passed down."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

# Values the scope's runtime bindings take when the environment does not set them. The
# documents declare the names and kinds; these defaults make a fresh checkout work.
BINDING_DEFAULTS: dict[str, str] = {
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
    # vLLM's sampling and decoding extras beyond the OpenAI API (reference/openai-vllm.md)
    "PASSTHROUGH_FIELDS": (
        "top_k,min_p,repetition_penalty,length_penalty,min_tokens,stop_token_ids,ignore_eos,"
        "include_stop_str_in_output,skip_special_tokens,spaces_between_special_tokens,"
        "truncate_prompt_tokens,guided_json,guided_regex,guided_choice,guided_grammar,"
        "chat_template_kwargs,add_generation_prompt,continue_final_message,echo,priority"
    ),
}


def _environment() -> dict[str, str]:
    return dict(os.environ)


class Settings(BaseSettings):
    """Gateway settings. Environment variables use the ``CANONIC_`` prefix unless noted."""

    model_config = SettingsConfigDict(env_prefix="CANONIC_", extra="ignore", populate_by_name=True)

    host: str = "127.0.0.1"
    port: int = 8080
    scope_dir: Path = Path(".")
    # Where the parent scopes (canon/MAGIC, canon/MAGIC/SERVICES) live, relative to scope_dir.
    canon_dir: str = "canon"

    # The environment the scope's runtime bindings are read from (snapshotted once).
    bindings_env: dict[str, str] = Field(default_factory=_environment, exclude=True, repr=False)

    # Auth
    jwt_secret: str | None = Field(
        default=None, repr=False, validation_alias=AliasChoices("GATEWAY_JWT_SECRET", "CANONIC_JWT_SECRET")
    )
    jwt_public_key: str | None = Field(
        default=None, validation_alias=AliasChoices("GATEWAY_JWT_PUBLIC_KEY", "CANONIC_JWT_PUBLIC_KEY")
    )
    jwt_algorithms: list[str] = ["HS256"]
    jwt_audience: str = "canonic-gateway"
    jwt_issuer: str = "canonic"
    jwt_leeway_s: int = 30
    validate_requires_auth: bool = False

    # Request limits
    max_body_bytes: int = 1_048_576
    validate_max_bytes: int = 2_097_152

    # Decision ledger
    ledger_path: Path = Path("var/ledger/decisions.jsonl")
    ledger_max_bytes: int = 64 * 1024 * 1024
    ledger_queue_size: int = 10_000
    ledger_max_lag_ms: int = 200
    ledger_fsync: bool = False

    # Telemetry
    telemetry_enabled: bool = True
    telemetry_capture_content: bool = False
    # How long shutdown may spend flushing spans and metrics to the collector (then gives up,
    # logged); 0 does not wait at all.
    telemetry_flush_timeout_s: float = Field(default=5.0, ge=0)

    # Garbage collection while serving: allocations between young-generation collections
    # (CPython's default is 700). A request allocates and frees thousands of objects, so the
    # default collects several times per request and re-walks every in-flight request's objects
    # each time; 10,000 measured about 10% more requests/s (bench/bench_inference.py). 0 keeps
    # the interpreter's threshold. Restored when the app shuts down.
    gc_gen0_threshold: int = Field(default=10_000, ge=0)

    # Compute
    tracking_dir: Path = Path("config")
    instances_dir: Path = Path("var/instances")
    # Spin up the local model as the embedded default upstream. `canonic serve` turns this on;
    # create_app(Settings()) in tests and embedding code leaves it off unless asked.
    embedded_local: bool = False
    spinup_timeout_s: float = 300.0
    progress_interval_s: float = 60.0
    teardown_timeout_s: float = 120.0
    health_gate_timeout_s: float = 120.0
    pull_timeout_s: float = 600.0

    def binding_values(self) -> dict[str, str]:
        """The bindings' values: shipped defaults overlaid by the environment."""
        return {**BINDING_DEFAULTS, **self.bindings_env}

    def resolve(self, path: Path) -> Path:
        """Resolve a relative configured path against the scope directory."""
        return path if path.is_absolute() else self.scope_dir / path

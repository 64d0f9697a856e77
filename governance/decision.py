"""Facts in, Decision out: the values that cross the line between the gateway and the Policy."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# The closed set of actions the Policy knows. Anything else is denied.
ACTIONS = frozenset(
    {
        "inference.chat",  # POST /v1/chat/completions
        "inference.completion",  # POST /v1/completions
        "inference.models",  # GET /v1/models
        "compute.offers",  # GET /v1/compute/offers
        "compute.provision",  # POST /v1/compute/instances
        "compute.read",  # GET /v1/compute/instances[/{id}[/ssh]]
        "compute.teardown",  # DELETE /v1/compute/instances/{id} and teardown-all
        "governance.validate",  # POST /validate
        "governance.read",  # GET /governance
    }
)


@dataclass(frozen=True)
class Facts:
    """What the gateway knows about one request. Missing facts are None; the Policy denies on
    anything malformed or missing that the action needs."""

    action: str
    principal: str | None = None
    model: str | None = None
    max_tokens: Any = None  # whatever the caller sent; validated by the Policy
    provider: str | None = None  # compute: provider name (local, vast, basilica)
    gpu: str | None = None
    cost_per_hour: Any = None  # price of the offer actually chosen (USD/h)
    budget: Any = None  # the caller's --budget cap (USD/h); tightens, never loosens
    instance_count: Any = None  # running + pending instances before this one
    template: str | None = None  # compute: model template / image
    # inference: request fields beyond the OpenAI API (vLLM extras); passed on only when allowed
    extra_fields: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Decision:
    id: str
    allow: bool
    action: str
    reason_code: str  # "allowed" or a deny code: model_not_allowed, tokens_invalid, ...
    reasons: tuple[str, ...]
    rule_ids: tuple[str, ...]  # FILE:L<line> of the binding and constraint lines used
    obligations: dict[str, Any] = field(default_factory=dict)  # e.g. {"max_tokens": 256}
    policy_revision: str = ""


@dataclass(frozen=True)
class ProviderBinding:
    """An inference provider as the bindings describe it. ``base_url`` is None for providers
    whose upstreams are compute instances (LOCAL) and are registered at run time."""

    name: str  # VASTAI, KILOCODE, LOCAL, or the FALLBACK_PROVIDER name
    prefix: str  # env prefix: VASTAI, VASTAI_KILOCODE, LOCAL, <NAME>
    model: str
    base_url: str | None = None
    api_key: str | None = field(default=None, repr=False)  # secret: never logged
    timeout_ms: int = 60_000
    tries: int = 3
    retry_delay_ms: int = 250
    tokens_min: int = 1
    tokens_max: int = 4096
    tokens_default: int = 512
    rule_ids: tuple[str, ...] = ()

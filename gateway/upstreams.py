"""The registry of routable upstreams per provider: static ones from the Policy's bindings that
carry a base URL, plus compute instances registered at run time.

A base URL may be given with or without its ``/v1`` suffix; the registry keeps the API root
(``.../v1``) and the server root (for ``/health``). ``max_model_len`` is learned lazily from each
upstream's own ``/v1/models`` (cached; the forwarder reads it in the background).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from gateway.circuit import Circuit


def _roots(base_url: str) -> tuple[str, str]:
    url = base_url.rstrip("/")
    if url.endswith("/v1"):
        return url, url[: -len("/v1")]
    return url + "/v1", url


@dataclass
class Upstream:
    provider: str
    model: str
    base_url: str  # the API root, ending in /v1
    server_url: str  # the server root, for the health probe
    instance_id: str
    # The half-open probe's path on the server root: vLLM answers /health; llama.cpp's server has
    # none, so compute instances probe /v1/models, which their health gate checked.
    health_path: str = "/health"
    api_key: str | None = field(default=None, repr=False)
    max_model_len: int | None = None
    learned: bool = False  # max_model_len came from the upstream's /v1/models (not declared)
    circuit: Circuit = field(default_factory=Circuit)
    learning: Any = field(default=None, repr=False, compare=False)  # the /v1/models read in flight
    learn_after: float = field(default=0.0, repr=False, compare=False)  # loop time before which not to retry it

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}

    def snapshot(self) -> dict[str, Any]:
        return {
            "provider": self.provider,
            "model": self.model,
            "instance_id": self.instance_id,
            "max_model_len": self.max_model_len,
            "circuit": self.circuit.snapshot(),
        }


class UpstreamRegistry:
    """Upstreams by provider name. Static upstreams come from ``policy.providers``; compute
    instances come and go through ``register`` / ``unregister``."""

    def __init__(self, policy: Any | None) -> None:
        self.policy = policy
        self._by_provider: dict[str, list[Upstream]] = {}
        self._by_id: dict[str, Upstream] = {}
        self._turn = itertools.count()
        providers: Mapping[str, Any] = getattr(policy, "providers", None) or {}
        for name, binding in providers.items():
            if binding.base_url:
                api, server = _roots(binding.base_url)
                self._add(
                    Upstream(
                        provider=name,
                        model=binding.model,
                        base_url=api,
                        server_url=server,
                        instance_id=f"static:{name}",
                        api_key=binding.api_key,
                    )
                )

    def _add(self, upstream: Upstream) -> Upstream:
        self.unregister(upstream.instance_id)
        self._by_id[upstream.instance_id] = upstream
        self._by_provider.setdefault(upstream.provider, []).append(upstream)
        return upstream

    def register(
        self,
        *,
        provider: str,
        model: str,
        base_url: str,
        instance_id: str,
        max_model_len: int | None = None,
        api_key: str | None = None,
        health_path: str = "/health",
    ) -> Upstream:
        """Make a (health-gated) compute instance routable for ``provider``'s ``model``."""
        if not instance_id:
            raise ValueError("instance_id must be non-empty")
        if not base_url.startswith(("http://", "https://")):
            raise ValueError("base_url must be an http(s) URL")
        if not health_path.startswith("/"):
            raise ValueError("health_path must start with /")
        api, server = _roots(base_url)
        return self._add(
            Upstream(
                provider=provider,
                model=model,
                base_url=api,
                server_url=server,
                instance_id=instance_id,
                api_key=api_key,
                max_model_len=max_model_len,
                health_path=health_path,
            )
        )

    def unregister(self, instance_id: str) -> bool:
        upstream = self._by_id.pop(instance_id, None)
        if upstream is None:
            return False
        group = self._by_provider.get(upstream.provider, [])
        self._by_provider[upstream.provider] = [u for u in group if u.instance_id != instance_id]
        return True

    def for_provider(self, provider: str | None) -> list[Upstream]:
        """The provider's upstreams, rotated so load spreads across instances."""
        group = self._by_provider.get(provider or "", [])
        if len(group) <= 1:
            return list(group)
        k = next(self._turn) % len(group)
        return group[k:] + group[:k]

    def all(self) -> list[Upstream]:
        return list(self._by_id.values())

    def readiness(self) -> dict[str, Any]:
        policy = self.policy
        missing = tuple(getattr(policy, "missing", ()) or ())
        unbound = tuple(getattr(policy, "unbound", ()) or ())
        parts = []
        if policy is None:
            parts.append("no policy loaded")
        if missing:
            parts.append("missing bindings: " + ", ".join(missing))
        if unbound:
            parts.append("unbound: " + ", ".join(unbound))
        routable = sorted({u.provider for u in self._by_id.values()})
        if not routable:
            parts.append("no inference provider is bound")
        ok = policy is not None and not missing and bool(routable)
        detail = "; ".join(parts) if parts else "routable: " + ", ".join(routable)
        return {"ok": ok, "detail": detail}


async def learn_max_model_len(session: aiohttp.ClientSession, upstream: Upstream,
                              timeout_s: float) -> tuple[int | None, str | None]:
    """(``max_model_len`` of ``upstream.model`` from the upstream's own /v1/models, failure): the
    failure is "refused", "timeout" or "connect" when the upstream could not be read (the caller
    feeds it to the circuit), None when it answered (even without a usable value)."""
    if upstream.max_model_len is not None:
        return upstream.max_model_len, None
    try:
        async with session.get(
            upstream.base_url + "/models",
            headers=upstream.headers(),
            timeout=aiohttp.ClientTimeout(total=timeout_s),
        ) as resp:
            if resp.status != 200:
                return None, None
            data = await resp.json(content_type=None)
    except aiohttp.ClientConnectorError as exc:
        return None, "refused" if isinstance(exc.os_error, ConnectionRefusedError) else "connect"
    except TimeoutError:
        return None, "timeout"
    except (aiohttp.ClientError, ValueError):
        return None, None
    for card in data.get("data", []) if isinstance(data, dict) else []:
        if isinstance(card, dict) and card.get("id") == upstream.model:
            value = card.get("max_model_len")
            if isinstance(value, int) and value > 0:
                upstream.max_model_len, upstream.learned = value, True
                return value, None
    return None, None

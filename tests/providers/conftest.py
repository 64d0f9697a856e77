"""Fixtures for the provider contract suite: one parametrized case per adapter, always cleaned up."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from providers.errors import ProviderError
from providers.lifecycle import Deadlines
from providers.managed import ManagedProvider
from tests.procs import kill_groups
from tests.providers.cases import CASES, TEST_DEADLINES, ProviderCase


@pytest.fixture(params=list(CASES.values()), ids=list(CASES))
def case(request: pytest.FixtureRequest) -> ProviderCase:
    return request.param


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path


def _is_local_server(pid: int) -> bool:
    """Only a llama_cpp.server process is ever signalled (a recorded pid may have been reused)."""
    try:
        return b"llama_cpp.server" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def _kill_leftovers(case: ProviderCase, root: Path) -> list[int]:
    return kill_groups(lambda: [pid for pid in case.leftovers(root) if _is_local_server(pid)])


@pytest.fixture
def make_provider(case: ProviderCase, root: Path) -> Iterator[Callable[..., ManagedProvider]]:
    """Build providers on the case's root; at the end tear down everything they started."""
    built: list[ManagedProvider] = []

    def build(deadlines: Deadlines = TEST_DEADLINES, slow_start_s: float = 0.0, **kw) -> ManagedProvider:
        provider = case.make(root, deadlines, slow_start_s, **kw)
        if not provider.available():
            pytest.skip(f"{case.name} is unavailable here: {provider.available().reason}")
        built.append(provider)
        return provider

    yield build
    for provider in built:
        try:
            provider.teardown_all()
        except ProviderError:
            pass
    _kill_leftovers(case, root)


@pytest.fixture
def provider(make_provider: Callable[..., ManagedProvider]) -> ManagedProvider:
    return make_provider()


@pytest.fixture
def local(make_provider, case):
    """``make_provider`` for the local adapter's own tests (skipped for the other cases)."""
    if case.name != "local":
        pytest.skip("local adapter tests")
    return make_provider

"""The backend contract (anklume.backends.base.Backend) is what the real Incus backend and the
in-memory test double both offer: every method, with the contract's parameters."""

from __future__ import annotations

import inspect

import pytest

from anklume.backends.base import Backend
from anklume.backends.incus import IncusBackend
from tests.executor.memory import MemoryBackend

METHODS = sorted(name for name, value in vars(Backend).items() if inspect.isfunction(value) and not name.startswith("_"))


def test_the_contract_names_what_the_engine_uses():
    assert METHODS == ["acquire_lease", "apply", "instance_io", "read_live", "record", "refresh", "release_lease",
                       "resources"]


@pytest.mark.parametrize("impl", [IncusBackend, MemoryBackend])
@pytest.mark.parametrize("name", METHODS)
def test_implementations_keep_the_contract(impl, name):
    want = inspect.signature(getattr(Backend, name))
    have = inspect.signature(getattr(impl, name))
    assert [(p.name, p.kind) for p in have.parameters.values()] == \
        [(p.name, p.kind) for p in want.parameters.values()], f"{impl.__name__}.{name}{have} vs Backend.{name}{want}"


def test_both_have_an_endpoint():
    assert "endpoint" in Backend.__annotations__
    assert IncusBackend("/nonexistent.socket").endpoint == "/nonexistent.socket"
    assert MemoryBackend.endpoint == "memory"

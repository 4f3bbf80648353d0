"""Fixtures for the resolver tests (data: tests/support/recorded.py).

- `http_serve(files, status=..., delay=..., redirects=..., response_headers=...)` (tests/conftest.py):
  a started `tests.support.httpserve.StaticHTTPServer` on 127.0.0.1.
- `fake_incus(routes)`: a started `loopback.FakeIncus` on a unix socket in tmp_path.
- `fetcher`: a `Fetcher` with an empty cache in tmp_path and a short timeout.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

_REPO = Path(__file__).resolve().parents[2]
if str(_REPO) not in sys.path:  # `tests.support` importable however pytest is started
    sys.path.insert(0, str(_REPO))

from anklume.resolve.http import Fetcher  # noqa: E402

from .loopback import FakeIncus  # noqa: E402


@pytest.fixture
def fetcher(tmp_path: Path) -> Fetcher:
    return Fetcher(cache_dir=tmp_path / "cache", timeout=2.0)


@pytest.fixture
def fake_incus(tmp_path: Path) -> Iterator:
    servers: list[FakeIncus] = []

    def start(routes: dict[str, object]) -> FakeIncus:
        servers.append(FakeIncus(tmp_path / f"incus-{len(servers)}.socket", routes))
        return servers[-1]

    yield start
    for server in servers:
        server.stop()

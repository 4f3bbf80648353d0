"""Fixtures shared by every test folder."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.httpserve import StaticHTTPServer


@pytest.fixture
def http_serve() -> Iterator:
    """A factory of loopback HTTP servers (tests.support.httpserve), stopped after the test."""
    servers: list[StaticHTTPServer] = []

    def start(files=None, **options) -> StaticHTTPServer:
        server = StaticHTTPServer(files, **options)
        server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def bad_serve() -> Iterator:
    """A factory of misbehaving loopback HTTP servers (tests.support.badserve), stopped after the test."""
    from tests.support.badserve import BadServer

    servers: list[BadServer] = []

    def start(routes) -> BadServer:
        server = BadServer(routes)
        server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()

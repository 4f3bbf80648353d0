"""Fixtures shared by every test folder."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.httpserve import StaticHTTPServer


def _servers(make) -> Iterator:
    """A factory of servers made by ``make(*args, **options)``, each started, all stopped at the end."""
    servers = []

    def start(*args, **options):
        server = make(*args, **options)
        server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def http_serve() -> Iterator:
    """A factory of loopback HTTP servers (tests.support.httpserve): ``http_serve(files, **options)``,
    stopped after the test."""
    yield from _servers(StaticHTTPServer)


@pytest.fixture
def bad_serve() -> Iterator:
    """A factory of misbehaving loopback HTTP servers (tests.support.badserve): ``bad_serve(routes)``,
    stopped after the test."""
    from tests.support.badserve import BadServer

    yield from _servers(BadServer)

"""Fuzzing the network layer: a server misbehaving in any drawn way never hangs a fetch, never
makes it read past its limit, and always ends in a body or a clean SourceError naming the URL."""

from __future__ import annotations

import time

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from anklume.errors import SourceError
from anklume.resolve.http import Fetcher
from tests.resolve.test_http import assert_clean, cache_files
from tests.support.badserve import BadServer, Misbehaviour, redirect
from tests.support.bounded import within
from tests.support.hyp import examples

LIMIT = 64 * 1024
DEADLINE = 0.6
TIMEOUT = 0.4


@st.composite
def misbehaviours(draw) -> Misbehaviour:
    body = draw(st.binary(max_size=200) | st.just(b"x" * (LIMIT + 1)))
    length = draw(st.sampled_from(["auto", None, "less", "more", "huge", "garbage"]))
    content_length = {"auto": "auto", None: None, "less": max(len(body) - 3, 0), "more": len(body) + 50,
                      "huge": 1 << 40, "garbage": "12abc"}[length]
    status = draw(st.sampled_from([200, 200, 200, 204, 206, 301, 404, 500, 999]))
    headers = (("Location", draw(st.sampled_from(["/ok", "/a", "file:///etc/passwd", "", "ftp://x/"]))),) \
        if 300 <= status < 400 else ()
    return Misbehaviour(
        status=status, reason="Whatever", headers=headers, body=body, content_length=content_length,
        drip=draw(st.sampled_from([None, None, 0.02, 0.2])),
        drip_headers=draw(st.booleans()),
        endless=draw(st.booleans()),
        hold=draw(st.sampled_from([0.0, 0.0, 2.0])),
    )


@settings(max_examples=examples(60), deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(first=misbehaviours(), chain=st.sampled_from(["none", "to-ok", "loop", "long"]))
def test_a_misbehaving_server_ends_in_a_body_or_a_clean_error(first, chain, tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    routes = {"/a": first, "/ok": Misbehaviour(body=b"{}")}
    if chain == "to-ok":
        routes["/a"] = redirect("/r1")
        routes["/r1"] = redirect("/ok")
    elif chain == "loop":
        routes["/a"], routes["/b"] = redirect("/b"), redirect("/a")
    elif chain == "long":
        routes.update({"/a": redirect("/r0"), **{f"/r{i}": redirect(f"/r{i + 1}") for i in range(15)}})
    with BadServer(routes) as server:
        fetcher = Fetcher(cache_dir=cache, timeout=TIMEOUT, deadline=DEADLINE)
        url = server.url + "/a"
        start = time.monotonic()
        try:
            got = within(10, lambda: fetcher.fetch(url, key="https://example.org/k", source="src", limit=LIMIT))
        except SourceError as err:
            assert err.message.startswith("src: "), err.message
            assert server.url in err.message, err.message
            assert_clean(err.message)
            assert cache_files(cache) == []
        else:
            assert 0 < len(got.body) <= LIMIT
            assert len(cache_files(cache)) == 2
        # the deadline, plus one per-read timeout for the connect, plus scheduling slack
        assert time.monotonic() - start < DEADLINE + TIMEOUT + 1.5


@settings(max_examples=examples(40), deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(how=misbehaviours())
def test_asking_a_misbehaving_server_for_a_size_ends_in_a_size_or_a_clean_error(how, tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    with BadServer({"/a": how}) as server:
        fetcher = Fetcher(cache_dir=cache, timeout=TIMEOUT, deadline=DEADLINE)
        start = time.monotonic()
        try:
            size = within(10, lambda: fetcher.content_length(server.url + "/a", key="https://example.org/k",
                                                             source="src"))
        except SourceError as err:
            assert err.message.startswith("src: "), err.message
            assert server.url in err.message, err.message
            assert_clean(err.message)
            assert cache_files(cache) == []
        else:
            assert size > 0 and len(cache_files(cache)) == 2
        # a HEAD, then perhaps a GET of one byte: two fetches, each within its deadline
        assert time.monotonic() - start < 2 * (DEADLINE + TIMEOUT) + 1.5
        assert sum(server.sent) < 64 << 20  # no body is ever read for a size

"""Fetcher against servers that misbehave: drips, endless bodies, lying lengths, redirects.

Every case must end within a bound, with a one-line SourceError that names the URL, and leave
nothing in the cache.  The servers are tests/support/badserve.py (loopback only).
"""

from __future__ import annotations

import time

import pytest

from anklume.errors import SourceError
from anklume.resolve.http import Fetcher
from tests.resolve.test_http import assert_clean, cache_files
from tests.support.badserve import Misbehaviour, redirect
from tests.support.bounded import within

KEY = "https://example.org/streams/v1/images.json"
MiB = 1 << 20


def fetch(fetcher: Fetcher, url: str, **kw):
    return fetcher.fetch(url, key=KEY, source="simplestreams http://mirror", **kw)


def test_a_dripping_body_is_cut_at_the_total_deadline(bad_serve, tmp_path, monkeypatch):
    """One byte every 0.1 s never trips the per-read timeout; the deadline of the whole fetch ends it."""
    monkeypatch.setenv("ANKLUME_FETCH_DEADLINE", "1")
    server = bad_serve({"/x": Misbehaviour(body=b"{" + b" " * 58 + b"}", drip=0.1)})
    fetcher = Fetcher(cache_dir=tmp_path, timeout=2)
    start = time.monotonic()
    with pytest.raises(SourceError) as err:
        within(4, lambda: fetch(fetcher, server.url + "/x"))
    assert time.monotonic() - start < 3
    message = err.value.message
    assert message.startswith(f"simplestreams http://mirror: GET {server.url}/x did not finish within 1 s")
    assert "bytes of 60 received" in message
    assert "ANKLUME_FETCH_DEADLINE" in err.value.hint
    assert_clean(message)
    assert cache_files(tmp_path) == []


def test_dripping_headers_are_cut_at_the_deadline_too(bad_serve, tmp_path):
    server = bad_serve({"/x": Misbehaviour(body=b"{}", drip=0.05, drip_headers=True)})
    with pytest.raises(SourceError) as err:
        within(4, lambda: fetch(Fetcher(cache_dir=tmp_path, timeout=2, deadline=0.5), server.url + "/x"))
    assert "did not finish within 0.5 s (no complete answer received)" in err.value.message
    assert cache_files(tmp_path) == []


def test_a_length_that_promises_more_on_a_connection_held_open_ends_at_the_deadline(bad_serve, tmp_path):
    server = bad_serve({"/x": Misbehaviour(body=b"{}", content_length=100, hold=3)})
    with pytest.raises(SourceError) as err:
        within(2.5, lambda: fetch(Fetcher(cache_dir=tmp_path, timeout=5, deadline=0.5), server.url + "/x"))
    assert "did not finish within 0.5 s (2 bytes of 100 received)" in err.value.message


def test_a_length_that_promises_more_then_closes_is_a_short_body(bad_serve, tmp_path):
    server = bad_serve({"/x": Misbehaviour(body=b"{}", content_length=100)})
    with pytest.raises(SourceError) as err:
        within(4, lambda: fetch(Fetcher(cache_dir=tmp_path, timeout=2), server.url + "/x"))
    assert "the connection closed before the whole body arrived" in err.value.message
    assert cache_files(tmp_path) == []


def test_a_length_that_promises_less_is_what_is_read(bad_serve, tmp_path):
    """HTTP/1.1 framing: the body is the announced bytes; what follows is not part of it."""
    server = bad_serve({"/x": Misbehaviour(body=b"{}trailing junk", content_length=2)})
    assert fetch(Fetcher(cache_dir=tmp_path, timeout=2), server.url + "/x").body == b"{}"


def test_an_endless_body_is_refused_at_the_limit(bad_serve, tmp_path):
    server = bad_serve({"/x": Misbehaviour(body=b"{", content_length=None, endless=True)})
    with pytest.raises(SourceError) as err:
        within(10, lambda: fetch(Fetcher(cache_dir=tmp_path, timeout=2), server.url + "/x", limit=MiB))
    assert err.value.message == (f"simplestreams http://mirror: GET {server.url}/x sent more than 1 MiB, "
                                 "the most anklume reads for it")
    assert server.sent[0] < 64 * MiB  # it stopped reading
    assert cache_files(tmp_path) == []


def test_a_length_beyond_the_limit_is_refused_before_reading(bad_serve, tmp_path):
    server = bad_serve({"/x": Misbehaviour(body=b"{}", content_length=10 * MiB, hold=3)})
    with pytest.raises(SourceError) as err:
        within(2, lambda: fetch(Fetcher(cache_dir=tmp_path, timeout=5), server.url + "/x", limit=MiB))
    assert err.value.message == (f"simplestreams http://mirror: GET {server.url}/x announces 10485760 bytes, "
                                 "more than the 1 MiB anklume reads for it")


def test_resolvers_bound_what_they_read(bad_serve, tmp_path, monkeypatch):
    """A registry answering a manifest with an endless body: refused at the manifest limit."""
    from anklume.resolve.ollama import resolve_model

    server = bad_serve({"/v2/library/gemma/manifests/2b": Misbehaviour(body=b"{", content_length=None,
                                                                      endless=True)})
    with pytest.raises(SourceError) as err:
        within(10, lambda: resolve_model(Fetcher(cache_dir=tmp_path, timeout=2), server.url, "gemma:2b"))
    assert "sent more than 4 MiB, the most anklume reads for an Ollama manifest" in err.value.message
    assert server.sent[0] < 64 * MiB


# -- redirects ---------------------------------------------------------------------------------


def test_a_redirect_loop_is_refused(bad_serve, tmp_path):
    server = bad_serve({"/a": redirect("/b"), "/b": redirect("/a")})
    with pytest.raises(SourceError) as err:
        within(4, lambda: fetch(Fetcher(cache_dir=tmp_path, timeout=2), server.url + "/a"))
    assert err.value.message == (f"simplestreams http://mirror: GET {server.url}/a: redirect loop: "
                                 f"{server.url}/b redirects back to {server.url}/a")
    assert server.requests == ["/a", "/b"]


def test_a_long_redirect_chain_is_refused(bad_serve, tmp_path):
    server = bad_serve({f"/r{i}": redirect(f"/r{i + 1}") for i in range(30)})
    with pytest.raises(SourceError) as err:
        within(4, lambda: fetch(Fetcher(cache_dir=tmp_path, timeout=2), server.url + "/r0"))
    assert err.value.message == f"simplestreams http://mirror: GET {server.url}/r0: more than 10 redirects"
    assert len(server.requests) == 11


@pytest.mark.parametrize("target", ["file:///etc/passwd", "ftp://127.0.0.1:{port}/x", "data:,{{}}",
                                    "gopher://127.0.0.1:{port}/x"])
def test_a_redirect_to_another_scheme_is_refused_without_following_it(target, bad_serve, tmp_path):
    other = bad_serve({"/x": Misbehaviour(body=b"{}")})
    target = target.format(port=other.url.rsplit(":", 1)[1])
    server = bad_serve({"/a": redirect(target)})
    with pytest.raises(SourceError) as err:
        within(4, lambda: fetch(Fetcher(cache_dir=tmp_path, timeout=2), server.url + "/a"))
    assert err.value.message == (f"simplestreams http://mirror: GET {server.url}/a: refused to follow a redirect "
                                 f"to {target}: only http and https are fetched")
    assert other.requests == []
    assert cache_files(tmp_path) == []


def test_a_redirect_off_loopback_is_followed_and_fails_cleanly(bad_serve, tmp_path):
    """A local mirror may hand over to a public host (a CDN): followed, bounded, reported by its URL."""
    server = bad_serve({"/a": redirect("http://192.0.2.1:9/images.json")})
    with pytest.raises(SourceError) as err:
        within(6, lambda: fetch(Fetcher(cache_dir=tmp_path, timeout=1, deadline=2), server.url + "/a"))
    assert err.value.message.startswith("simplestreams http://mirror: cannot fetch ")
    assert "http://192.0.2.1:9/images.json" in err.value.message
    assert_clean(err.value.message)


def test_the_body_of_a_redirect_is_never_read(bad_serve, tmp_path):
    server = bad_serve({"/a": Misbehaviour(status=302, reason="Found", headers=(("Location", "/b"),),
                                           content_length=None, endless=True),
                        "/b": Misbehaviour(body=b"{}")})
    got = within(10, lambda: fetch(Fetcher(cache_dir=tmp_path, timeout=2), server.url + "/a"))
    assert got.body == b"{}" and got.urls == (server.url + "/a", server.url + "/b")
    assert server.sent[0] < 64 * MiB


@pytest.mark.parametrize(("origin", "target", "refused"), [
    ("https://mirror.example/a", "http://mirror.example/b", "from https to http"),
    ("https://registry.example/v2/x", "http://127.0.0.1:8080/x", "from https to http"),
    ("http://public.example/a", "http://127.0.0.1:8080/b", "from a public host to a loopback or link-local one"),
    ("http://public.example/a", "http://[::1]/b", "from a public host to a loopback or link-local one"),
    ("http://public.example/a", "http://169.254.169.254/latest", "from a public host to a loopback or link-local one"),
    ("http://public.example/a", "http://localhost/b", "from a public host to a loopback or link-local one"),
    ("http://127.0.0.1:8080/a", "http://192.0.2.1/b", None),
    ("http://127.0.0.1:8080/a", "http://localhost:8080/b", None),
    ("https://github.com/x", "https://release-assets.githubusercontent.com/y", None),
    ("http://mirror.lan/a", "https://mirror.lan/b", None),
])
def test_redirect_policy(origin, target, refused):
    from anklume.resolve.http import redirect_refusal

    reason = redirect_refusal(origin, target)
    assert reason == refused or (refused and reason and refused in reason)


def test_the_catalogues_of_one_resolve_are_bounded_together(http_serve, tmp_path, monkeypatch):
    """An index naming many catalogues cannot make one resolve hold more than the limit."""
    import json

    from anklume.resolve import simplestreams
    from anklume.resolve.limits import Limit

    monkeypatch.setattr(simplestreams, "CATALOGUE_LIMIT", Limit(100_000, "the catalogues, all together"))
    paths = [f"streams/v1/c{i}.json" for i in range(5)]
    index = {"format": "index:1.0", "index": {f"c{i}": {"datatype": "image-downloads", "path": path,
                                                         "format": "products:1.0", "products": ["p"]}
                                              for i, path in enumerate(paths)}}
    files = {"/streams/v1/index.json": json.dumps(index).encode()}
    files.update({f"/{path}": b"{" + b" " * 30_000 + b"}" for path in paths})
    server = http_serve(files)
    with pytest.raises(SourceError) as err:
        simplestreams.resolve_image(Fetcher(cache_dir=tmp_path, timeout=2), server.url, "debian/13", "x86_64",
                                    "container")
    assert ("announces 30002 bytes, more than the 100000 bytes anklume reads for the catalogues, all together "
            "(9390 bytes of it left)") in err.value.message
    assert server.requests[-1] == "/streams/v1/c3.json"  # the fourth one tips it over


@pytest.mark.parametrize("value", ["abc", "0", "-5", "inf", "nan"])
def test_a_bad_deadline_setting_is_a_clear_error(value, tmp_path, monkeypatch):
    from anklume.errors import AnklumeError

    monkeypatch.setenv("ANKLUME_FETCH_DEADLINE", value)
    with pytest.raises(AnklumeError) as err:
        Fetcher(cache_dir=tmp_path)
    assert err.value.message == f"ANKLUME_FETCH_DEADLINE={value!r} is not a number of seconds above 0"


def test_the_resolver_takes_the_deadline_from_its_environment(tmp_path):
    from anklume.model.load import load_infra
    from anklume.resolve.resolver import LiveResolver

    from tests.support.lockfiles import EXAMPLES

    infra = load_infra((EXAMPLES / "student-sysadmin" / "infra.yml").read_bytes(), "infra.yml")
    assert LiveResolver(infra, {"ANKLUME_FETCH_DEADLINE": "42"}, cache_dir=tmp_path).fetcher.deadline == 42
    assert LiveResolver(infra, {}, cache_dir=tmp_path).fetcher.deadline == 300

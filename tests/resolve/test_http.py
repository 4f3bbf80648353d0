"""Fetcher: real HTTP on loopback, the content-addressed cache, offline, and every failure."""

from __future__ import annotations

import hashlib
import json
import socket
from pathlib import Path

import blake3
import pytest

from anklume.errors import AnklumeError, OfflineMiss, SourceError
from anklume.fsio import default_cache_dir
from anklume.resolve.http import Fetcher, HttpStatusError


KEY = "https://example.org/streams/v1/index.json"
BODY = b'{"index": {}}'


def cache_files(cache: Path) -> list[str]:
    return sorted(str(p.relative_to(cache)) for p in cache.rglob("*") if p.is_file()) if cache.exists() else []


def assert_clean(message: str) -> None:
    """An error a user reads: no exception reprs, no traceback."""
    for noise in ("Traceback", "urlopen error", "Errno", "Error(", "<", "object at"):
        assert noise not in message


def test_online_fetch_stores_blob_and_index(http_serve, tmp_path):
    server = http_serve({"/index.json": BODY})
    fetcher = Fetcher(cache_dir=tmp_path, timeout=2)
    got = fetcher.fetch(server.url + "/index.json", key=KEY, source="test")
    assert got.body == BODY
    assert got.final_url == server.url + "/index.json"
    assert got.headers["CONTENT-TYPE"] == got.headers["content-type"] == "application/json"
    digest = hashlib.sha256(BODY).hexdigest()
    index_name = blake3.blake3(KEY.encode()).hexdigest()
    assert cache_files(tmp_path) == [f"blobs/{digest}", f"index/{index_name}"]
    assert (tmp_path / "blobs" / digest).read_bytes() == BODY
    entry = json.loads((tmp_path / "index" / index_name).read_bytes())
    assert entry == {"key": KEY, "sha256": digest, "urls": [server.url + "/index.json"],
                     "headers": {"content-type": "application/json"}}


def test_offline_answers_from_cache_after_the_server_is_gone(http_serve, tmp_path):
    server = http_serve({"/index.json": BODY})
    url = server.url + "/index.json"
    Fetcher(cache_dir=tmp_path, timeout=2).fetch(url, key=KEY, source="test")
    server.stop()
    got = Fetcher(cache_dir=tmp_path, offline=True).fetch(url, key=KEY, source="test")
    assert got.body == BODY
    assert got.final_url == url


def test_mirror_and_public_source_share_cache_entries_by_key(http_serve, tmp_path):
    mirror_a, mirror_b = http_serve({"/a/index.json": BODY}), http_serve({"/b/index.json": BODY})
    fetcher = Fetcher(cache_dir=tmp_path, timeout=2)
    fetcher.fetch(mirror_a.url + "/a/index.json", key=KEY, source="test")
    fetcher.fetch(mirror_b.url + "/b/index.json", key=KEY, source="test")
    assert len(cache_files(tmp_path)) == 2  # one blob, one index entry


def test_offline_with_empty_cache_is_an_offline_miss(tmp_path):
    with pytest.raises(OfflineMiss) as err:
        Fetcher(cache_dir=tmp_path, offline=True).fetch("https://example.org/x", key=KEY, source="test")
    assert KEY in err.value.message and "--offline" in err.value.hint
    assert cache_files(tmp_path) == []


def test_offline_refuses_a_corrupt_blob(http_serve, tmp_path):
    server = http_serve({"/index.json": BODY})
    Fetcher(cache_dir=tmp_path, timeout=2).fetch(server.url + "/index.json", key=KEY, source="test")
    (tmp_path / "blobs" / hashlib.sha256(BODY).hexdigest()).write_bytes(b"tampered")
    with pytest.raises(OfflineMiss, match="corrupt"):
        Fetcher(cache_dir=tmp_path, offline=True).fetch("x", key=KEY, source="test")


def test_redirects_are_followed_and_recorded(http_serve, tmp_path):
    server = http_serve({"/v1/file": b"data"}, redirects={"/latest": "/v1/file"})
    got = Fetcher(cache_dir=tmp_path, timeout=2).fetch(server.url + "/latest", key=KEY, source="test")
    assert got.body == b"data"
    assert got.urls == (server.url + "/latest", server.url + "/v1/file")
    assert Fetcher(cache_dir=tmp_path, offline=True).fetch("x", key=KEY, source="test").urls == got.urls


def test_request_headers_are_sent(http_serve, tmp_path):
    server = http_serve({"/m": BODY})
    Fetcher(cache_dir=tmp_path, timeout=2).fetch(server.url + "/m", key=KEY, source="t", headers={"Accept": "x/y"})
    assert server.headers[0]["Accept"] == "x/y"
    assert server.headers[0]["User-Agent"].startswith("anklume/")


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/streams/v1/index.json"


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("404", "HTTP 404"),
        ("500", "HTTP 500"),
        ("refused", "connection refused"),
        ("timeout", "no answer within 0.3 s"),
        ("empty", "empty body"),
    ],
)
def test_failures_are_source_errors_naming_source_and_url(case, expected, http_serve, tmp_path):
    path = "/streams/v1/index.json"
    if case == "refused":
        url = closed_port_url()
    else:
        files = {path: b"" if case == "empty" else BODY}
        status = {path: int(case)} if case.isdigit() else None
        server = http_serve(files, status=status, delay=1.0 if case == "timeout" else None)
        url = server.url + path
    fetcher = Fetcher(cache_dir=tmp_path, timeout=0.3)
    with pytest.raises(SourceError) as err:
        fetcher.fetch(url, key=KEY, source="simplestreams http://mirror", hint="check ANKLUME_IMAGES_URL")
    message = err.value.message
    assert message.startswith("simplestreams http://mirror: ")
    assert url in message and expected in message
    assert err.value.hint == "check ANKLUME_IMAGES_URL, or use --offline to answer from the cache"
    assert_clean(message)
    assert cache_files(tmp_path) == []  # nothing written, nothing half-written


def test_http_status_errors_carry_the_status(http_serve, tmp_path):
    server = http_serve({}, status={"/x": 503})
    with pytest.raises(HttpStatusError) as err:
        Fetcher(cache_dir=tmp_path, timeout=2).fetch(server.url + "/x", key=KEY, source="t")
    assert err.value.status == 503


def test_unresolvable_host_is_a_source_error(tmp_path):
    with pytest.raises(SourceError) as err:
        Fetcher(cache_dir=tmp_path, timeout=2).fetch("http://anklume-no-such-host.invalid/x", key=KEY, source="t")
    assert "anklume-no-such-host.invalid" in err.value.message
    assert_clean(err.value.message)


def test_non_http_url_is_refused(tmp_path):
    with pytest.raises(SourceError, match="not an http"):
        Fetcher(cache_dir=tmp_path).fetch("file:///etc/passwd", key=KEY, source="t")


def test_an_unwritable_cache_is_a_clear_error(http_serve, tmp_path):
    server = http_serve({"/x": BODY})
    blocker = tmp_path / "cache"
    blocker.write_text("a file where the cache folder should be")
    with pytest.raises(AnklumeError) as err:
        Fetcher(cache_dir=blocker, timeout=2).fetch(server.url + "/x", key=KEY, source="t")
    assert "cannot write the download cache" in str(err.value) and "ANKLUME_CACHE_DIR" in err.value.hint


def test_default_cache_dir_precedence():
    assert default_cache_dir({"ANKLUME_CACHE_DIR": "/a", "XDG_CACHE_HOME": "/b"}) == Path("/a")
    assert default_cache_dir({"XDG_CACHE_HOME": "/b"}) == Path("/b/anklume")
    assert default_cache_dir({"ANKLUME_CACHE_DIR": ""}) == Path.home() / ".cache" / "anklume"


def test_a_write_that_fails_midway_leaves_no_temporary_file(http_serve, tmp_path, monkeypatch):
    server = http_serve({"/x": BODY})

    def failing_replace(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("anklume.resolve.http.os.replace", failing_replace)
    with pytest.raises(AnklumeError, match="No space left on device"):
        Fetcher(cache_dir=tmp_path, timeout=2).fetch(server.url + "/x", key=KEY, source="t")
    assert cache_files(tmp_path) == []

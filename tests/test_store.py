"""ArtefactStore: fixed-output fetches from real loopback HTTP servers, resumed, verified."""

from __future__ import annotations

import hashlib
import os
import stat
import threading
from pathlib import Path

import pytest

from anklume.errors import AnklumeError
from anklume.store import ArtefactError, ArtefactStore, digest_hex

BODY = bytes(range(256)) * 12_000  # ~3 MiB: several network reads
DIGEST = hashlib.sha256(BODY).hexdigest()
OTHER = b"not the pinned bytes" * 1000
PATH = "/ollama-linux-amd64.tgz"


def stored_files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and p.suffix != ".lock")


def assert_clean(message: str) -> None:
    for noise in ("Traceback", "urlopen error", "Errno", "Error(", "<", "object at"):
        assert noise not in message


def test_fetch_verifies_and_stores_read_only(http_serve, tmp_path):
    server = http_serve({PATH: BODY})
    store = ArtefactStore(tmp_path)
    calls: list[tuple[int, int | None]] = []
    got = store.ensure(f"sha256:{DIGEST}", [server.url + PATH], size=len(BODY), what="ollama",
                       progress=lambda done, total: calls.append((done, total)))
    assert got == tmp_path / "sha256" / DIGEST == store.path(DIGEST) == store.path("sha256:" + DIGEST)
    assert got.read_bytes() == BODY
    assert stat.S_IMODE(os.stat(got).st_mode) == 0o444
    assert stored_files(tmp_path) == [f"sha256/{DIGEST}", f"verified/{DIGEST}"]  # no partial left behind
    assert calls[0] == (0, len(BODY)) and calls[-1] == (len(BODY), len(BODY))
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)
    assert store.has(DIGEST) and store.has(DIGEST, len(BODY)) and not store.has(DIGEST, len(BODY) + 1)
    assert store.verify(DIGEST) == DIGEST
    assert server.headers[0]["User-Agent"].startswith("anklume/")


def test_extra_headers_are_sent_and_size_is_optional(http_serve, tmp_path):
    server = http_serve({PATH: BODY})
    ArtefactStore(tmp_path).ensure(DIGEST, [server.url + PATH], headers={"Accept": "application/x-test"})
    assert server.headers[0]["Accept"] == "application/x-test"
    assert "Range" not in server.headers[0]


def test_cache_hit_makes_no_request(http_serve, tmp_path):
    server = http_serve({PATH: BODY})
    store = ArtefactStore(tmp_path)
    url = server.url + PATH
    store.ensure(DIGEST, [url], size=len(BODY))
    server.stop()  # nothing to answer now
    assert store.ensure(DIGEST, [url], size=len(BODY)) == store.path(DIGEST)
    assert store.ensure(DIGEST, []) == store.path(DIGEST)
    assert server.requests == [PATH]


def test_default_root_is_under_the_cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("ANKLUME_CACHE_DIR", str(tmp_path))
    assert ArtefactStore().path(DIGEST) == tmp_path / "store" / "sha256" / DIGEST


@pytest.mark.parametrize("bad", ["", "sha256:", "abc", "SHA256:" + DIGEST, DIGEST.upper(), DIGEST + "0",
                                 "sha512:" + DIGEST, DIGEST[:-1] + "g", "../" + DIGEST[3:], f" {DIGEST}"])
def test_digests_are_validated_strictly(tmp_path, bad):
    store = ArtefactStore(tmp_path)
    for call in (lambda: store.path(bad), lambda: store.has(bad), lambda: store.verify(bad),
                 lambda: store.ensure(bad, ["http://127.0.0.1:9/x"])):
        with pytest.raises(ArtefactError) as info:
            call()
        assert "is not a sha256 digest" in info.value.message
    assert digest_hex("sha256:" + DIGEST) == digest_hex(DIGEST) == DIGEST
    assert not (tmp_path / "sha256").exists()


def test_corrupted_download_names_both_digests_and_stores_nothing(http_serve, tmp_path):
    server = http_serve({PATH: OTHER})
    store = ArtefactStore(tmp_path)
    with pytest.raises(ArtefactError) as info:
        store.ensure(DIGEST, [server.url + PATH], what="ollama v0.5.7")
    actual = hashlib.sha256(OTHER).hexdigest()
    assert info.value.message == (f"sha256 mismatch for ollama v0.5.7 from {server.url + PATH}: "
                                  f"expected {DIGEST}, got {actual}")
    assert "nothing was stored" in info.value.hint
    assert (info.value.expected, info.value.actuals) == (DIGEST, (actual,))
    assert isinstance(info.value, AnklumeError)
    assert stored_files(tmp_path) == []
    assert not store.has(DIGEST)


def test_a_length_other_than_the_pinned_size_is_refused_before_the_body(http_serve, tmp_path):
    server = http_serve({PATH: BODY})
    with pytest.raises(ArtefactError) as info:
        ArtefactStore(tmp_path).ensure(DIGEST, [server.url + PATH], size=1000, what="blob")
    assert info.value.message == f"blob: {server.url + PATH} announces {len(BODY)} bytes, the lock pins 1000"
    assert "nothing was stored" in info.value.hint
    assert stored_files(tmp_path) == []


def test_truncated_transfer_keeps_the_partial_then_resumes_with_range(http_serve, tmp_path):
    cut = 1_000_000
    server = http_serve({PATH: BODY}, ranges=True, cut_after={PATH: cut})
    store = ArtefactStore(tmp_path)
    with pytest.raises(ArtefactError) as info:
        store.ensure(DIGEST, [server.url + PATH], size=len(BODY), what="model blob")
    message = info.value.message
    assert message == (f"model blob: the download from {server.url + PATH} stopped after {cut} of {len(BODY)} "
                       "bytes (the connection closed before the whole body arrived)")
    assert "run again to resume" in info.value.hint
    assert_clean(message)
    partial = tmp_path / "tmp" / f"{DIGEST}.partial"
    assert partial.read_bytes() == BODY[:cut]
    assert not store.has(DIGEST)

    calls: list[tuple[int, int | None]] = []
    got = store.ensure(DIGEST, [server.url + PATH], size=len(BODY), progress=lambda d, t: calls.append((d, t)))
    assert got.read_bytes() == BODY
    assert server.headers[1]["Range"] == f"bytes={cut}-"
    assert server.sent == [cut, len(BODY) - cut]  # only the rest travelled
    assert calls[0] == (cut, len(BODY))
    assert not partial.exists()


def test_resume_against_a_server_ignoring_range_starts_again(http_serve, tmp_path):
    server = http_serve({PATH: BODY}, ranges=False, cut_after={PATH: 500_000})
    store = ArtefactStore(tmp_path)
    with pytest.raises(ArtefactError):
        store.ensure(DIGEST, [server.url + PATH])  # no size: the Content-Length tells it was cut
    assert store.ensure(DIGEST, [server.url + PATH]).read_bytes() == BODY
    assert server.headers[1]["Range"] == "bytes=500000-"
    assert server.sent == [500_000, len(BODY)]  # answered 200: the whole body, written from zero


def test_stale_partial_is_discarded_with_a_hint_to_run_again(http_serve, tmp_path):
    server = http_serve({PATH: BODY}, ranges=True)
    store = ArtefactStore(tmp_path)
    (tmp_path / "tmp").mkdir()
    (tmp_path / "tmp" / f"{DIGEST}.partial").write_bytes(b"x" * 1000)  # not a prefix of BODY
    with pytest.raises(ArtefactError) as info:
        store.ensure(DIGEST, [server.url + PATH], size=len(BODY))
    assert "sha256 mismatch" in info.value.message and "run again to fetch from zero" in info.value.hint
    assert stored_files(tmp_path) == []
    assert store.ensure(DIGEST, [server.url + PATH], size=len(BODY)).read_bytes() == BODY
    assert "Range" not in server.headers[1]


def test_complete_partial_is_stored_without_a_request(http_serve, tmp_path):
    server = http_serve({PATH: BODY})
    (tmp_path / "tmp").mkdir()
    (tmp_path / "tmp" / f"{DIGEST}.partial").write_bytes(BODY)
    assert ArtefactStore(tmp_path).ensure(DIGEST, [server.url + PATH]).read_bytes() == BODY
    assert server.requests == []


def test_partial_longer_than_the_size_is_restarted(http_serve, tmp_path):
    server = http_serve({PATH: BODY}, ranges=True)
    (tmp_path / "tmp").mkdir()
    (tmp_path / "tmp" / f"{DIGEST}.partial").write_bytes(BODY + b"junk")
    assert ArtefactStore(tmp_path).ensure(DIGEST, [server.url + PATH], size=len(BODY)).read_bytes() == BODY
    assert "Range" not in server.headers[0]


def test_corrupted_on_disk_is_detected_and_removed(http_serve, tmp_path):
    server = http_serve({PATH: BODY})
    store = ArtefactStore(tmp_path)
    path = store.ensure(DIGEST, [server.url + PATH])
    os.chmod(path, 0o644)
    with open(path, "r+b") as f:
        f.seek(1234)
        f.write(b"\xff")
    assert store.has(DIGEST, len(BODY))  # has() does not re-hash
    bad = bytearray(BODY)
    bad[1234] = 0xFF
    assert store.verify(DIGEST) == hashlib.sha256(bad).hexdigest()
    assert not path.exists() and store.verify(DIGEST) is None
    assert store.ensure(DIGEST, [server.url + PATH]).read_bytes() == BODY  # fetched again
    assert server.hits(PATH) == 2


def test_stored_file_of_another_size_is_rechecked(http_serve, tmp_path):
    server = http_serve({PATH: BODY})
    store = ArtefactStore(tmp_path)
    store.ensure(DIGEST, [server.url + PATH])
    with pytest.raises(ArtefactError) as info:  # right bytes, wrong pinned size: the lock is wrong
        store.ensure(DIGEST, [server.url + PATH], size=len(BODY) - 1, what="wheel")
    assert "has the pinned sha256 but" in info.value.message and "anklume lock" in info.value.hint
    assert server.hits(PATH) == 1


def test_mirror_first_then_canonical(http_serve, tmp_path):
    server = http_serve({PATH: BODY}, status={"/mirror" + PATH: 404})  # one server: one request log
    got = ArtefactStore(tmp_path).ensure(DIGEST, [server.url + "/mirror" + PATH, server.url + PATH],
                                         size=len(BODY))
    assert got.read_bytes() == BODY
    assert server.requests == ["/mirror" + PATH, PATH]


def test_a_mirror_cut_short_is_resumed_from_the_canonical(http_serve, tmp_path):
    mirror = http_serve({PATH: BODY}, cut_after={PATH: 700_000})
    canonical = http_serve({PATH: BODY}, ranges=True)
    got = ArtefactStore(tmp_path).ensure(DIGEST, [mirror.url + PATH, canonical.url + PATH], size=len(BODY))
    assert got.read_bytes() == BODY
    assert canonical.headers[0]["Range"] == "bytes=700000-"
    assert canonical.sent == [len(BODY) - 700_000]


def test_mirror_that_serves_the_pinned_bytes_spares_the_canonical(http_serve, tmp_path):
    mirror = http_serve({PATH: BODY})
    canonical = http_serve({PATH: BODY})
    ArtefactStore(tmp_path).ensure(DIGEST, [mirror.url + PATH, canonical.url + PATH])
    assert mirror.requests == [PATH] and canonical.requests == []


def test_every_failure_is_reported_when_no_url_works(http_serve, tmp_path):
    wrong = http_serve({PATH: OTHER})
    missing = http_serve({}, status={PATH: 404})
    closed = http_serve({})
    dead = closed.url + PATH
    closed.stop()
    urls = [wrong.url + PATH, missing.url + PATH, dead, "ftp://example.org/x"]
    with pytest.raises(ArtefactError) as info:
        ArtefactStore(tmp_path, timeout=2).ensure(DIGEST, urls, what="open-webui wheel")
    message = info.value.message
    assert message.splitlines() == [
        f"cannot fetch open-webui wheel (sha256:{DIGEST}): all 4 URLs failed:",
        (f"  - sha256 mismatch for open-webui wheel from {urls[0]}: expected {DIGEST}, "
         f"got {hashlib.sha256(OTHER).hexdigest()}"),
        f"  - open-webui wheel: GET {urls[1]} answered HTTP 404 Not Found",
        f"  - open-webui wheel: cannot fetch {dead}: connection refused",
        "  - open-webui wheel: 'ftp://example.org/x' is not an http(s) URL",
    ]
    assert_clean(message.replace("<", ""))
    assert stored_files(tmp_path) == []


def test_no_urls_and_not_stored(tmp_path):
    with pytest.raises(ArtefactError, match="not in the store .* no URL was given"):
        ArtefactStore(tmp_path).ensure(DIGEST, [], what="blob")


def test_concurrent_fetches_of_one_digest_download_once(http_serve, tmp_path):
    server = http_serve({PATH: BODY}, delay=0.3)
    results: list[Path] = []
    errors: list[BaseException] = []

    def fetch() -> None:
        try:
            results.append(ArtefactStore(tmp_path).ensure(DIGEST, [server.url + PATH], size=len(BODY)))
        except BaseException as err:  # noqa: BLE001 (reported below)
            errors.append(err)

    threads = [threading.Thread(target=fetch) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(results) == 4 and len(set(results)) == 1 and results[0].read_bytes() == BODY
    assert server.requests == [PATH]


def test_concurrent_fetches_in_processes(http_serve, tmp_path):
    import multiprocessing

    server = http_serve({PATH: BODY}, delay=0.3)
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(3) as pool:
        paths = pool.starmap(_ensure_in_child, [(str(tmp_path), server.url + PATH)] * 3)
    assert len(set(paths)) == 1 and Path(paths[0]).read_bytes() == BODY
    assert server.requests == [PATH]


def _ensure_in_child(root: str, url: str) -> str:
    return str(ArtefactStore(Path(root)).ensure(DIGEST, [url], size=len(BODY)))


def test_unwritable_store_is_a_clean_error(http_serve, tmp_path):
    server = http_serve({PATH: BODY})
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ArtefactError) as info:
        ArtefactStore(blocker / "store").ensure(DIGEST, [server.url + PATH])
    assert "cannot write the artefact store" in info.value.message
    assert "ANKLUME_CACHE_DIR" in info.value.hint

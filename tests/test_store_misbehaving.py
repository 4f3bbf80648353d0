"""ArtefactStore against servers that misbehave: it never hangs, never writes more than the
pinned size (or, unpinned, than its cap), refuses lying lengths and bad redirects, and keeps
what a resumable failure already brought."""

from __future__ import annotations

import hashlib
import os
import time

import pytest

from anklume import store as store_module
from anklume.store import ArtefactError, ArtefactStore
from tests.support.badserve import Misbehaviour, redirect
from tests.support.bounded import within
from tests.test_store import assert_clean, stored_files

MiB = 1 << 20
BODY = bytes(range(256)) * 4096  # 1 MiB
DIGEST = hashlib.sha256(BODY).hexdigest()


@pytest.fixture
def written(monkeypatch) -> list[int]:
    """Every count of bytes the store writes to disk (os.write in anklume.store)."""
    counts: list[int] = []
    real = os.write

    def spy(fd: int, data) -> int:  # noqa: ANN001
        n = real(fd, data)
        counts.append(n)
        return n

    monkeypatch.setattr(store_module.os, "write", spy)
    return counts


def test_a_dripping_server_is_dropped_below_the_minimum_rate_and_resumed(bad_serve, http_serve, tmp_path,
                                                                         monkeypatch):
    """One byte every 0.05 s never trips the per-read timeout; the minimum rate ends it."""
    monkeypatch.setattr(store_module, "MIN_RATE", 1000, raising=False)
    monkeypatch.setattr(store_module, "RATE_WINDOW", 0.5, raising=False)
    drip = bad_serve({"/x": Misbehaviour(body=BODY[:200], content_length=len(BODY), drip=0.05)})
    store = ArtefactStore(tmp_path, timeout=5)
    start = time.monotonic()
    with pytest.raises(ArtefactError) as info:
        within(5, lambda: store.ensure(DIGEST, [drip.url + "/x"], size=len(BODY), what="model blob"))
    assert time.monotonic() - start < 3
    message = info.value.message
    assert message.startswith(f"model blob: the download from {drip.url}/x fell below 1000 bytes/s "
                              "over 0.5 s, after ")
    assert message.endswith(f" of {len(BODY)} bytes")
    assert "ANKLUME_DOWNLOAD_MIN_RATE" in info.value.hint and "resume" in info.value.hint
    assert_clean(message)
    partial = tmp_path / "tmp" / f"{DIGEST}.partial"
    kept = partial.read_bytes()
    assert 0 < len(kept) < 200 and BODY.startswith(kept)  # what arrived is kept for the resume
    good = http_serve({"/x": BODY}, ranges=True)
    assert store.ensure(DIGEST, [good.url + "/x"], size=len(BODY)).read_bytes() == BODY
    assert good.headers[0]["Range"] == f"bytes={len(kept)}-"


def test_the_minimum_rate_is_configurable_and_checked(tmp_path, monkeypatch):
    monkeypatch.setenv("ANKLUME_DOWNLOAD_MIN_RATE", "2048")
    assert ArtefactStore(tmp_path).min_rate == 2048
    monkeypatch.setenv("ANKLUME_DOWNLOAD_MIN_RATE", "fast")
    with pytest.raises(ArtefactError) as info:
        ArtefactStore(tmp_path)
    assert info.value.message == "ANKLUME_DOWNLOAD_MIN_RATE='fast' is not a number of bytes per second above 0"


def test_an_endless_body_without_a_pinned_size_stops_at_the_cap(bad_serve, tmp_path, monkeypatch, written):
    monkeypatch.setattr(store_module, "MAX_UNSIZED", 2 * MiB, raising=False)
    server = bad_serve({"/x": Misbehaviour(body=b"", content_length=None, endless=True)})
    with pytest.raises(ArtefactError) as info:
        within(10, lambda: ArtefactStore(tmp_path).ensure(DIGEST, [server.url + "/x"], what="Ollama 0.13.1"))
    assert info.value.message == (f"Ollama 0.13.1: {server.url}/x sent more than 2 MiB, the most the store "
                                  "takes for an artefact the lock pins no size for")
    assert "anklume lock" in info.value.hint
    assert sum(written) <= 2 * MiB
    assert stored_files(tmp_path) == []  # nothing stored, nothing half-written kept


def test_a_length_beyond_the_cap_is_refused_before_writing(bad_serve, tmp_path, monkeypatch, written):
    monkeypatch.setattr(store_module, "MAX_UNSIZED", 2 * MiB, raising=False)
    server = bad_serve({"/x": Misbehaviour(body=b"abc", content_length=3 * MiB)})
    with pytest.raises(ArtefactError) as info:
        within(5, lambda: ArtefactStore(tmp_path).ensure(DIGEST, [server.url + "/x"], what="Ollama 0.13.1"))
    assert info.value.message == (f"Ollama 0.13.1: {server.url}/x announces {3 * MiB} bytes, more than the 2 MiB "
                                  "the store takes for an artefact the lock pins no size for")
    assert written == [] and stored_files(tmp_path) == []


def test_never_more_than_the_pinned_size_is_written(bad_serve, tmp_path, written):
    server = bad_serve({"/x": Misbehaviour(body=BODY, content_length=None, endless=True)})
    with pytest.raises(ArtefactError) as info:
        within(10, lambda: ArtefactStore(tmp_path).ensure(DIGEST, [server.url + "/x"], size=len(BODY),
                                                          what="model blob"))
    assert info.value.message == (f"model blob: {server.url}/x sent more than the pinned {len(BODY)} bytes")
    assert "nothing was stored" in info.value.hint
    assert sum(written) <= len(BODY)
    assert stored_files(tmp_path) == []


def test_a_length_other_than_the_pinned_size_is_refused_before_writing(bad_serve, tmp_path, written):
    server = bad_serve({"/x": Misbehaviour(body=BODY, content_length=len(BODY) + 1)})
    with pytest.raises(ArtefactError) as info:
        within(5, lambda: ArtefactStore(tmp_path).ensure(DIGEST, [server.url + "/x"], size=len(BODY),
                                                         what="model blob"))
    assert info.value.message == (f"model blob: {server.url}/x announces {len(BODY) + 1} bytes, "
                                  f"the lock pins {len(BODY)}")
    assert written == [] and stored_files(tmp_path) == []


def test_a_length_that_promises_less_is_a_mismatch(bad_serve, tmp_path):
    server = bad_serve({"/x": Misbehaviour(body=BODY, content_length=len(BODY) - 10)})
    with pytest.raises(ArtefactError) as info:
        within(5, lambda: ArtefactStore(tmp_path).ensure(DIGEST, [server.url + "/x"], what="blob"))
    assert info.value.message.startswith(f"sha256 mismatch for blob from {server.url}/x")
    assert stored_files(tmp_path) == []


@pytest.mark.parametrize("target", ["ftp://127.0.0.1:{port}/x", "file:///etc/passwd"])
def test_a_redirect_to_another_scheme_is_refused(target, bad_serve, tmp_path):
    other = bad_serve({"/x": Misbehaviour(body=BODY)})
    target = target.format(port=other.url.rsplit(":", 1)[1])
    server = bad_serve({"/x": redirect(target)})
    with pytest.raises(ArtefactError) as info:
        within(5, lambda: ArtefactStore(tmp_path, timeout=2).ensure(DIGEST, [server.url + "/x"], what="blob"))
    assert info.value.message == (f"blob: GET {server.url}/x: refused to follow a redirect to {target}: "
                                  "only http and https are fetched")
    assert other.requests == []


def test_a_redirect_loop_is_refused(bad_serve, tmp_path):
    server = bad_serve({"/a": redirect("/b"), "/b": redirect("/a")})
    with pytest.raises(ArtefactError) as info:
        within(5, lambda: ArtefactStore(tmp_path, timeout=2).ensure(DIGEST, [server.url + "/a"], what="blob"))
    assert info.value.message == f"blob: GET {server.url}/a: redirect loop: {server.url}/b redirects back to " \
                                 f"{server.url}/a"


def test_a_redirect_to_the_artefact_is_followed(bad_serve, http_serve, tmp_path):
    good = http_serve({"/blob": BODY})
    server = bad_serve({"/a": redirect(good.url + "/blob")})
    assert ArtefactStore(tmp_path).ensure(DIGEST, [server.url + "/a"], size=len(BODY)).read_bytes() == BODY


# -- fuzzing ---------------------------------------------------------------------------------------

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from tests.resolve.test_http_fuzz import misbehaviours  # noqa: E402
from tests.support.badserve import BadServer  # noqa: E402
from tests.support.hyp import examples  # noqa: E402

SMALL = b"the pinned artefact" * 10
SMALL_DIGEST = hashlib.sha256(SMALL).hexdigest()


@st.composite
def artefact_servers(draw) -> Misbehaviour:
    """Mostly the pinned bytes served in some twisted way, else anything."""
    base = draw(misbehaviours())
    if draw(st.booleans()):
        return Misbehaviour(status=200, body=SMALL, content_length=base.content_length if base.content_length
                            in ("auto", None) else len(SMALL) + draw(st.sampled_from([-5, 5, 1 << 40])),
                            drip=base.drip and 0.002, drip_headers=base.drip_headers, endless=base.endless,
                            hold=base.hold)
    return base


@settings(max_examples=examples(60), deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(how=artefact_servers(), pinned=st.booleans())
def test_a_misbehaving_server_never_gets_wrong_or_excess_bytes_stored(how, pinned, tmp_path_factory):
    root = tmp_path_factory.mktemp("store")
    cap = 64 * 1024
    written: list[int] = []
    real = os.write

    def spy(fd: int, data) -> int:  # noqa: ANN001
        n = real(fd, data)
        written.append(n)
        return n

    store = ArtefactStore(root, timeout=0.4, min_rate=2000, rate_window=0.3, max_unsized=cap)
    size = len(SMALL) if pinned else None
    with BadServer({"/x": how}) as server, pytest.MonkeyPatch.context() as mp:
        mp.setattr(store_module.os, "write", spy)
        start = time.monotonic()
        try:
            got = within(10, lambda: store.ensure(SMALL_DIGEST, [server.url + "/x"], size=size, what="blob"))
        except ArtefactError as err:
            assert err.message.startswith(("blob", "sha256 mismatch for blob")), err.message
            assert server.url in err.message
            assert_clean(err.message)
            assert not store.has(SMALL_DIGEST)
        else:
            assert got.read_bytes() == SMALL
        assert time.monotonic() - start < 5
    limit = len(SMALL) if pinned else cap
    assert sum(written) <= limit
    partial = root / "tmp" / f"{SMALL_DIGEST}.partial"  # kept for a resume, checked at its end
    assert not partial.exists() or partial.stat().st_size <= limit

"""ensure() never hands out a stored artefact it has not checked: a file changed since the
store last hashed it (same size or not, pinned size or not) is re-hashed, and fetched again
when wrong.  The check is a marker of the file's identity (device, inode, size, mtime and
ctime, which every write changes and no one can set back): an unchanged file is not re-read."""

from __future__ import annotations

import os

import pytest

from anklume import store as store_module
from anklume.store import ArtefactStore
from tests.test_store import BODY, DIGEST, PATH


@pytest.fixture
def hashes(monkeypatch) -> list[int]:
    """Counts the files the store hashes from disk."""
    calls: list[int] = []
    real = store_module._hash_fd

    def counting(fd, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003
        calls.append(fd)
        return real(fd, *args, **kwargs)

    monkeypatch.setattr(store_module, "_hash_fd", counting)
    return calls


def corrupt_in_place(path, at: int = 1234) -> None:
    os.chmod(path, 0o644)
    with open(path, "r+b") as f:
        f.seek(at)
        f.write(bytes([BODY[at] ^ 0xFF]))


@pytest.mark.parametrize("size", [len(BODY), None])
def test_a_stored_file_changed_in_place_is_fetched_again(size, http_serve, tmp_path):
    server = http_serve({PATH: BODY})
    store = ArtefactStore(tmp_path)
    path = store.ensure(DIGEST, [server.url + PATH], size=size)
    corrupt_in_place(path)
    assert store.ensure(DIGEST, [server.url + PATH], size=size).read_bytes() == BODY
    assert server.hits(PATH) == 2


def test_a_changed_file_with_its_times_set_back_is_still_caught(http_serve, tmp_path):
    server = http_serve({PATH: BODY})
    store = ArtefactStore(tmp_path)
    path = store.ensure(DIGEST, [server.url + PATH], size=len(BODY))
    before = os.stat(path)
    corrupt_in_place(path)
    os.chmod(path, 0o444)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))  # ctime moves all the same
    assert store.ensure(DIGEST, [server.url + PATH], size=len(BODY)).read_bytes() == BODY


def test_another_file_moved_into_place_is_caught(http_serve, tmp_path):
    server = http_serve({PATH: BODY})
    store = ArtefactStore(tmp_path)
    path = store.ensure(DIGEST, [server.url + PATH], size=len(BODY))
    other = tmp_path / "other"
    other.write_bytes(bytes(len(BODY)))
    os.replace(other, path)
    assert store.ensure(DIGEST, [server.url + PATH], size=len(BODY)).read_bytes() == BODY


def test_an_unchanged_file_is_not_read_again(http_serve, tmp_path, hashes):
    server = http_serve({PATH: BODY})
    store = ArtefactStore(tmp_path)
    store.ensure(DIGEST, [server.url + PATH], size=len(BODY))
    hashed = len(hashes)  # the download is hashed while it streams
    for _ in range(3):
        store.ensure(DIGEST, [server.url + PATH], size=len(BODY))
        ArtefactStore(tmp_path).ensure(DIGEST, [], size=None)  # another process: the marker is on disk
    assert len(hashes) == hashed
    assert server.hits(PATH) == 1


def test_a_file_the_store_did_not_hash_is_hashed_once(http_serve, tmp_path, hashes):
    """A file put into sha256/ by hand (or by an anklume that kept no marker): hashed on the
    first ensure, trusted while unchanged after that."""
    store = ArtefactStore(tmp_path)
    store.path(DIGEST).parent.mkdir(parents=True)
    store.path(DIGEST).write_bytes(BODY)
    assert store.ensure(DIGEST, [], size=len(BODY)).read_bytes() == BODY
    assert store.ensure(DIGEST, []).read_bytes() == BODY
    assert len(hashes) == 1


def test_a_marker_that_is_a_link_is_not_trusted(http_serve, tmp_path, hashes):
    server = http_serve({PATH: BODY})
    store = ArtefactStore(tmp_path)
    store.ensure(DIGEST, [server.url + PATH], size=len(BODY))
    markers = [p for p in tmp_path.rglob("*") if p.is_file() and p.parent.name == "verified"]
    assert len(markers) == 1
    elsewhere = tmp_path / "forged"
    os.replace(markers[0], elsewhere)
    markers[0].symlink_to(elsewhere)
    before = len(hashes)
    assert store.ensure(DIGEST, [server.url + PATH], size=len(BODY)).read_bytes() == BODY
    assert len(hashes) == before + 1  # re-hashed, not taken from the link


def test_verify_refreshes_the_marker_and_a_wrong_file_loses_it(http_serve, tmp_path, hashes):
    server = http_serve({PATH: BODY})
    store = ArtefactStore(tmp_path)
    path = store.ensure(DIGEST, [server.url + PATH])
    corrupt_in_place(path)
    assert store.verify(DIGEST) != DIGEST and not path.exists()
    assert not any(p.is_file() for p in (tmp_path / "verified").iterdir())

"""ArtefactStore never follows a link it did not make: every file it opens under its root is
opened without following symlinks, and a link (or a hard link, a FIFO) where a file of its own
belongs is replaced, never written through."""

from __future__ import annotations

import hashlib
import os
import stat

import pytest

from anklume.store import ArtefactStore
from tests.support.bounded import within
from tests.test_store import BODY, DIGEST, PATH

OUTSIDE = b"a file outside the store, which must stay as it is\n"


@pytest.fixture
def outside(tmp_path):
    path = tmp_path / "outside.txt"
    path.write_bytes(OUTSIDE)
    os.chmod(path, 0o600)
    return path


def untouched(path) -> bool:
    return path.read_bytes() == OUTSIDE and stat.S_IMODE(os.stat(path).st_mode) == 0o600


def regular(path) -> bool:
    return stat.S_ISREG(os.lstat(path).st_mode) and os.lstat(path).st_nlink == 1


def test_a_symlink_at_the_partial_file_is_replaced_not_written_through(http_serve, tmp_path, outside):
    server = http_serve({PATH: BODY}, ranges=True)
    root = tmp_path / "store"
    (root / "tmp").mkdir(parents=True)
    (root / "tmp" / f"{DIGEST}.partial").symlink_to(outside)
    got = within(10, lambda: ArtefactStore(root).ensure(DIGEST, [server.url + PATH], size=len(BODY)))
    assert got.read_bytes() == BODY and regular(got)
    assert untouched(outside)
    assert "Range" not in server.headers[0]  # the outside file's bytes are no prefix to resume


def test_a_symlink_to_the_complete_bytes_is_not_moved_into_the_store(http_serve, tmp_path):
    server = http_serve({PATH: BODY})
    elsewhere = tmp_path / "elsewhere.bin"
    elsewhere.write_bytes(BODY)
    root = tmp_path / "store"
    (root / "tmp").mkdir(parents=True)
    (root / "tmp" / f"{DIGEST}.partial").symlink_to(elsewhere)
    got = within(10, lambda: ArtefactStore(root).ensure(DIGEST, [server.url + PATH], size=len(BODY)))
    assert regular(got) and got.read_bytes() == BODY
    assert stat.S_IMODE(os.stat(elsewhere).st_mode) != 0o444  # not chmod-ed through the link


def test_a_hard_link_at_the_partial_file_is_replaced(http_serve, tmp_path, outside):
    server = http_serve({PATH: BODY}, ranges=True)
    root = tmp_path / "store"
    (root / "tmp").mkdir(parents=True)
    os.link(outside, root / "tmp" / f"{DIGEST}.partial")
    got = within(10, lambda: ArtefactStore(root).ensure(DIGEST, [server.url + PATH], size=len(BODY)))
    assert got.read_bytes() == BODY and regular(got)
    assert untouched(outside)


def test_a_fifo_at_the_partial_file_does_not_hang_the_store(http_serve, tmp_path):
    server = http_serve({PATH: BODY})
    root = tmp_path / "store"
    (root / "tmp").mkdir(parents=True)
    os.mkfifo(root / "tmp" / f"{DIGEST}.partial")
    got = within(10, lambda: ArtefactStore(root).ensure(DIGEST, [server.url + PATH], size=len(BODY)))
    assert got.read_bytes() == BODY and regular(got)


def test_a_symlink_at_the_lock_file_is_not_followed(http_serve, tmp_path):
    server = http_serve({PATH: BODY})
    root = tmp_path / "store"
    (root / "tmp").mkdir(parents=True)
    target = tmp_path / "created-through-the-link"
    (root / "tmp" / f"{DIGEST}.lock").symlink_to(target)
    got = within(10, lambda: ArtefactStore(root).ensure(DIGEST, [server.url + PATH], size=len(BODY)))
    assert got.read_bytes() == BODY
    assert not target.exists()


@pytest.mark.parametrize("size", [len(BODY), None])
def test_a_symlink_in_place_of_a_stored_artefact_is_not_trusted(size, http_serve, tmp_path):
    """Even to the right bytes: a link's target can change under it."""
    server = http_serve({PATH: BODY})
    elsewhere = tmp_path / "elsewhere.bin"
    elsewhere.write_bytes(BODY)
    root = tmp_path / "store"
    store = ArtefactStore(root)
    (root / "sha256").mkdir(parents=True)
    store.path(DIGEST).symlink_to(elsewhere)
    assert not store.has(DIGEST)
    got = within(10, lambda: store.ensure(DIGEST, [server.url + PATH], size=size))
    assert regular(got) and got.read_bytes() == BODY
    assert server.requests == [PATH]
    assert elsewhere.read_bytes() == BODY


def test_verify_does_not_follow_a_symlink(tmp_path, outside):
    store = ArtefactStore(tmp_path)
    (tmp_path / "sha256").mkdir()
    store.path(DIGEST).symlink_to(outside)
    assert store.verify(DIGEST) is None
    assert not os.path.lexists(store.path(DIGEST)) and untouched(outside)


def test_a_stored_artefact_is_hashed_from_the_file_itself(http_serve, tmp_path):
    server = http_serve({PATH: BODY})
    store = ArtefactStore(tmp_path)
    path = store.ensure(DIGEST, [server.url + PATH])
    assert regular(path) and hashlib.sha256(path.read_bytes()).hexdigest() == DIGEST

"""Where a project's files are: ``infra.yml``, ``anklume.lock`` beside it, and
the generated Ansible tree in the same directory (as the original wrote it)."""

from __future__ import annotations

import fcntl
import hmac
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import blake3
import msgspec

from anklume import __version__
from anklume.errors import AnklumeError, StaleLock
from anklume.fsio import atomic_write, default_cache_dir, read_input, read_or_none
from anklume.lock.codec import decode_lock, infra_hash
from anklume.lock.schema import Lock
from anklume.markers import conflict_lines
from anklume.model.load import load_infra
from anklume.model.schema import Infra

LOCK_NAME = "anklume.lock"
#: The infra file's usual name (``-f`` names another); the merge driver reads the one beside the lock.
INFRA_NAME = "infra.yml"


@dataclass(frozen=True)
class Project:
    infra_file: Path

    @property
    def root(self) -> Path:
        return self.infra_file.parent

    @property
    def lock_file(self) -> Path:
        return self.root / LOCK_NAME

    def load_infra(self) -> Infra:
        data = read_input(self.infra_file)
        if data is None:
            raise AnklumeError(f"{self.infra_file}: no such file",
                               "run anklume in the directory of your infra.yml, or pass -f PATH")
        hunks = conflict_lines(data)
        if hunks:
            where = f"line{'s' if len(hunks) > 1 else ''} {', '.join(map(str, hunks))}"
            raise AnklumeError(f"{self.infra_file}: git's conflict markers ({where}): the merge of "
                               f"{self.infra_file.name} is not finished",
                               "keep what each side wants and remove the markers (<<<<<<<, =======, >>>>>>>), "
                               "then run `anklume lock` (a conflicted lock is merged then)")
        return load_infra_memo(data, str(self.infra_file), default_cache_dir(os.environ) / "infra")

    def read_lock(self) -> Lock | None:
        data = read_input(self.lock_file)
        return None if data is None else decode_lock(data, str(self.lock_file))

    def load(self) -> tuple[Infra, Lock]:
        """infra.yml and its fresh lock: what every command but ``lock`` starts from."""
        infra = self.load_infra()
        return infra, self.fresh_lock(infra)

    def fresh_lock(self, infra: Infra) -> Lock:
        """The lock, refusing a missing or stale one (build and verify never re-resolve)."""
        lock = self.read_lock()
        if lock is None:
            raise StaleLock(f"{self.lock_file}: no lock file", "run `anklume lock` first")
        if lock.infra_hash != infra_hash(infra):
            raise StaleLock(f"{self.lock_file} is stale: {self.infra_file.name} changed since it was locked",
                            "run `anklume lock` (existing pins are kept) and commit the new lock")
        return lock


#: The first bytes of a memo; a memo of another format is ignored (and written again).
MEMO_MAGIC = b"anklume-infra-memo 2\n"


def load_infra_memo(data: bytes, file: str, memo_dir: Path) -> Infra:
    """``load_infra``, memoised by content: parsing and validating a 10,000-machine
    file takes seconds, decoding its recorded model milliseconds.

    The memo's name is blake3 over this anklume's version and the exact bytes, so any
    edit (or another anklume) misses.  Its content is checked before it is used: it is
    :data:`MEMO_MAGIC`, a 32-byte blake3 MAC of the payload keyed by the source bytes
    (and the version), then the msgpack payload; a memo whose MAC does not match (edited,
    corrupted, or recorded for other bytes) is ignored and written again.  Only models
    that round-trip exactly are recorded, and only valid files are.  A memo that cannot be
    read or written is ignored: it only ever saves time.
    """
    prefix = f"anklume-infra-memo\0{__version__}\0".encode()
    key = blake3.blake3(prefix + data).hexdigest()
    mac_key = blake3.blake3(b"anklume-infra-memo-mac\0" + prefix + data).digest()
    path = memo_dir / f"{key}.msgpack"
    try:
        cached = read_or_none(path) if memo_dir.is_dir() else None
    except OSError:
        cached = None
    if cached is not None and cached.startswith(MEMO_MAGIC):
        mac, payload = cached[len(MEMO_MAGIC):len(MEMO_MAGIC) + 32], cached[len(MEMO_MAGIC) + 32:]
        if hmac.compare_digest(mac, blake3.blake3(payload, key=mac_key).digest()):
            try:
                return msgspec.msgpack.decode(payload, type=Infra)
            except msgspec.DecodeError:
                pass
    infra = load_infra(data, file)
    try:  # a value msgpack cannot hold (loading refuses them) only costs the memo
        encoded = msgspec.msgpack.encode(infra)
        if msgspec.msgpack.decode(encoded, type=Infra) == infra:
            atomic_write(path, MEMO_MAGIC + blake3.blake3(encoded, key=mac_key).digest() + encoded)
    except (OSError, msgspec.DecodeError, OverflowError, UnicodeEncodeError, TypeError, ValueError):
        pass
    return infra


class BuildBusy(AnklumeError):
    """Another build holds the project's build lock."""


@contextmanager
def exclusive_build(root: Path) -> Iterator[None]:
    """One build at a time per project directory: ``fcntl.flock`` on the directory itself (no lock
    file left in the user's repository; the kernel drops it when the process dies, even by
    ``kill -9``).  A second build stops clearly instead of waiting."""
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise BuildBusy(f"another anklume build is running for {root}",
                            "wait for it to finish, then run the build again") from None
        yield
    finally:
        os.close(fd)

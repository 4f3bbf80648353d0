"""The local content-addressed artefact store: pinned artefacts fetched once, verified.

A pinned artefact (the Ollama release tarball, a model blob, the Open WebUI wheel) is named
by the sha256 the lock records.  :meth:`ArtefactStore.ensure` is a fixed-output fetch, as
in Nix: the bytes are downloaded once, hashed while they stream, and kept only if their
digest (and size, when known) is the pinned one.  Layout (``<root>`` defaults to
``default_cache_dir() / "store"``)::

    <root>/sha256/<64 hex>        a verified artefact, read-only (0444)
    <root>/tmp/<64 hex>.partial   a download in progress, or one cut short (resumed next time)
    <root>/tmp/<64 hex>.lock      the per-digest lock (fcntl.flock) one fetcher holds
    <root>/verified/<64 hex>      the identity of the stored file when the store last hashed it

A download that stops early keeps its partial file; the next ``ensure`` re-hashes it and asks
for the rest with ``Range: bytes=N-`` (a 206 appends, a 200 starts again from zero).  A
finished download whose digest or size is wrong is deleted, never stored.  Two threads or
processes ensuring the same digest take turns on the lock: the second finds it stored.

``ensure`` hands out a stored file only once it is checked: either it is the very file the
store last hashed (its marker in ``verified/`` names its device, inode, size, mtime and ctime;
any write moves the ctime, which no one can set back), or it is hashed again, and removed and
fetched again when wrong.  An unchanged multi-GB model blob is thus not re-read on every build
(bench/sha256_throughput.py: about 1.7 GB/s here, 2.5 s for a 4 GB blob).  ``has`` looks at the
size only.  Corruption below the filesystem (bit rot) moves no ctime: the check in the instance
after each transfer catches it, and :meth:`ArtefactStore.verify` re-hashes then.

Every file the store opens under ``<root>`` (partial downloads, lock files, stored artefacts) is
opened with ``O_NOFOLLOW`` and must be a regular file (a partial one with no other name): a
symlink, hard link or FIFO found in their place is removed, never written through, and a stored
artefact that is a link is not trusted (it is fetched again).  The folders themselves may be
links (a store moved to a bigger disk).

A source that misbehaves (docs/provisioning.md): a download slower than :data:`MIN_RATE` over
a :data:`RATE_WINDOW` is dropped, its partial file kept to resume; never more than the pinned
size is written (a ``Content-Length`` other than it is refused before the body), and with no
pinned size never more than :data:`MAX_UNSIZED`; redirects follow
:func:`anklume.resolve.http.redirect_refusal`.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import http.client
import os
import re
import stat
import threading
import urllib.error
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

import msgspec

from anklume import jsonsafe
from anklume.errors import AnklumeError
from anklume.fsio import atomic_write, default_cache_dir, read_or_none
from anklume.resolve.http import (Budget, OutOfTime, RedirectRefused, announced_length, describe_error, open_url,
                                  positive_setting)
from anklume.units.key import canonical

#: Read size when hashing a file on disk (bench/sha256_throughput.py measures it).
HASH_CHUNK = 4 * 1024 * 1024
#: Read size when streaming a download.
NET_CHUNK = 1024 * 1024

#: A download must bring at least this many bytes per second over every window of
#: :data:`RATE_WINDOW` seconds (as curl's --speed-limit/--speed-time), else it is dropped
#: and its partial file kept for the next run to resume: a server that drips a byte at a
#: time cannot hold ``build`` forever, and a transfer of ``n`` bytes ends within
#: ``n / MIN_RATE + RATE_WINDOW`` seconds.  64 KiB/s is half a megabit: any link that can
#: bring gigabytes of model in reasonable time is far above it.  ``$ANKLUME_DOWNLOAD_MIN_RATE``
#: (bytes per second) changes it.
MIN_RATE = 64 * 1024
RATE_WINDOW = 30.0
MIN_RATE_ENV = "ANKLUME_DOWNLOAD_MIN_RATE"
#: The most bytes the store takes for an artefact the lock pins no size for (only the Ollama
#: release of a lock written before its size was pinned: real ones are 1.2 to 2 GB).
MAX_UNSIZED = 8 * 1024 ** 3

_HEX = re.compile(r"[0-9a-f]{64}")
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")

Progress = Callable[[int, "int | None"], None]


class ArtefactError(AnklumeError):
    """A pinned artefact cannot be fetched, or the bytes fetched are not the pinned ones.

    ``expected`` is the pinned hex digest (when known), ``actuals`` the digests the
    URLs actually served, one per URL that served a whole wrong body."""

    def __init__(self, message: str, hint: str | None = None, *, expected: str | None = None,
                 actuals: Sequence[str] = ()):
        super().__init__(message, hint)
        self.expected = expected
        self.actuals = tuple(actuals)


class _Failure(Exception):
    """One URL failed; ``message`` is the sentence a user reads for it."""

    def __init__(self, message: str, hint: str | None = None, actual: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.actual = actual


class _Restart(Exception):
    """The server did not honour the Range request as asked: fetch again from zero."""


def hash_file(path: Path, hasher=None, chunk: int | None = None):  # noqa: ANN001, ANN201 (hashlib types)
    """``(hasher, size)`` after feeding ``path`` to ``hasher`` (a new sha256 unless given),
    read with ``readinto`` into one reused buffer of ``chunk`` bytes (:data:`HASH_CHUNK`)."""
    with open(path, "rb", buffering=0) as f:
        return _hash_stream(f, hasher, chunk)


def _hash_fd(fd: int, hasher=None, chunk: int | None = None):  # noqa: ANN001, ANN201
    """:func:`hash_file` of an open file descriptor, from its first byte (it stays open)."""
    os.lseek(fd, 0, os.SEEK_SET)
    with open(fd, "rb", buffering=0, closefd=False) as f:
        return _hash_stream(f, hasher, chunk)


def _hash_stream(f, hasher, chunk: int | None):  # noqa: ANN001, ANN202
    hasher = hasher if hasher is not None else hashlib.sha256()
    buf = bytearray(chunk or HASH_CHUNK)
    view = memoryview(buf)
    size = 0
    with contextlib.suppress(AttributeError, OSError):
        os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_SEQUENTIAL)
    while n := f.readinto(buf):
        hasher.update(view[:n])
        size += n
    return hasher, size


class _NotOurs(Exception):
    """A path of the store holds something the store does not make: a symlink, a hard link to
    another file, a FIFO, a directory..."""


#: Every file under the root is opened with these: a symlink is never followed (ELOOP), and a
#: FIFO opens at once instead of blocking (then is refused as not a regular file).
_OWN_FLAGS = os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK


def _open_own(path: Path, flags: int, *, single_link: bool) -> int:
    """``os.open`` of a file of the store: never through a symlink, only a regular file (and,
    with ``single_link``, one no other name shares), else :class:`_NotOurs`."""
    try:
        fd = os.open(path, flags | _OWN_FLAGS, 0o644)
    except OSError as err:
        if err.errno in (errno.ELOOP, errno.EISDIR, errno.ENXIO):
            raise _NotOurs from None
        raise
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or (single_link and st.st_nlink != 1):
        os.close(fd)
        raise _NotOurs
    return fd


def _remove(path: Path) -> None:
    """Remove what :func:`_open_own` refused (a link is removed, never its target)."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except IsADirectoryError:
        os.rmdir(path)  # an empty one; anything more is the user's, and an OSError says so


def digest_hex(sha256: str) -> str:
    """The 64 lower-case hex digits of ``"sha256:<hex>"`` or ``"<hex>"``, else ArtefactError."""
    hexpart = sha256.removeprefix("sha256:") if isinstance(sha256, str) else ""
    if not _HEX.fullmatch(hexpart):
        raise ArtefactError(f"{sha256!r} is not a sha256 digest",
                            'expected 64 lower-case hex digits, optionally after "sha256:"')
    return hexpart


class ArtefactStore:
    """Artefacts by sha256 on local disk, downloaded on demand and verified."""

    def __init__(self, root: Path | None = None, *, timeout: float = 60.0, min_rate: float | None = None,
                 rate_window: float | None = None, max_unsized: int | None = None):
        self.root = Path(root) if root is not None else default_cache_dir(os.environ) / "store"
        self.timeout = timeout
        self.min_rate = min_rate if min_rate is not None else download_min_rate(os.environ)
        self.rate_window = rate_window if rate_window is not None else RATE_WINDOW
        self.max_unsized = max_unsized if max_unsized is not None else MAX_UNSIZED

    # --- reading --------------------------------------------------------------------------

    def path(self, sha256: str) -> Path:
        """Where the artefact with this digest lives (whether or not it is there yet)."""
        return self.root / "sha256" / digest_hex(sha256)

    def has(self, sha256: str, size: int | None = None) -> bool:
        """Present (and ``size`` bytes long when given); the bytes are not re-hashed."""
        try:
            st = os.lstat(self.path(sha256))
        except (FileNotFoundError, NotADirectoryError):
            return False
        return stat.S_ISREG(st.st_mode) and (st.st_size == size if size is not None else True)

    def verify(self, sha256: str) -> str | None:
        """Re-hash the stored file: its actual hex digest, None if absent.  A file whose
        digest is not its name is removed (the next ``ensure`` fetches it again)."""
        expected = digest_hex(sha256)
        path = self.path(expected)
        try:
            fd = _open_own(path, os.O_RDONLY, single_link=False)
            try:
                before = os.fstat(fd)  # what is marked: a change while hashing moves its ctime
                hasher, _ = _hash_fd(fd)
            finally:
                os.close(fd)
        except (FileNotFoundError, NotADirectoryError):
            return None
        except _NotOurs:  # a link (even to the right bytes) is not a stored artefact
            self._drop(path)
            return None
        except OSError as err:
            raise ArtefactError(f"cannot read the stored artefact {path}: {err.strerror or err}") from None
        actual = hasher.hexdigest()
        if actual != expected:
            self._unmark(expected)
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        else:
            self._mark(expected, before)
        return actual

    # --- fetching -------------------------------------------------------------------------

    def ensure(
        self,
        sha256: str,
        urls: Sequence[str],
        *,
        size: int | None = None,
        what: str = "",
        headers: Mapping[str, str] | None = None,
        progress: Progress | None = None,
    ) -> Path:
        """The stored artefact's path, downloading it from the first of ``urls`` that
        serves the pinned bytes (a mirror first, then the canonical URL)."""
        expected = digest_hex(sha256)
        what = what or f"sha256:{expected}"
        if isinstance(urls, str):
            urls = [urls]
        if self._present(expected, size, what):
            return self.path(expected)
        if not urls:
            raise ArtefactError(f"{what} (sha256:{expected}) is not in the store at {self.root} "
                                "and no URL was given to fetch it")
        with self._locked(expected):
            if self._present(expected, size, what):  # another fetcher finished while we waited
                return self.path(expected)
            failures: list[_Failure] = []
            for url in urls:
                try:
                    self._download(expected, url, size=size, what=what, headers=headers or {},
                                   progress=progress)
                    return self.path(expected)
                except _Failure as failure:
                    failures.append(failure)
        actuals = [f.actual for f in failures if f.actual]
        if len(failures) == 1:
            raise ArtefactError(failures[0].message, failures[0].hint, expected=expected, actuals=actuals)
        lines = "".join(f"\n  - {failure.message}" for failure in failures)
        hints = [f.hint for f in failures if f.hint]
        raise ArtefactError(f"cannot fetch {what} (sha256:{expected}): all {len(failures)} URLs failed:{lines}",
                            hints[-1] if hints else None, expected=expected, actuals=actuals)

    def _present(self, expected: str, size: int | None, what: str) -> bool:
        """Stored with the right size.  A stored file of another size is re-hashed: a
        wrong file is removed (fetched again); right bytes mean the pinned size is wrong."""
        path = self.path(expected)
        try:
            st = os.lstat(path)
        except (FileNotFoundError, NotADirectoryError):
            return False
        if not stat.S_ISREG(st.st_mode):  # a link (even to the right bytes) or a FIFO: not stored
            self._unmark(expected)
            self._drop(path)
            return False
        if size is None or st.st_size == size:
            # unchanged since the store hashed it, else hashed now (and removed when wrong)
            return self._marked(expected, st) or self.verify(expected) == expected
        if self.verify(expected) != expected:
            return False
        raise ArtefactError(
            f"{what}: the stored file {path} has the pinned sha256 but {st.st_size} bytes, "
            f"not the pinned size {size}", "the size recorded in the lock is wrong: run `anklume lock`")

    # --- the verified markers -------------------------------------------------------------

    def _marker(self, expected: str) -> Path:
        return self.root / "verified" / expected

    @staticmethod
    def _identity(expected: str, st: os.stat_result) -> bytes:
        """What a marker holds: the digest and the identity of the file that hashed to it.
        Any write to the file moves its mtime and ctime, and no one sets a ctime back."""
        return (f"anklume-verified 1 sha256:{expected} dev={st.st_dev} ino={st.st_ino} size={st.st_size} "
                f"mtime_ns={st.st_mtime_ns} ctime_ns={st.st_ctime_ns}\n").encode()

    def _marked(self, expected: str, st: os.stat_result) -> bool:
        """Whether the stored file (``st``: its lstat) is the very file the store last hashed."""
        try:
            fd = _open_own(self._marker(expected), os.O_RDONLY, single_link=False)
        except (_NotOurs, OSError):
            return False
        try:
            data = os.read(fd, 512)
        except OSError:
            return False
        finally:
            os.close(fd)
        return data == self._identity(expected, st)

    def _mark(self, expected: str, st: os.stat_result) -> None:
        """Record that the file of identity ``st`` hashed to ``expected`` (a marker that cannot
        be written only costs a re-hash next time)."""
        marker = self._marker(expected)
        tmp = marker.with_name(f".{expected}.{os.getpid()}.{threading.get_ident()}.tmp")
        try:
            marker.parent.mkdir(exist_ok=True)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | _OWN_FLAGS, 0o644)
            try:
                os.write(fd, self._identity(expected, st))
            finally:
                os.close(fd)
            os.replace(tmp, marker)  # replaces a link there, never writes through it
        except OSError:
            with contextlib.suppress(OSError):
                tmp.unlink()

    def _unmark(self, expected: str) -> None:
        with contextlib.suppress(OSError):
            _remove(self._marker(expected))

    def _drop(self, path: Path) -> None:
        try:
            _remove(path)
        except OSError as err:
            raise ArtefactError(f"{path} is not a file the artefact store made, and cannot be removed: "
                                f"{err.strerror or err}", "remove it by hand") from None

    @contextlib.contextmanager
    def _locked(self, expected: str) -> Iterator[None]:
        tmp = self.root / "tmp"
        path = tmp / f"{expected}.lock"
        try:
            tmp.mkdir(parents=True, exist_ok=True)
            (self.root / "sha256").mkdir(parents=True, exist_ok=True)
            fd = self._lock_file(path)
        except OSError as err:
            raise ArtefactError(f"cannot write the artefact store at {self.root}: {err.strerror or err}",
                                "set ANKLUME_CACHE_DIR to a writable folder") from None
        try:
            yield
        finally:
            os.close(fd)  # closing releases the lock

    def _lock_file(self, path: Path) -> int:
        """An open, locked (fcntl.flock) lock file at ``path``: never through a link; a
        link there is replaced, and the lock is kept only on the file the path names
        once it is held (another process may have replaced a link meanwhile)."""
        for _attempt in range(5):
            try:
                fd = _open_own(path, os.O_RDWR | os.O_CREAT, single_link=False)
            except _NotOurs:
                _remove(path)
                continue
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                now = os.lstat(path)
            except FileNotFoundError:
                now = None
            held = os.fstat(fd)
            if now is not None and (now.st_dev, now.st_ino) == (held.st_dev, held.st_ino):
                return fd
            os.close(fd)
        raise OSError(errno.EAGAIN, f"{path} keeps changing under the store")

    def _download(self, expected: str, url: str, *, size: int | None, what: str,
                  headers: Mapping[str, str], progress: Progress | None) -> None:
        partial = self.root / "tmp" / f"{expected}.partial"
        try:
            for _attempt in range(3):
                fd = self._open_partial(partial)
                try:
                    self._stream(expected, url, partial, fd, size=size, what=what, headers=headers,
                                 progress=progress)
                    return
                except _Restart:
                    os.ftruncate(fd, 0)
                finally:
                    if os.fstat(fd).st_size == 0:  # nothing to resume: leave no empty file behind
                        partial.unlink(missing_ok=True)
                    os.close(fd)
            raise _Failure(f"{what}: {url} does not answer range requests consistently")
        except OSError as err:  # the store itself (disk full, permissions), not the network
            raise ArtefactError(f"cannot write {what} into the artefact store at {self.root}: "
                                f"{err.strerror or err}", "set ANKLUME_CACHE_DIR to a writable folder") from None

    @staticmethod
    def _open_partial(partial: Path) -> int:
        """The partial download, open for reading and writing, created if absent; a link (or
        a FIFO...) in its place is removed, never written through."""
        for _attempt in range(3):
            try:
                return _open_own(partial, os.O_RDWR | os.O_CREAT, single_link=True)
            except _NotOurs:
                _remove(partial)
        raise OSError(errno.EAGAIN, f"{partial} keeps changing under the store")

    def _stream(self, expected: str, url: str, partial: Path, fd: int, *, size: int | None, what: str,
                headers: Mapping[str, str], progress: Progress | None) -> None:
        if not url.startswith(("http://", "https://")):
            raise _Failure(f"{what}: {url!r} is not an http(s) URL")
        hasher, offset = _hash_fd(fd)  # what an earlier run brought (nothing: a new, empty file)
        if offset:
            if hasher.hexdigest() == expected and (size is None or offset == size):
                self._finish(expected, url, partial, fd, hasher, offset, size=size, what=what, resumed=True)
                return  # a previous run got every byte but stopped before storing them
            if size is not None and offset >= size:
                raise _Restart
        request_headers = dict(headers)
        if offset:
            request_headers["Range"] = f"bytes={offset}-"
        budget = Budget(timeout=self.timeout, min_rate=self.min_rate, window=self.rate_window)
        try:
            request, response = open_url(url, request_headers, budget)
        except urllib.error.HTTPError as err:
            err.close()
            if err.code == 416 and offset:
                raise _Restart from None
            raise _Failure(f"{what}: GET {err.url or url} answered HTTP {err.code} {err.reason}") from None
        except RedirectRefused as err:
            raise _Failure(f"{what}: GET {url}: {err}") from None
        except OutOfTime:
            raise _Failure(f"{what}: {url} {self._too_slow()}, before answering", self._slow_hint(partial)) from None
        except (OSError, http.client.HTTPException, ValueError) as err:
            raise _Failure(f"{what}: cannot fetch {url}: {describe_error(err, self.timeout)}") from None
        with response:
            final = request.current
            announced = announced_length(response)
            if response.status == 206 and offset:
                match = _CONTENT_RANGE.fullmatch(response.headers.get("Content-Range", "").strip())
                if not match or int(match.group(1)) != offset:
                    raise _Restart
                whole = int(match.group(3)) if match.group(3) != "*" else None
                if announced is not None and whole is not None and offset + announced != whole:
                    raise _Restart  # the range and the length disagree: from zero, without a range
                whole = whole if whole is not None or announced is None else offset + announced
            elif response.status == 200:
                hasher, offset = hashlib.sha256(), 0  # the whole body again: start from zero
                whole = announced
            else:
                raise _Failure(f"{what}: GET {final} answered HTTP {response.status} {response.reason}")
            limit = size if size is not None else self.max_unsized
            if whole is not None and size is not None and whole != size:
                raise _Failure(f"{what}: {final} announces {whole} bytes, the lock pins {size}", "the source serves other bytes than the lock pins; "
                               "nothing was stored")
            if whole is not None and whole > limit:
                raise _Failure(f"{what}: {final} announces {whole} bytes, more than the {_size(limit)} "
                               "the store takes for an artefact the lock pins no size for", _UNSIZED_HINT)
            total = size if size is not None else whole
            done = self._receive(response, partial, fd, hasher, offset, limit=limit, url=final, what=what,
                                 total=total, progress=progress)
            if done > limit:
                partial.unlink(missing_ok=True)
                if size is not None:
                    raise _Failure(f"{what}: {final} sent more than the pinned {size} bytes",
                                   "the source serves other bytes than the lock pins; nothing was stored")
                raise _Failure(f"{what}: {final} sent more than {_size(limit)}, the most the store takes for an "
                               "artefact the lock pins no size for", _UNSIZED_HINT)
            expected_total = whole if whole is not None else size
            if expected_total is not None and done < expected_total:
                raise _Failure(
                    f"{what}: the download from {final} stopped after {done} of {expected_total} bytes "
                    f"(the connection closed before the whole body arrived)",
                    f"the partial download is kept in {partial.parent}: run again to resume it")
        self._finish(expected, final, partial, fd, hasher, done, size=size, what=what, resumed=offset > 0)

    def _too_slow(self) -> str:
        return f"fell below {self.min_rate:g} bytes/s over {self.rate_window:g} s"

    def _slow_hint(self, partial: Path) -> str:
        return (f"the partial download is kept in {partial.parent}: run again to resume it; "
                f"{MIN_RATE_ENV} sets the minimum rate (bytes per second)")

    def _receive(self, response, partial: Path, fd: int, hasher, offset: int, *, limit: int,  # noqa: ANN001
                 url: str, what: str, total: int | None, progress: Progress | None) -> int:
        """Append the body to ``partial`` (open as ``fd``) from ``offset``, hashing as it streams;
        never more than ``limit`` bytes in all: a longer body returns ``limit + 1`` with nothing
        more written."""
        done = offset
        os.ftruncate(fd, offset)
        os.lseek(fd, offset, os.SEEK_SET)
        if progress:
            progress(done, total)
        while True:
            try:
                data = response.read1(NET_CHUNK)  # what has arrived, without waiting for a full chunk
            except OutOfTime:
                os.fsync(fd)
                of = f" of {total}" if total is not None else ""
                raise _Failure(f"{what}: the download from {url} {self._too_slow()}, after {done}{of} bytes",
                               self._slow_hint(partial)) from None
            except (OSError, http.client.HTTPException) as err:
                os.fsync(fd)
                raise _Failure(
                    f"{what}: the download from {url} stopped after {done} bytes: "
                    f"{describe_error(err, self.timeout)}",
                    f"the partial download is kept in {partial.parent}: run again to resume it") from None
            if not data:
                break
            if done + len(data) > limit:
                return limit + 1  # more than may be written: the caller refuses it
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            hasher.update(data)
            done += len(data)
            if progress:
                progress(done, total)
        os.fsync(fd)
        return done

    def _finish(self, expected: str, url: str, partial: Path, fd: int, hasher, done: int, *,  # noqa: ANN001
                size: int | None, what: str, resumed: bool) -> None:
        actual = hasher.hexdigest()
        if actual != expected or (size is not None and done != size):
            partial.unlink(missing_ok=True)
            message = f"sha256 mismatch for {what} from {url}: expected {expected}, got {actual}"
            if size is not None and done != size:
                message += f" ({done} bytes{' or more' if done > size else ''}, expected {size})"
            hint = "the source serves other bytes than the lock pins; nothing was stored"
            if resumed:
                hint += " (the resumed partial download was discarded: run again to fetch from zero)"
            raise _Failure(message, hint, actual)
        final = self.path(expected)
        os.fchmod(fd, 0o444)
        os.replace(partial, final)
        held, now = os.fstat(fd), os.lstat(final)
        if (held.st_dev, held.st_ino) != (now.st_dev, now.st_ino):  # replaced between the hash and the rename
            final.unlink(missing_ok=True)
            raise _Failure(f"{what}: the partial download {partial} was replaced while the store wrote it; "
                           "nothing was stored", "run again")
        self._mark(expected, now)
        dir_fd = os.open(final.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


_UNSIZED_HINT = ("the lock pins no size for it (written by an older anklume): `anklume lock --update NAME` "
                 "pins one; nothing was stored")


def _size(n: int) -> str:
    return f"{n >> 20} MiB" if n and n % (1 << 20) == 0 else f"{n} bytes"


def download_min_rate(env: Mapping[str, str]) -> float:
    """Bytes per second a download must keep up: ``$ANKLUME_DOWNLOAD_MIN_RATE``, else :data:`MIN_RATE`."""
    return positive_setting(env, MIN_RATE_ENV, MIN_RATE, "bytes per second", ArtefactError)


class SpecStore:
    """Applied specs, content-addressed: ``<root>/<hex of key>.json``, written when a unit is
    applied and read by the planner to say which field changed (``why``, ``build --plan``).
    Default root: ``$XDG_DATA_HOME/anklume/specs``."""

    def __init__(self, root: Path | None = None):
        if root is None:
            base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
            root = Path(base) / "anklume" / "specs"
        self.root = root

    def path(self, key: str) -> Path:
        return self.root / f"{key.removeprefix('blake3:')}.json"

    def put(self, key: str, spec: Mapping[str, object]) -> None:
        path = self.path(key)
        if not path.exists():
            atomic_write(path, canonical(spec) + b"\n")

    def get(self, key: str) -> dict[str, object] | None:
        """The spec applied under ``key``; None when it is missing or unreadable (it only explains)."""
        try:
            data = read_or_none(self.path(key))
        except OSError:
            return None
        if data is None:
            return None
        try:
            return jsonsafe.decode(data)
        except msgspec.DecodeError:
            return None

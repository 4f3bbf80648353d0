"""The local content-addressed artefact store: pinned artefacts fetched once, verified.

A pinned artefact (the Ollama release tarball, a model blob, the Open WebUI wheel) is named
by the sha256 the lock records.  :meth:`ArtefactStore.ensure` is a fixed-output fetch, as
in Nix: the bytes are downloaded once, hashed while they stream, and kept only if their
digest (and size, when known) is the pinned one.  Layout (``<root>`` defaults to
``default_cache_dir() / "store"``)::

    <root>/sha256/<64 hex>        a verified artefact, read-only (0444)
    <root>/tmp/<64 hex>.partial   a download in progress, or one cut short (resumed next time)
    <root>/tmp/<64 hex>.lock      the per-digest lock (fcntl.flock) one fetcher holds

A download that stops early keeps its partial file; the next ``ensure`` re-hashes it and asks
for the rest with ``Range: bytes=N-`` (a 206 appends, a 200 starts again from zero).  A
finished download whose digest or size is wrong is deleted, never stored.  Two threads or
processes ensuring the same digest take turns on the lock: the second finds it stored.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import http.client
import os
import re
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

from anklume.errors import AnklumeError
from anklume.fsio import default_cache_dir
from anklume.resolve.http import USER_AGENT, _describe

#: Read size when hashing a file on disk (bench/sha256_throughput.py measures it).
HASH_CHUNK = 4 * 1024 * 1024
#: Read size when streaming a download.
NET_CHUNK = 1024 * 1024

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
    hasher = hasher if hasher is not None else hashlib.sha256()
    buf = bytearray(chunk or HASH_CHUNK)
    view = memoryview(buf)
    size = 0
    with open(path, "rb", buffering=0) as f:
        with contextlib.suppress(AttributeError, OSError):
            os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_SEQUENTIAL)
        while n := f.readinto(buf):
            hasher.update(view[:n])
            size += n
    return hasher, size


def digest_hex(sha256: str) -> str:
    """The 64 lower-case hex digits of ``"sha256:<hex>"`` or ``"<hex>"``, else ArtefactError."""
    hexpart = sha256.removeprefix("sha256:") if isinstance(sha256, str) else ""
    if not _HEX.fullmatch(hexpart):
        raise ArtefactError(f"{sha256!r} is not a sha256 digest",
                            'expected 64 lower-case hex digits, optionally after "sha256:"')
    return hexpart


class ArtefactStore:
    """Artefacts by sha256 on local disk, downloaded on demand and verified."""

    def __init__(self, root: Path | None = None, *, timeout: float = 60.0):
        self.root = Path(root) if root is not None else default_cache_dir(os.environ) / "store"
        self.timeout = timeout

    # --- reading --------------------------------------------------------------------------

    def path(self, sha256: str) -> Path:
        """Where the artefact with this digest lives (whether or not it is there yet)."""
        return self.root / "sha256" / digest_hex(sha256)

    def has(self, sha256: str, size: int | None = None) -> bool:
        """Present (and ``size`` bytes long when given); the bytes are not re-hashed."""
        try:
            st = os.stat(self.path(sha256))
        except (FileNotFoundError, NotADirectoryError):
            return False
        return st.st_size == size if size is not None else True

    def verify(self, sha256: str) -> str | None:
        """Re-hash the stored file: its actual hex digest, None if absent.  A file whose
        digest is not its name is removed (the next ``ensure`` fetches it again)."""
        expected = digest_hex(sha256)
        path = self.path(expected)
        try:
            hasher, _ = hash_file(path)
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as err:
            raise ArtefactError(f"cannot read the stored artefact {path}: {err.strerror or err}") from None
        actual = hasher.hexdigest()
        if actual != expected:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
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
            st = os.stat(path)
        except (FileNotFoundError, NotADirectoryError):
            return False
        if size is None or st.st_size == size:
            return True
        if self.verify(expected) != expected:
            return False
        raise ArtefactError(
            f"{what}: the stored file {path} has the pinned sha256 but {st.st_size} bytes, "
            f"not the pinned size {size}", "the size recorded in the lock is wrong: run `anklume lock`")

    @contextlib.contextmanager
    def _locked(self, expected: str) -> Iterator[None]:
        tmp = self.root / "tmp"
        try:
            tmp.mkdir(parents=True, exist_ok=True)
            (self.root / "sha256").mkdir(parents=True, exist_ok=True)
            fd = os.open(tmp / f"{expected}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            raise ArtefactError(f"cannot write the artefact store at {self.root}: {err.strerror or err}",
                                "set ANKLUME_CACHE_DIR to a writable folder") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the lock

    def _download(self, expected: str, url: str, *, size: int | None, what: str,
                  headers: Mapping[str, str], progress: Progress | None) -> None:
        partial = self.root / "tmp" / f"{expected}.partial"
        try:
            for _attempt in range(3):
                try:
                    self._stream(expected, url, partial, size=size, what=what, headers=headers,
                                 progress=progress)
                    return
                except _Restart:
                    partial.unlink(missing_ok=True)
            raise _Failure(f"{what}: {url} does not answer range requests consistently")
        except OSError as err:  # the store itself (disk full, permissions), not the network
            raise ArtefactError(f"cannot write {what} into the artefact store at {self.root}: "
                                f"{err.strerror or err}", "set ANKLUME_CACHE_DIR to a writable folder") from None

    def _stream(self, expected: str, url: str, partial: Path, *, size: int | None, what: str,
                headers: Mapping[str, str], progress: Progress | None) -> None:
        if not url.startswith(("http://", "https://")):
            raise _Failure(f"{what}: {url!r} is not an http(s) URL")
        hasher, offset = hashlib.sha256(), 0
        if partial.exists():
            hasher, offset = hash_file(partial)
            if hasher.hexdigest() == expected and (size is None or offset == size):
                self._finish(expected, url, partial, hasher, offset, size=size, what=what, resumed=True)
                return  # a previous run got every byte but stopped before storing them
            if size is not None and offset >= size:
                raise _Restart
        try:  # a URL urllib cannot parse (http://[::1) raises ValueError here, not at open
            request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT, **headers})
            if offset:
                request.add_header("Range", f"bytes={offset}-")
            response = urllib.request.urlopen(request, timeout=self.timeout)
        except urllib.error.HTTPError as err:
            err.close()
            if err.code == 416 and offset:
                raise _Restart from None
            raise _Failure(f"{what}: GET {err.url or url} answered HTTP {err.code} {err.reason}") from None
        except (OSError, http.client.HTTPException, ValueError) as err:
            raise _Failure(f"{what}: cannot fetch {url}: {_describe(err, self.timeout)}") from None
        with response:
            announced = _announced_length(response)
            if response.status == 206 and offset:
                match = _CONTENT_RANGE.fullmatch(response.headers.get("Content-Range", "").strip())
                if not match or int(match.group(1)) != offset:
                    raise _Restart
                total = int(match.group(3)) if match.group(3) != "*" else None
            elif response.status == 200:
                hasher, offset = hashlib.sha256(), 0  # the whole body again: start from zero
                total = announced
            else:
                raise _Failure(f"{what}: GET {url} answered HTTP {response.status} {response.reason}")
            total = size if size is not None else total
            done = self._receive(response, partial, hasher, offset, size=size, url=url, what=what,
                                 total=total, progress=progress)
            overflow = size is not None and done > size  # the digest check below rejects it
            short = done - offset < announced if announced is not None else size is not None and done < size
            if short and not overflow:
                expected_total = offset + announced if announced is not None else size
                raise _Failure(
                    f"{what}: the download from {url} stopped after {done} of {expected_total} bytes "
                    f"(the connection closed before the whole body arrived)",
                    f"the partial download is kept in {partial.parent}: run again to resume it")
        self._finish(expected, url, partial, hasher, done, size=size, what=what, resumed=offset > 0)

    def _receive(self, response, partial: Path, hasher, offset: int, *, size: int | None,  # noqa: ANN001
                 url: str, what: str, total: int | None, progress: Progress | None) -> int:
        """Append the body to ``partial`` (from ``offset``), hashing as it streams."""
        buf = bytearray(NET_CHUNK)
        view = memoryview(buf)
        done = offset
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT, 0o644)
        try:
            os.ftruncate(fd, offset)
            os.lseek(fd, offset, os.SEEK_SET)
            if progress:
                progress(done, total)
            while True:
                try:
                    n = response.readinto(buf)
                except (OSError, http.client.HTTPException) as err:
                    os.fsync(fd)
                    raise _Failure(
                        f"{what}: the download from {url} stopped after {done} bytes: "
                        f"{_describe(err, self.timeout)}",
                        f"the partial download is kept in {partial.parent}: run again to resume it") from None
                if not n:
                    break
                chunk = view[:n]
                while chunk:
                    chunk = chunk[os.write(fd, chunk):]
                hasher.update(view[:n])
                done += n
                if progress:
                    progress(done, total)
                if size is not None and done > size:
                    break  # more than the pinned size: the digest check below rejects it
            os.fsync(fd)
        finally:
            os.close(fd)
        return done

    def _finish(self, expected: str, url: str, partial: Path, hasher, done: int, *,  # noqa: ANN001
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
        os.chmod(partial, 0o444)
        os.replace(partial, final)
        dir_fd = os.open(final.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def _announced_length(response) -> int | None:  # noqa: ANN001
    value = response.headers.get("Content-Length")
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None

"""File writes that never leave a half-written file behind, and where caches live."""

from __future__ import annotations

import os
import secrets
import stat
from collections.abc import Mapping
from pathlib import Path

from anklume.errors import AnklumeError

TMP_SUFFIX = ".anklume-tmp"


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path``: temp file in the same folder, fsync, rename over
    ``path`` (a link there is replaced, never followed).  A crash leaves the old
    or the new file, never half of one.  An existing file keeps its permission
    bits; a new one gets 0666 less the umask, like any file the user creates."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        st = os.lstat(path)
        mode = None if stat.S_ISLNK(st.st_mode) else st.st_mode & 0o7777
    except FileNotFoundError:
        mode = None
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}{TMP_SUFFIX}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o666)
    try:
        try:
            if mode is not None:
                os.fchmod(fd, mode)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


_KINDS = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def file_kind(mode: int) -> str:
    """What a file that is not a regular one is, in words: ``a named pipe (FIFO)``..."""
    return next((words for test, words in _KINDS if test(mode)), "not a regular file")


class NotRegularFile(OSError):
    """A path that names a folder, a FIFO, a device or a socket where a file was expected."""

    def __init__(self, path: Path | str, mode: int):
        super().__init__(f"it is {file_kind(mode)}, not a regular file")
        self.strerror = str(self.args[0])
        self.filename = os.fspath(path)
        self.mode = mode


def read_or_none(path: Path | str) -> bytes | None:
    """The bytes of the regular file ``path`` (a link is followed), None if it does not exist.

    Anything else is never read: a FIFO would block the command until someone writes to
    it, a device like /dev/zero would never end.  So it is stat'ed first and raises
    ``NotRegularFile`` (an OSError); the file is then opened without blocking and checked
    again (it may have been replaced in between)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    if not stat.S_ISREG(st.st_mode):
        raise NotRegularFile(path, st.st_mode)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise NotRegularFile(path, st.st_mode)
        chunks = []
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def read_input(path: Path) -> bytes | None:
    """A file the user gave (infra.yml, the lock, an inventory): its bytes, None if it does
    not exist; any other failure (a folder, a FIFO, a device, no permission) is an error
    naming the file, and nothing is read from what is not a regular file."""
    try:
        return read_or_none(path)
    except OSError as exc:
        raise AnklumeError(f"{path}: cannot read it ({exc.strerror or exc})",
                           "check that it is a readable file") from None


def default_cache_dir(env: Mapping[str, str]) -> Path:
    """``$ANKLUME_CACHE_DIR``, else ``$XDG_CACHE_HOME/anklume``, else ``~/.cache/anklume``."""
    if env.get("ANKLUME_CACHE_DIR"):
        return Path(env["ANKLUME_CACHE_DIR"])
    if env.get("XDG_CACHE_HOME"):
        return Path(env["XDG_CACHE_HOME"]) / "anklume"
    return Path.home() / ".cache" / "anklume"

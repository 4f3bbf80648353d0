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


def read_or_none(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


def read_input(path: Path) -> bytes | None:
    """A file the user gave (infra.yml, the lock, an inventory): its bytes, None if it does
    not exist; any other failure (a folder, no permission) is an error naming the file."""
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

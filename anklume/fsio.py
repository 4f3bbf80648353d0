"""File writes that never leave a half-written file behind, and where caches live."""

from __future__ import annotations

import os
import re
import secrets
import shutil
import stat
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from anklume.errors import AnklumeError

TMP_SUFFIX = ".anklume-tmp"
#: ``.<name>.<pid>.<8 hex>.anklume-tmp``: the temp file of ``atomic_write(<name>)`` by process
#: ``<pid>``; before pids were part of the name: ``.<name>.<8 hex>.anklume-tmp``.
_TMP_RE = re.compile(r"\.(?P<name>.+?)(?:\.(?P<pid>[0-9]{1,10}))?\.[0-9a-f]{8}\.anklume-tmp", re.DOTALL)
#: A temp file younger than this is never removed, even when no process here has its pid:
#: its writer may run on another host sharing the folder, or in another pid namespace.
STALE_TMP_AGE_S = 60
#: A temp file older than this is removed whoever wrote it: no atomic write of a tree file
#: or a lock lasts an hour (and a pid may have been reused).
ABANDONED_TMP_AGE_S = 3600


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path``: temp file in the same folder, fsync, rename over
    ``path`` (a link there is replaced, never followed).  A crash leaves the old
    or the new file, never half of one.  An existing file keeps its permission
    bits; a new one gets 0666 less the umask, like any file the user creates."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _write_temp(path, data, sync=True)
    try:
        os.replace(tmp, path)
    except BaseException:
        _unlink_quietly(tmp)
        raise


#: From this many files on, ``atomic_write_many`` flushes them with one ``syncfs`` per file
#: system instead of one fsync each (which costs a journal commit per file: 10,000 files took
#: 13 s of fsync on the bench machine).  Below it, fsync each: ``syncfs`` also waits for
#: whatever else is dirty on the file system.
SYNCFS_FROM = 16


class BatchWriteError(OSError):
    """``atomic_write_many`` could not write ``path`` (the cause is chained)."""

    def __init__(self, path: Path, cause: OSError):
        super().__init__(cause.errno, cause.strerror or str(cause))
        self.path = path


def atomic_write_many(files: Sequence[tuple[Path, bytes]]) -> None:
    """Write each ``(path, data)`` atomically, as ``atomic_write`` does, with one flush to disk
    for them all: every temp file is written first, then flushed (``syncfs`` on each file
    system they are on, or an fsync each when they are few or ``syncfs`` is missing), then
    renamed over its target, then the folders are flushed.

    The files of a folder that does not exist yet (a first build's ``host_vars/``) are written
    with their own names into a temp folder beside it, which is renamed into place whole: one
    create per file and one rename per folder, and the folder appears complete or not at all.
    (Should the folder appear meanwhile, its files are renamed into it one by one.)

    A crash or a ``kill -9`` at any point leaves each target old, new or absent as it was,
    never half of one: a target is only ever replaced by a complete, flushed file.  Temp files
    and folders a killed writer left are removed later (``remove_stale_temps``).  On an error,
    what was not renamed yet is removed and a ``BatchWriteError`` naming the target is raised;
    if the error came while writing, no target has changed."""
    pending: list[tuple[Path, Path]] = []  # (temp file, target), renamed one by one
    new_folders: dict[str, str] = {}  # folder that does not exist -> its temp folder
    written: list[Path] = []  # every file to flush
    folders: dict[str, None] = {}  # folders whose entries change
    renamed = 0
    try:
        for path, data in files:
            folder = os.path.dirname(path) or "."
            if folder not in folders and folder not in new_folders:
                parent = os.path.dirname(folder) or "."
                if not os.path.lexists(folder) and os.path.isdir(parent):
                    tmp_folder = os.path.join(parent, f".{os.path.basename(folder)}.{os.getpid()}."
                                                      f"{secrets.token_hex(4)}{TMP_SUFFIX}")
                    os.mkdir(tmp_folder)
                    new_folders[folder] = tmp_folder
                    folders[parent] = None
                else:
                    os.makedirs(folder, exist_ok=True)
                    folders[folder] = None
            try:
                if folder in new_folders:
                    written.append(Path(new_folders[folder], os.path.basename(path)))
                    _write_new(written[-1], data)
                else:
                    pending.append((_write_temp(path, data), path))
                    written.append(pending[-1][0])
            except OSError as exc:
                raise BatchWriteError(path, exc) from exc
        _flush(written, [*folders, *new_folders.values()])
        for folder, tmp_folder in list(new_folders.items()):
            _place_folder(tmp_folder, folder)
            del new_folders[folder]
        for tmp, path in pending:
            try:
                os.replace(tmp, path)
            except OSError as exc:
                raise BatchWriteError(path, exc) from exc
            renamed += 1
    finally:
        for tmp, _ in pending[renamed:]:
            try:
                os.unlink(tmp)
            except OSError:
                pass
        for tmp_folder in new_folders.values():
            shutil.rmtree(tmp_folder, ignore_errors=True)
    for folder in folders:
        fsync_dir(folder)


def _write_new(path: Path, data: bytes) -> None:
    """A new file (in a temp folder of ours): never through a link, never over a file."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o666)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)


def _place_folder(tmp_folder: str, folder: str) -> None:
    """Rename the flushed temp folder to ``folder``; if ``folder`` appeared meanwhile, move its
    files into it one by one (each rename atomic), then remove the temp folder."""
    fsync_dir(tmp_folder)
    try:
        os.rename(tmp_folder, folder)
        return
    except OSError as exc:
        if not os.path.isdir(folder) or os.path.islink(folder):
            raise BatchWriteError(Path(folder), exc) from exc
    for name in sorted(os.listdir(tmp_folder)):
        try:
            os.replace(os.path.join(tmp_folder, name), os.path.join(folder, name))
        except OSError as exc:
            raise BatchWriteError(Path(folder, name), exc) from exc
    os.rmdir(tmp_folder)


def _write_temp(path: Path, data: bytes, *, sync: bool = False) -> Path:
    """A temp file beside ``path`` holding ``data``, with the mode ``path`` has (if it exists)."""
    try:
        st = os.lstat(path)
        mode = None if stat.S_ISLNK(st.st_mode) else st.st_mode & 0o7777
    except FileNotFoundError:
        mode = None
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}{TMP_SUFFIX}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o666)
    try:
        try:
            if mode is not None:
                os.fchmod(fd, mode)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            if sync:
                os.fsync(fd)
        finally:
            os.close(fd)
    except BaseException:
        _unlink_quietly(tmp)
        raise
    return tmp


def _flush(written: Sequence[Path], folders: Sequence[str]) -> None:
    """Every file of ``written`` on disk: one syncfs per file system, else an fsync each."""
    if len(written) >= SYNCFS_FROM:
        devices: dict[int, str] = {}
        for folder in folders:
            devices.setdefault(os.stat(folder).st_dev, folder)
        if all(_syncfs(folder) for folder in devices.values()):
            return
    for path in written:
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            raise BatchWriteError(path, exc) from exc


_LIBC: list = []


def _syncfs(folder: str) -> bool:
    """``syncfs(2)`` on the file system of ``folder``; False where there is none (not Linux)
    or it failed, and the caller fsyncs each file instead."""
    if not _LIBC:
        try:
            import ctypes

            _LIBC.append(getattr(ctypes.CDLL(None, use_errno=True), "syncfs", None))
        except (OSError, ImportError):
            _LIBC.append(None)
    syncfs = _LIBC[0]
    if syncfs is None:
        return False
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return False
    try:
        return syncfs(fd) == 0
    finally:
        os.close(fd)


def fsync_dir(folder: Path | str) -> None:
    """Flush a folder's entries (the renames into it); a folder that cannot be opened or
    flushed is left (not every file system supports it)."""
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


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


def remove_stale_temps(folder: Path, is_target: Callable[[str], bool],
                       is_target_folder: Callable[[str], bool] = lambda _name: False) -> list[Path]:
    """Remove the temp files ``atomic_write`` left in ``folder`` for files named ``is_target``
    when its process was killed between writing and renaming (SIGKILL, power loss).

    Only names of ``atomic_write``'s own form are considered, and only regular files, or
    folders (``atomic_write_many``'s temp folders) named ``is_target_folder``; one is removed
    when it is older than ``STALE_TMP_AGE_S`` and no process here has its pid, or older than
    ``ABANDONED_TMP_AGE_S`` whatever its pid.  A live writer's file is never removed.
    Returns what was removed; a file that cannot be removed is left (it costs nothing but
    space)."""
    removed: list[Path] = []
    now = time.time()
    try:
        entries = [e for e in os.scandir(folder) if e.name.endswith(TMP_SUFFIX)]
    except OSError:
        return removed
    for entry in entries:
        match = _TMP_RE.fullmatch(entry.name)
        if match is None:
            continue
        try:
            st = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        is_folder = stat.S_ISDIR(st.st_mode)
        if not (is_target_folder(match["name"]) if is_folder else stat.S_ISREG(st.st_mode) and is_target(match["name"])):
            continue
        age = now - st.st_mtime
        if age < STALE_TMP_AGE_S:
            continue
        if age < ABANDONED_TMP_AGE_S and (match["pid"] is None or pid_alive(int(match["pid"]))):
            continue  # its writer may still be at work (an old name says no pid: wait the hour)
        try:
            if is_folder:
                shutil.rmtree(entry.path)
            else:
                os.unlink(entry.path)
        except OSError:
            continue
        removed.append(Path(entry.path))
    return removed


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists here (one of another user's counts)."""
    if pid <= 0:  # 0 and negative numbers name process groups, not a writer
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except (OverflowError, OSError):
        return False
    return True


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


def _unlink_quietly(path: str | Path) -> None:
    """Remove a temp file a failed write leaves, if it is there."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass

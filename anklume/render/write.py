"""Put the rendered tree on disk: plan (read and compare), apply (atomic writes),
find orphans, prune them.

- ``diff_tree`` reads each existing file once and computes its new bytes; files
  whose bytes would not change are listed apart and never rewritten (their mtime
  stays), so a no-op build over 20,000 files is a read and a compare each.
- ``apply_tree`` writes each changed file through a temporary file in the same
  folder, then flushes them all to disk at once, then ``os.replace``s each
  (``anklume.fsio.atomic_write_many``): a crash leaves the old or the new file,
  never half of one.
- Symbolic links are never followed: a managed file or folder that is a link is an
  error, an orphan that is a link is reported and left alone.
- Temp files that a killed writer left (``.<file>.<pid>.<hex>.anklume-tmp``) are removed
  by the next ``apply_tree`` once their writer is gone; a live writer's never are.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from anklume.errors import AnklumeError
from anklume.fsio import BatchWriteError, atomic_write_many, file_kind, remove_stale_temps
from anklume.model.yamlsafe import BoundedLoader
from anklume.project import LOCK_NAME
from anklume.render.managed import UnmergeableFile, extract_managed, managed_block, merge_managed

#: Folders of the tree; only ``*.yml`` files directly in them are anklume's business.
TREE_DIRS = ("inventory", "group_vars", "host_vars")
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)

_CHUNK = 1 << 20


class TreeError(AnklumeError):
    """A file of the tree cannot be read, merged or written."""


@dataclass(frozen=True)
class FileChange:
    path: str  # relative to the root: "host_vars/pw-llm.yml"
    old: str | None  # current text, None when the file does not exist
    new: str

    @property
    def created(self) -> bool:
        return self.old is None


@dataclass(frozen=True)
class TreeChanges:
    root: Path
    changed: list[FileChange] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.changed)


@dataclass(frozen=True)
class Orphan:
    path: Path
    protected: bool
    reason: str


@dataclass(frozen=True)
class PruneResult:
    deleted: list[Orphan] = field(default_factory=list)
    skipped: list[Orphan] = field(default_factory=list)


# -- reading ------------------------------------------------------------------------


def read_tree_file(path: Path | str, rel: str) -> str | None:
    """The text of the tree file ``rel`` at ``path``, None if it does not exist; never
    through a symbolic link.  Any other problem (a link, a folder, unreadable, not UTF-8)
    is a ``TreeError`` naming ``rel``."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise TreeError(f"cannot read {rel}: {exc.strerror}") from None
    if not stat.S_ISREG(st.st_mode) and not stat.S_ISLNK(st.st_mode):
        _not_regular(rel, st.st_mode)  # never opened: a FIFO would block, a device never end
    try:
        fd = os.open(path, os.O_RDONLY | _NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise TreeError(f"{rel} is a symbolic link; anklume does not follow links",
                            "replace it by a regular file (or delete it) and build again") from None
        raise TreeError(f"cannot read {rel}: {exc.strerror}") from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):  # replaced since the lstat
            _not_regular(rel, mode)
        chunks = []
        while chunk := os.read(fd, _CHUNK):
            chunks.append(chunk)
    except IsADirectoryError:
        raise TreeError(f"{rel} is a folder, not a file", "move it aside and build again") from None
    except OSError as exc:
        raise TreeError(f"cannot read {rel}: {exc.strerror}") from None
    finally:
        os.close(fd)
    data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise TreeError(f"{rel} is not UTF-8 text", "save it as UTF-8 and build again") from None


def _not_regular(rel: str, mode: int) -> None:
    if stat.S_ISDIR(mode):
        raise TreeError(f"{rel} is a folder, not a file", "move it aside and build again")
    raise TreeError(f"{rel} is {file_kind(mode)}, not a regular file", "move it aside and build again")


def _check_dirs(root: Path, rels: Iterable[str]) -> None:
    """The folders we write into must be real folders inside the tree, not links."""
    for sub in sorted({rel.rpartition("/")[0] for rel in rels} - {""}):
        path = root / sub
        if path.is_symlink():
            raise TreeError(f"{sub}/ is a symbolic link; anklume does not write through links",
                            f"replace {sub}/ by a real folder")


def diff_tree(root: Path, rendered: Mapping[str, str]) -> TreeChanges:
    """Read every target file and compute its new text; nothing is written."""
    root = Path(root)
    _check_dirs(root, rendered)
    changes = TreeChanges(root=root)
    base = os.fspath(root)
    for rel, body in rendered.items():
        sub, _, name = rel.partition("/")
        if sub not in TREE_DIRS or not name.endswith(".yml") or "/" in name or name.startswith("."):
            raise TreeError(f"refusing to write {rel!r}: not a file of the Ansible tree")
        old = read_tree_file(f"{base}/{rel}", rel)
        try:
            new = merge_managed(old, managed_block(body))
        except UnmergeableFile as exc:
            raise TreeError(f"{rel}: {exc.message}", exc.hint) from None
        if new == old:
            changes.unchanged.append(rel)
        else:
            changes.changed.append(FileChange(rel, old, new))
    return changes


# -- writing ------------------------------------------------------------------------


def apply_tree(changes: TreeChanges) -> None:
    """Write every changed file atomically; unchanged files are not touched.  First, the
    temp files that killed writers left in the tree (and of the lock beside it) are removed
    (``anklume.fsio.remove_stale_temps``: never a live writer's)."""
    remove_stale_tree_temps(changes.root)
    base = os.fspath(changes.root)
    files = [(Path(f"{base}/{change.path}"), change.new.encode("utf-8")) for change in changes.changed]
    try:
        atomic_write_many(files)
    except BatchWriteError as exc:
        rel = os.path.relpath(exc.path, base)
        raise TreeError(f"cannot write {rel}: {exc.strerror or exc}") from None
    except OSError as exc:  # a folder that cannot be made
        raise TreeError(f"cannot write the tree: {exc.strerror or exc}") from None


def remove_stale_tree_temps(root: Path) -> list[Path]:
    """Temp files of dead writers of ``*.yml`` files in the tree's folders, and of the lock, and
    the temp folders of the tree's folders (a first build killed before renaming them)."""
    removed = remove_stale_temps(root, lambda name: name == LOCK_NAME, lambda name: name in TREE_DIRS)
    for sub in TREE_DIRS:
        folder = root / sub
        if not folder.is_symlink() and folder.is_dir():
            removed += remove_stale_temps(folder, lambda name: name.endswith(".yml"))
    return removed


# -- orphans ------------------------------------------------------------------------


def find_orphans(root: Path, rendered: Mapping[str, str]) -> list[Orphan]:
    """``*.yml`` files in inventory/, group_vars/ (except all.yml) and host_vars/ that
    the rendered tree does not contain, each with whether it is protected and why.

    Protection is the default: an orphan is unprotected (``--prune`` may delete it) only
    when its managed section says ``instance_ephemeral: true`` (host_vars) or
    ``domain_ephemeral: true`` (group_vars); an orphan ``inventory/<d>.yml`` only when
    ``group_vars/<d>.yml`` says so (the original deleted it whatever the domain).  A
    missing key, a section that does not parse, a file without a managed section (not
    written by anklume), one whose markers do not make one section, or a link is protected.
    """
    root = Path(root)
    orphans: list[Orphan] = []
    for sub in TREE_DIRS:
        folder = root / sub
        if folder.is_symlink() or not folder.is_dir():
            continue
        with os.scandir(folder) as entries:
            names = sorted(e.name for e in entries if e.name.endswith(".yml") and not e.is_dir(follow_symlinks=False))
        for name in names:
            rel = f"{sub}/{name}"
            if rel in rendered or rel == "group_vars/all.yml":
                continue
            orphans.append(_orphan(root, rel))
    return orphans


def _orphan(root: Path, rel: str) -> Orphan:
    path = root / rel
    if path.is_symlink():
        return Orphan(path, True, "a symbolic link: not followed, remove it by hand")
    try:
        text = read_tree_file(path, rel)
    except TreeError as exc:
        return Orphan(path, True, f"cannot read it: {exc.message}")
    if text is None:
        return Orphan(path, False, "already gone")
    try:
        section = extract_managed(text)
    except UnmergeableFile as exc:
        return Orphan(path, True, f"its managed section is unclear: {exc.message}")
    if section is None:
        return Orphan(path, True, "no managed section: not written by anklume, remove it by hand")
    sub, _, name = rel.partition("/")
    if sub == "inventory":
        # The original read the inventory file itself, which never says; the domain's
        # group_vars does.
        group_vars = f"group_vars/{name}"
        if (root / group_vars).is_symlink():
            return Orphan(path, True, f"{group_vars} is a symbolic link (not followed)")
        try:
            gtext = read_tree_file(root / group_vars, group_vars)
        except TreeError as exc:
            return Orphan(path, True, f"cannot read {group_vars}: {exc.message}")
        if gtext is None:
            return Orphan(path, True, f"no {group_vars} says whether the domain was ephemeral")
        try:
            section = extract_managed(gtext)
        except UnmergeableFile as exc:
            return Orphan(path, True, f"the managed section of {group_vars} is unclear: {exc.message}")
        if section is None:
            return Orphan(path, True, f"{group_vars} has no managed section")
        protected, why = _protection(section, group_vars, "domain_ephemeral")
        return Orphan(path, protected, why)
    key = "domain_ephemeral" if sub == "group_vars" else "instance_ephemeral"
    protected, why = _protection(section, rel, key)
    return Orphan(path, protected, why)


def _protection(section: str, rel: str, key: str) -> tuple[bool, str]:
    """Only an explicit ``true`` makes the resource ephemeral, hence deletable; anything
    else (false, missing, unreadable) keeps it: protection is the default."""
    try:
        data = yaml.load(section, Loader=BoundedLoader)  # nesting bounded: a user's file
    except yaml.YAMLError as exc:
        problem = getattr(exc, "problem", None) or "invalid YAML"
        return True, f"the managed section of {rel} does not parse ({problem})"
    if not isinstance(data, dict) or key not in data:
        return True, f"the managed section of {rel} has no {key}"
    value = data[key]
    shown = "true" if value is True else "false" if value is False else repr(value)
    if value is True:
        return False, f"{rel} says {key}: {shown}"
    return True, f"{rel} says {key}: {shown}"


def prune(orphans: Iterable[Orphan]) -> PruneResult:
    """Delete the unprotected orphans; protected ones are skipped."""
    result = PruneResult()
    for orphan in orphans:
        if orphan.protected:
            result.skipped.append(orphan)
            continue
        try:
            os.unlink(orphan.path)
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise TreeError(f"cannot delete the orphan {orphan.path}: {exc.strerror or exc}",
                            "check the folder's permissions, or remove it by hand") from None
        result.deleted.append(orphan)
    return result

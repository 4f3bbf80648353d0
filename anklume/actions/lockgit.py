"""The lock in git: a conflicted lock merged from both sides, the merge driver, the diff driver.

- ``merge_sides``: the two sides (and the base) of a conflicted ``anklume.lock``: from the
  merge stages git keeps in its index when there are any (exact), else from the conflict
  markers in the file (``anklume.markers``).
- ``do_lock_merge`` is git's merge driver (``anklume lock-merge %O %A %B %P``, registered by
  ``anklume init``): it finds the merged ``infra.yml`` the way git merges it (the three
  versions of it from the commits being merged, ``git merge-file`` when both sides changed
  it), merges the pins (``anklume.lock.merge``) without the network, and writes the merged
  lock; on a real conflict it leaves git's usual conflict and says what to run.
- ``do_lock_textconv`` is the diff driver (``textconv``): the lock as one line per pin.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from anklume.actions.git import Git, GitError
from anklume.errors import AnklumeError, InvalidInfra, LockFormatError, ResolveError
from anklume.lock.assemble import Update, lock_infra
from anklume.lock.codec import decode_lock, encode_lock
from anklume.lock.merge import Conflict, Merged, merge_locks
from anklume.lock.schema import Lock
from anklume.lock.show import label, pin_changes, summary, textconv_lines
from anklume.markers import MalformedMarkers, conflict_lines, split_sides
from anklume.model.load import load_infra
from anklume.project import INFRA_NAME


class LockConflict(AnklumeError):
    """The same input pinned differently on both sides of a merge: nothing was written."""

    def __init__(self, file: str, conflicts: Sequence[Conflict], *, git: bool):
        n = len(conflicts)
        lines = "\n".join(f"  {c.line()}" for c in conflicts)
        super().__init__(f"{file}: {n} pin{'s' if n != 1 else ''} locked differently on the two sides of the "
                         f"merge; nothing was written\n{lines}", conflict_hint(conflicts, git=git))
        self.conflicts = list(conflicts)


def conflict_hint(conflicts: Sequence[Conflict], *, git: bool) -> str:
    """The ways out: re-resolve (``--update``), or keep a side (``--ours``/``--theirs``)."""
    names = [c.names[0] for c in conflicts]
    sides = [c.names[0] for c in conflicts if not c.text]  # a slot claimed twice has no side to keep
    hint = f"re-resolve {'it' if len(names) == 1 else 'them'} with `anklume lock --update {' '.join(names)}`"
    if len(sides) == 1:
        hint += f", or keep one side with `anklume lock --ours {sides[0]}` or `anklume lock --theirs {sides[0]}`"
    elif sides:
        hint += (f", or keep one side of each with --ours NAME / --theirs NAME "
                 f"(e.g. `anklume lock --ours {sides[0]} --theirs {sides[1]}`)")
    return hint + ("; then `git add anklume.lock`" if git else "")


@dataclass(frozen=True)
class MergeSides:
    ours: Lock
    theirs: Lock
    base: Lock | None
    #: Where the sides come from, for the report.
    source: str
    #: Whether git holds the merge (its index has the stages): the user ends with `git add`.
    in_git: bool


def is_conflicted(data: bytes | None) -> bool:
    return data is not None and conflict_lines(data) is not None


def merge_sides(lock_file: Path, data: bytes) -> MergeSides:
    """The sides of the conflicted lock ``lock_file`` (holding ``data``)."""
    name = str(lock_file)
    git = Git(lock_file.parent)
    top = git.toplevel()
    if top is not None:
        rel = os.path.relpath(lock_file.resolve(), top.resolve())
        stages = git.stages(rel)
        if 2 in stages and 3 in stages:
            blobs = {stage: git.blob(sha) for stage, sha in stages.items()}
            base = _decode_or_none(blobs.get(1), f"{name} (base)")
            return MergeSides(ours=_side(blobs[2], f"{name} (ours, :2:{rel})"),
                              theirs=_side(blobs[3], f"{name} (theirs, :3:{rel})"), base=base,
                              source="the merge stages in git's index" + (", with their base" if base else ""),
                              in_git=True)
    try:
        sides = split_sides(data)
    except MalformedMarkers as exc:
        raise AnklumeError(f"{name}: git's conflict markers do not make whole hunks ({exc})",
                           "restore it with `git checkout --merge anklume.lock`, or keep one side "
                           "(`git checkout --ours anklume.lock`), then run `anklume lock`") from None
    assert sides is not None
    base = _decode_or_none(sides.base, f"{name} (base)")
    return MergeSides(ours=_side(sides.ours, f"{name} (ours)"), theirs=_side(sides.theirs, f"{name} (theirs)"),
                      base=base, source="the conflict markers in the file" + (", with the base (diff3)" if base else ""),
                      in_git=top is not None)


def _side(data: bytes | None, name: str) -> Lock:
    if data is None:
        raise AnklumeError(f"{name}: git has no such blob")
    try:
        return decode_lock(data, name)
    except LockFormatError as exc:
        raise LockFormatError(exc.message, "keep the other side (`git checkout --ours anklume.lock` or "
                                           "`--theirs`), then run `anklume lock`") from None


def _decode_or_none(data: bytes | None, name: str) -> Lock | None:
    """The base: a help when it reads, never a reason to stop."""
    if not data:
        return None
    try:
        return decode_lock(data, name)
    except LockFormatError:
        return None


def merge_lines(merged: Merged, new: Lock) -> list[str]:
    """What was taken from where, one line per pin (those alike on both sides counted)."""
    lines = [f"  {pick.line()}" for pick in merged.picks if pick.source != "both"]
    both = sum(1 for pick in merged.picks if pick.source == "both")
    if both:
        lines.append(f"  {both} pin{'s' if both != 1 else ''} the same on both sides")
    for pick in merged.dropped:
        lines.append(f"  dropped {label(pick.group, pick.name)}: {summary(pick.group, pick.pin)} "
                     f"({pick.source}: {pick.why})")
    for change in pin_changes(merged.lock, new):
        if change.new is not None:  # what lock_infra resolved: --update names, or pins neither side had
            lines.append(f"  {'resolved':<7} {label(change.group, change.name)}: {summary(change.group, change.new)}")
    return lines


# -- the merge driver ------------------------------------------------------------------------


class _NotOffline(ResolveError):
    """The merge driver never fetches: a pin neither side has stops it."""


class _NoResolver:
    """What the merge driver resolves with: nothing."""

    def _refuse(self, what: str):
        raise _NotOffline(f"{what} is pinned on neither side")

    def image(self, original):
        self._refuse(f"the image {original.remote}:{original.alias}")

    def ollama(self, original):
        self._refuse("Ollama " + original.version)

    def model(self, ref):
        self._refuse(f"the model {ref}")

    def open_webui(self, original):
        self._refuse("Open WebUI " + original.version)

    def gpu_inventory(self, member=None):
        self._refuse("a GPU (the host's inventory is needed)" if member is None else
                     f"a GPU on cluster member {member} (its inventory is needed)")

    def cluster(self):
        self._refuse("a machine's cluster member (the cluster's members are needed)")


class DriverStop(Exception):
    """The merge driver leaves the lock conflicted, for this reason (lines for the user)."""

    def __init__(self, lines: list[str]):
        super().__init__("\n".join(lines))
        self.lines = lines


def do_lock_merge(base_file: Path, ours_file: Path, theirs_file: Path, path: str) -> int:
    """git's merge driver for ``anklume.lock``: exit 0 with the merged lock in ``ours_file``, or 1
    with git's conflict markers there (the index keeps the three stages for ``anklume lock``)."""
    say = lambda line: print(f"anklume: {line}", file=sys.stderr)  # noqa: E731 - git shows the driver's stderr
    base, ours, theirs = (_read(base_file), _read(ours_file), _read(theirs_file))
    git = Git(Path.cwd(), keep_env=True)
    try:
        new, merged = _driver_merge(git, path, base, ours, theirs)
    except DriverStop as stop:
        for line in stop.lines:
            say(line)
        ours_file.write_bytes(_conflict_text(git, base_file, ours_file, theirs_file, ours, theirs))
        return 1
    ours_file.write_bytes(encode_lock(new))
    took = [p for p in merged.picks if p.source != "both"]
    say(f"merged {path} pin by pin ({len(merged.picks) - len(took)} alike on both sides):")
    for line in [f"  {p.line()}" for p in took] + [
            f"  dropped {label(p.group, p.name)}: {summary(p.group, p.pin)} ({p.source}: {p.why})" for p in merged.dropped]:
        say(line)
    return 0


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError:
        return b""


def _driver_merge(git: Git, path: str, base: bytes, ours: bytes, theirs: bytes) -> tuple[Lock, Merged]:
    try:
        ours_lock, theirs_lock = decode_lock(ours, f"{path} (ours)"), decode_lock(theirs, f"{path} (theirs)")
    except LockFormatError as exc:
        raise DriverStop([f"{path}: {exc.message}", "resolve it by hand: keep one side "
                          "(`git checkout --ours anklume.lock`), then run `anklume lock`"]) from None
    base_lock = _decode_or_none(base, f"{path} (base)")
    infra_path = str(PurePosixPath(path).with_name(INFRA_NAME))
    text = merged_infra_text(git, path, infra_path, base, ours, theirs)
    try:
        infra = load_infra(text, infra_path)
    except InvalidInfra as exc:
        raise DriverStop([f"the merged {infra_path} does not load:", *exc.render().splitlines(),
                          f"fix {infra_path}, then run `anklume lock` and `git add {path}`"]) from None
    merged = merge_locks(infra, ours_lock, theirs_lock, base_lock)
    if merged.conflicts:
        n = len(merged.conflicts)
        raise DriverStop([f"{path}: {n} pin{'s' if n != 1 else ''} locked differently on the two sides:",
                          *(f"  {c.line()}" for c in merged.conflicts),
                          f"finish the merge: {conflict_hint(merged.conflicts, git=True)}"])
    try:
        new = lock_infra(infra, merged.lock, _NoResolver(), Update(), file=infra_path)
    except _NotOffline as exc:
        raise DriverStop([f"{path}: {exc.message}; the merge driver never fetches",
                          f"finish the merge with `anklume lock` (it merges both sides and resolves "
                          f"only what is missing), then `git add {path}`"]) from None
    except AnklumeError as exc:
        raise DriverStop([f"{path}: {exc.message}", f"finish the merge with `anklume lock`, then `git add {path}`"]) from None
    return new, merged


def merged_infra_text(git: Git, lock_path: str, infra_path: str, base: bytes, ours: bytes, theirs: bytes) -> bytes:
    """The ``infra.yml`` beside the lock as this merge leaves it.

    During a merge git has not written the merged files yet, so the three versions of
    ``infra.yml`` are read from the commits being merged: ours is ``HEAD``; theirs is the
    commit named by git's merge state (``GITHEAD_*``, ``MERGE_HEAD``, ``CHERRY_PICK_HEAD``,
    ``REVERT_HEAD``, the rebase's current commit) or, failing that, the commit that brought
    their lock; the base is their merge base (or parent).  Each is accepted only when its lock
    is the exact blob git handed the driver.  The result is what ``git merge-file`` makes of
    the three; a conflict there (or a version not found) stops the driver."""
    def blob_at(rev: str, file: str) -> str | None:
        return git.blob_id(f"{rev}:{file}")

    ours_id, theirs_id = git.hash_object(ours), git.hash_object(theirs)
    base_id = git.hash_object(base) if base else None
    if blob_at("HEAD", lock_path) != ours_id:
        raise DriverStop([f"cannot tell which commit is ours: HEAD's {lock_path} is not the one being merged",
                          f"finish the merge with `anklume lock`, then `git add {lock_path}`"])
    theirs_rev = next((c for c in _their_candidates(git, theirs_id) if blob_at(c, lock_path) == theirs_id), None)
    if theirs_rev is None:
        raise DriverStop([f"cannot tell which commit brought their {lock_path}",
                          f"finish the merge with `anklume lock`, then `git add {lock_path}`"])
    base_rev = next((c for c in _base_candidates(git, theirs_rev) if blob_at(c, lock_path) == base_id), None)
    if base_rev is None:
        raise DriverStop([f"cannot tell the merge base of {lock_path}",
                          f"finish the merge with `anklume lock`, then `git add {lock_path}`"])
    o, a, b = (git.blob(f"{rev}:{infra_path}") for rev in (base_rev, "HEAD", theirs_rev))
    if a == b or b == o:
        result = a
    elif a == o:
        result = b
    else:
        result = _merge_file(git, o or b"", a or b"", b or b"")
        if result is None:
            raise DriverStop([f"{infra_path} conflicts too: the lock is merged once it is",
                              f"resolve {infra_path}, then run `anklume lock` (it merges both sides' pins "
                              f"offline) and `git add {infra_path} {lock_path}`"])
    if result is None:
        raise DriverStop([f"{infra_path} is not in the merged commits",
                          f"finish the merge with `anklume lock`, then `git add {lock_path}`"])
    return result


def _their_candidates(git: Git, theirs_id: str) -> Iterator[str]:
    """Commits that may be theirs, the likeliest first; the caller keeps the first whose lock fits."""
    yield from (name[len("GITHEAD_"):] for name in os.environ if name.startswith("GITHEAD_"))
    gdir = git.git_dir()
    if gdir is not None:
        for name in ("MERGE_HEAD", "CHERRY_PICK_HEAD", "REVERT_HEAD", "REBASE_HEAD", "rebase-merge/stopped-sha",
                     "rebase-apply/original-commit"):
            try:
                yield from (gdir / name).read_text().split()
            except OSError:
                pass
        try:
            done = (gdir / "rebase-merge" / "done").read_text().splitlines()
        except OSError:
            done = []
        if done and len(done[-1].split()) > 1:
            yield done[-1].split()[1]
    try:  # the commits that brought their lock (a cherry-pick leaves no state while it runs)
        yield from git.out("log", "--all", "--format=%H", "-n", "20", f"--find-object={theirs_id}").split()
    except GitError:
        pass


def _base_candidates(git: Git, theirs_rev: str) -> list[str]:
    found: list[str] = []
    try:
        found += git.out("merge-base", "--all", "HEAD", theirs_rev).split()
    except GitError:
        pass
    try:
        found += git.out("rev-parse", f"{theirs_rev}^@").split()
    except GitError:
        pass
    return found + [theirs_rev]  # a revert's base is the commit reverted


def _merge_file(git: Git, base: bytes, ours: bytes, theirs: bytes) -> bytes | None:
    """``git merge-file``'s clean result, None on a conflict."""
    with tempfile.TemporaryDirectory(prefix="anklume-merge-") as tmp:
        files = []
        for name, data in (("ours", ours), ("base", base), ("theirs", theirs)):
            files.append(os.path.join(tmp, name))
            Path(files[-1]).write_bytes(data)
        try:
            code, out = git.run("merge-file", "-p", *files, ok=range(0, 128))
        except GitError:
            return None
    return out if code == 0 else None


def _conflict_text(git: Git, base_file: Path, ours_file: Path, theirs_file: Path, ours: bytes, theirs: bytes) -> bytes:
    """The conflicted lock as git would leave it: its own line merge with markers, or the two
    sides whole when the lines merge cleanly (so the file reads as conflicted either way)."""
    try:
        code, out = git.run("merge-file", "-p", "-L", "ours", "-L", "base", "-L", "theirs",
                            str(ours_file), str(base_file), str(theirs_file), ok=range(0, 128))
    except GitError:
        code, out = 0, b""
    if code > 0:
        return out
    def nl(data: bytes) -> bytes:
        return data if data.endswith(b"\n") or not data else data + b"\n"
    return b"<<<<<<< ours\n" + nl(ours) + b"=======\n" + nl(theirs) + b">>>>>>> theirs\n"


# -- the diff driver ------------------------------------------------------------------------


def do_lock_textconv(file: Path) -> int:
    """The lock as ``git diff`` shows it with the diff driver: one line per pin.  A file that is
    not a lock (conflicted, or another format) is shown as it is: a diff never fails."""
    data = _read(file)
    try:
        lines = list(textconv_lines(decode_lock(data, str(file))))
    except AnklumeError:
        sys.stdout.buffer.write(data)
        return 0
    sys.stdout.write("".join(f"{line}\n" for line in lines))
    return 0

"""``anklume lock``, its merge of a conflicted lock, and ``lock --diff``."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console

from anklume.actions.git import Git
from anklume.actions.lockgit import LockConflict, is_conflicted, merge_lines, merge_sides
from anklume.errors import AnklumeError, LockFormatError
from anklume.fsio import atomic_write, read_input
from anklume.lock.assemble import Update, describe_changes, known_pin_names, lock_infra
from anklume.lock.codec import decode_lock, encode_lock, infra_hash
from anklume.lock.merge import merge_locks
from anklume.lock.schema import Lock
from anklume.lock.show import diff_lines, pin_changes
from anklume.model.names import MEMBER_RE
from anklume.model.schema import Infra
from anklume.project import Project
from anklume.resolve.resolver import LiveResolver


def _consoles() -> tuple[Console, Console]:
    err = Console(stderr=True, highlight=False, soft_wrap=True, markup=False, emoji=False)
    out = Console(highlight=False, soft_wrap=True, markup=False, emoji=False)
    return out, err


@dataclass(frozen=True)
class Recorded:
    """``--gpu-inventory`` and ``--nvidia-smi``: a plain FILE (a single server, or for an inventory
    a cluster's ``anklume gpus --json``) and MEMBER=FILE per cluster member."""

    inventory: Path | None = None
    smi: Path | None = None
    member_inventories: dict[str, Path] = field(default_factory=dict)
    member_smi: dict[str, Path] = field(default_factory=dict)

    @property
    def names_members(self) -> bool:
        return bool(self.member_inventories or self.member_smi)

    def resolver(self, infra: Infra, *, offline: bool, endpoint: str | None) -> LiveResolver:
        return LiveResolver(infra, env=os.environ, offline=offline, gpu_inventory=self.inventory, nvidia_smi=self.smi,
                            member_inventories=self.member_inventories, member_smi=self.member_smi, incus=endpoint)


def recorded_files(gpu_inventory: Sequence[str | Path] = (), nvidia_smi: Sequence[str | Path] = ()) -> Recorded:
    """The values of ``--gpu-inventory`` and ``--nvidia-smi``: ``FILE`` or ``MEMBER=FILE`` (an
    existing file named ``a=b`` is a file)."""
    plain: dict[str, Path | None] = {"--gpu-inventory": None, "--nvidia-smi": None}
    members: dict[str, dict[str, Path]] = {"--gpu-inventory": {}, "--nvidia-smi": {}}
    for option, values in (("--gpu-inventory", gpu_inventory), ("--nvidia-smi", nvidia_smi)):
        for value in values:
            text = str(value)
            member, sep, rest = text.partition("=")
            if not os.path.lexists(text) and sep and MEMBER_RE.fullmatch(member):
                if member in members[option]:
                    raise AnklumeError(f"{option}: member {member} is given twice", f"one {option} {member}=FILE")
                members[option][member] = _existing(option, rest)
            elif plain[option] is not None:
                raise AnklumeError(f"{option}: two files for a single server ({plain[option]}, {text})",
                                   f"for a cluster, say whose each is: {option} MEMBER=FILE")
            else:
                plain[option] = _existing(option, text)
    return Recorded(inventory=plain["--gpu-inventory"], smi=plain["--nvidia-smi"],
                    member_inventories=members["--gpu-inventory"], member_smi=members["--nvidia-smi"])


def _existing(option: str, path: str) -> Path:
    if not path or not os.path.lexists(path):
        raise AnklumeError(f"{option}: {path or '(empty)'}: no such file", f"{option} FILE or {option} MEMBER=FILE")
    if os.path.isdir(path):
        raise AnklumeError(f"{option}: {path} is a directory", f"{option} FILE or {option} MEMBER=FILE")
    return Path(path)


def detects_cluster(infra: Infra, *, endpoint: str | None, recorded: Recorded, offline: bool) -> bool:
    """Whether a lock without a cluster section asks Incus whether it is a cluster: an endpoint
    named explicitly (``--incus``, ``ANKLUME_INCUS``, ``global.sources.incus``) or recorded files
    per member; never ``--offline``."""
    explicit = bool(endpoint or os.environ.get("ANKLUME_INCUS") or infra.global_.sources.incus)
    return not offline and (explicit or recorded.names_members)


def do_lock(infra_file: Path, *, check: bool, update: bool, names: tuple[str, ...], offline: bool,
            gpu_inventory: Sequence[str | Path] | Path | None = (), nvidia_smi: Sequence[str | Path] | Path | None = (),
            ours: tuple[str, ...] = (), theirs: tuple[str, ...] = (), endpoint: str | None = None) -> int:
    out, err = _consoles()
    project = Project(infra_file)
    recorded = recorded_files(_values(gpu_inventory), _values(nvidia_smi))
    if names and not update:
        raise AnklumeError(f"unexpected arguments: {' '.join(names)}", "to re-resolve named pins use --update NAME...")
    if check and (update or ours or theirs):
        raise AnklumeError("--check cannot be combined with --update, --ours or --theirs: --check never re-resolves",
                           "run `anklume lock --update ...` and review the printed changes")
    data = read_input(project.lock_file)
    conflicted = is_conflicted(data)
    if (ours or theirs) and not conflicted:
        raise AnklumeError(f"--ours and --theirs keep one side of a conflicted {project.lock_file.name}; "
                           "this one holds no conflict markers",
                           "to re-resolve a pin use `anklume lock --update NAME`")
    if check and conflicted:
        err.print(f"{project.lock_file.name} holds git's conflict markers: run `anklume lock` to merge it")
        return 1
    infra = project.load_infra()
    if conflicted:
        assert data is not None
        return _merge(project, infra, data, update=update, names=names, offline=offline, ours=ours, theirs=theirs,
                      recorded=recorded, endpoint=endpoint, out=out, err=err)
    old = None if data is None else decode_lock(data, str(project.lock_file))
    if check:
        if old is not None and old.infra_hash == infra_hash(infra):
            out.print(f"{project.lock_file.name} is up to date")
            return 0
        err.print(f"{project.lock_file.name} would change: run `anklume lock`")
        return 1
    if names:
        _check_names(names, known_pin_names(old, infra), project, "--update")

    resolver = recorded.resolver(infra, offline=offline, endpoint=endpoint)
    new = lock_infra(infra, old, resolver, Update(all=update and not names, names=frozenset(names)),
                     warn=lambda msg: err.print(msg), file=project.infra_file.name,
                     detect_cluster=detects_cluster(infra, endpoint=endpoint, recorded=recorded, offline=offline))
    encoded = encode_lock(new)
    changes = describe_changes(old, new)
    if old is not None and data == encoded:  # the exact bytes: a reformatted lock is rewritten
        out.print(f"{project.lock_file.name} is up to date")
        return 0
    _write(project, encoded)
    for line in changes:
        out.print(line)
    out.print(_wrote(project, new))
    return 0


def _values(value: Sequence[str | Path] | Path | None) -> Sequence[str | Path]:
    if value is None:
        return ()
    return (value,) if isinstance(value, (str, Path)) else value


def _check_names(names, known: set[str], project: Project, option: str) -> None:
    unknown = sorted(set(names) - known)
    if unknown:
        raise AnklumeError(f"{option}: no pin named {', '.join(unknown)}",
                           f"pins of this lock and {project.infra_file.name}: {', '.join(sorted(known))}")


def _write(project: Project, data: bytes) -> None:
    try:
        atomic_write(project.lock_file, data)
    except OSError as exc:
        raise AnklumeError(f"cannot write {project.lock_file}: {exc.strerror or exc}",
                           "check the folder's permissions; the old lock, if any, is unchanged") from None


def _wrote(project: Project, new: Lock) -> str:
    placed = (f", {len(new.cluster.placement)} machine(s) placed on {len(new.cluster.members)} cluster member(s)"
              if new.cluster is not None else "")
    return (f"wrote {project.lock_file.name}: {len(new.images)} image(s), {len(new.models)} model(s), "
            f"{'Ollama, ' if new.ollama else ''}{'Open WebUI, ' if new.open_webui else ''}"
            f"{len(new.gpus)} GPU assignment(s){placed}")


def _merge(project: Project, infra: Infra, data: bytes, *, update: bool, names: tuple[str, ...], offline: bool,
           ours: tuple[str, ...], theirs: tuple[str, ...], recorded: Recorded, endpoint: str | None,
           out: Console, err: Console) -> int:
    """A conflicted lock: both sides' pins, each from the side that has it; nothing fetched but
    what neither side has (or ``--update`` names)."""
    sides = merge_sides(project.lock_file, data)
    known = known_pin_names(sides.ours, infra) | known_pin_names(sides.theirs, infra)
    for option, given in (("--update", names), ("--ours", ours), ("--theirs", theirs)):
        _check_names(given, known, project, option)
    both = sorted(set(ours) & set(theirs))
    if both:
        raise AnklumeError(f"--ours and --theirs both name {', '.join(both)}", "keep one side of each pin")
    if update and not names:
        raise AnklumeError(f"--update re-resolves every pin: on a conflicted {project.lock_file.name} name the "
                           "pins to re-resolve (`--update NAME...`)",
                           "or delete the lock and run `anklume lock` to re-resolve everything")
    wanted = Update(names=frozenset(names))
    merged = merge_locks(infra, sides.ours, sides.theirs, sides.base, keep_ours=frozenset(ours),
                         keep_theirs=frozenset(theirs), update=wanted)
    if merged.conflicts:
        raise LockConflict(project.lock_file.name, merged.conflicts, git=sides.in_git)
    resolver = recorded.resolver(infra, offline=offline, endpoint=endpoint)
    new = lock_infra(infra, merged.lock, resolver, wanted, warn=lambda msg: err.print(msg),
                     file=project.infra_file.name,  # whether it is a cluster: as the sides say (or targets)
                     detect_cluster=bool(endpoint) and not offline)
    _write(project, encode_lock(new))
    out.print(f"merged {project.lock_file.name} from both sides ({sides.source}):")
    for line in merge_lines(merged, new):
        out.print(line)
    out.print(_wrote(project, new))
    if sides.in_git:
        out.print(f"next: `git add {project.lock_file.name}` to mark it merged")
    return 0


# -- lock --diff ------------------------------------------------------------------------------


def do_lock_diff(infra_file: Path, *, against: str, as_json: bool) -> int:
    """The pins changed between ``against`` (a revision, or a lock file) and the working lock."""
    out, _ = _consoles()
    project = Project(infra_file)
    data = read_input(project.lock_file)
    if data is None:
        raise AnklumeError(f"{project.lock_file}: no lock file", "run `anklume lock` first")
    if is_conflicted(data):
        raise AnklumeError(f"{project.lock_file} holds git's conflict markers", "run `anklume lock` to merge it first")
    new = decode_lock(data, str(project.lock_file))
    old, old_name = _lock_at(project, against)
    changes = pin_changes(old, new)
    if as_json:
        out.print(json.dumps({"from": old_name, "to": str(project.lock_file), "changes": [c.to_json() for c in changes]},
                             indent=2, sort_keys=True), soft_wrap=True)
        return 0
    if not changes:
        out.print(f"no pin changed between {old_name} and {project.lock_file.name}")
        return 0
    out.print(f"pins changed from {old_name} to {project.lock_file.name}:")
    for line in diff_lines(changes):
        out.print(line)
    return 0


def _lock_at(project: Project, against: str) -> tuple[Lock | None, str]:
    """The lock of ``against``: a file when one is there, else a git revision (the lock beside
    infra.yml at that revision; None when the revision has none: every pin is then added)."""
    path = Path(against)
    if path.is_file():
        data = read_input(path)
        assert data is not None
        return _decode_other(data, against), against
    git = Git(project.root)
    top = git.toplevel()
    if top is None:
        raise AnklumeError(f"{against}: not a file, and {project.root} is not in a git work tree",
                           "give a lock file, or run it in the repository that holds the lock")
    if git.blob_id(f"{against}^{{commit}}") is None:
        raise AnklumeError(f"{against}: neither a file nor a git revision", "e.g. `anklume lock --diff HEAD~1`")
    rel = os.path.relpath(project.lock_file.resolve(), top.resolve())
    data = git.blob(f"{against}:{rel}")
    name = f"{against}:{rel}"
    return (None if data is None else _decode_other(data, name)), name


def _decode_other(data: bytes, name: str) -> Lock:
    if is_conflicted(data):
        raise AnklumeError(f"{name} holds git's conflict markers")
    try:
        return decode_lock(data, name)
    except LockFormatError as exc:
        raise LockFormatError(exc.message) from None

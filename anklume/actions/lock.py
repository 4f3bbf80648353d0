"""``anklume lock``."""

from __future__ import annotations

import os
from pathlib import Path

from rich.console import Console

from anklume.errors import AnklumeError
from anklume.fsio import atomic_write, read_input
from anklume.lock.assemble import Update, describe_changes, known_pin_names, lock_infra
from anklume.lock.codec import encode_lock, infra_hash
from anklume.project import Project
from anklume.resolve.resolver import LiveResolver


def do_lock(infra_file: Path, *, check: bool, update: bool, names: tuple[str, ...], offline: bool,
            gpu_inventory: Path | None, nvidia_smi: Path | None) -> int:
    err = Console(stderr=True, highlight=False, soft_wrap=True, markup=False, emoji=False)
    out = Console(highlight=False, soft_wrap=True, markup=False, emoji=False)
    project = Project(infra_file)
    infra = project.load_infra()
    old = project.read_lock()
    if names and not update:
        raise AnklumeError(f"unexpected arguments: {' '.join(names)}", "to re-resolve named pins use --update NAME...")
    if check and update:
        raise AnklumeError("--check and --update cannot be combined: --check never re-resolves",
                           "run `anklume lock --update ...` and review the printed changes")
    if check:
        if old is not None and old.infra_hash == infra_hash(infra):
            out.print(f"{project.lock_file.name} is up to date")
            return 0
        err.print(f"{project.lock_file.name} would change: run `anklume lock`")
        return 1
    if names:
        known = known_pin_names(old, infra)
        unknown = sorted(set(names) - known)
        if unknown:
            raise AnklumeError(f"--update: no pin named {', '.join(unknown)}",
                               f"pins of this lock and {project.infra_file.name}: {', '.join(sorted(known))}")

    resolver = LiveResolver(infra, env=os.environ, offline=offline, gpu_inventory=gpu_inventory,
                            nvidia_smi=nvidia_smi)
    new = lock_infra(infra, old, resolver, Update(all=update and not names, names=frozenset(names)),
                     warn=lambda msg: err.print(msg), file=project.infra_file.name)
    data = encode_lock(new)
    changes = describe_changes(old, new)
    if old is not None and read_input(project.lock_file) == data:  # the exact bytes: a reformatted lock is rewritten
        out.print(f"{project.lock_file.name} is up to date")
        return 0
    try:
        atomic_write(project.lock_file, data)
    except OSError as exc:
        raise AnklumeError(f"cannot write {project.lock_file}: {exc.strerror or exc}",
                           "check the folder's permissions; the old lock, if any, is unchanged") from None
    for line in changes:
        out.print(line)
    out.print(f"wrote {project.lock_file.name}: {len(new.images)} image(s), {len(new.models)} model(s), "
              f"{'Ollama, ' if new.ollama else ''}{'Open WebUI, ' if new.open_webui else ''}"
              f"{len(new.gpus)} GPU assignment(s)")
    return 0

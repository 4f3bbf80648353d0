"""``anklume lock``."""

from __future__ import annotations

import os
from pathlib import Path

from rich.console import Console

from anklume.errors import AnklumeError
from anklume.fsio import atomic_write
from anklume.lock.assemble import Update, describe_changes, known_pin_names, lock_infra, requirements
from anklume.lock.codec import encode_lock, infra_hash
from anklume.project import Project


def do_lock(infra_file: Path, *, check: bool, update: bool, names: tuple[str, ...], offline: bool,
            gpu_inventory: Path | None, nvidia_smi: Path | None) -> int:
    err = Console(stderr=True, highlight=False, soft_wrap=True)
    out = Console(highlight=False, soft_wrap=True)
    project = Project(infra_file)
    infra = project.load_infra()
    old = project.read_lock()
    if names and not update:
        raise AnklumeError(f"unexpected arguments: {' '.join(names)}", "to re-resolve named pins use --update NAME...")
    if check:
        if old is not None and old.infra_hash == infra_hash(infra) and not update:
            out.print(f"{project.lock_file.name} is up to date")
            return 0
        err.print(f"{project.lock_file.name} would change: run `anklume lock`")
        return 1
    if old is not None and names:
        unknown = sorted(set(names) - known_pin_names(old))
        if unknown:
            raise AnklumeError(f"--update: no pin named {', '.join(unknown)}",
                               f"pins in this lock: {', '.join(sorted(known_pin_names(old)))}")

    from anklume.resolve.resolver import LiveResolver

    resolver = LiveResolver(infra, env=os.environ, offline=offline, gpu_inventory=gpu_inventory,
                            nvidia_smi=nvidia_smi)
    new = lock_infra(infra, old, resolver, Update(all=update and not names, names=frozenset(names)),
                     warn=lambda msg: err.print(msg))
    data = encode_lock(new)
    changes = describe_changes(old, new)
    if old is not None and encode_lock(old) == data:
        out.print(f"{project.lock_file.name} is up to date")
        return 0
    atomic_write(project.lock_file, data)
    for line in changes:
        out.print(line)
    req = requirements(infra)
    out.print(f"wrote {project.lock_file.name}: {len(req.images)} image(s), {len(req.models)} model(s), "
              f"{'Ollama, ' if new.ollama else ''}{len(new.gpus)} GPU assignment(s)")
    return 0

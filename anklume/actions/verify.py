"""``anklume verify`` (offline part): the lock is fresh, and every generated
file's managed section is byte-for-byte what the lock renders."""

from __future__ import annotations

import difflib
from pathlib import Path

from rich.console import Console

from anklume.fsio import read_or_none
from anklume.project import Project
from anklume.render.managed import extract_managed, managed_block
from anklume.render.tree import render_tree


def do_verify(infra_file: Path) -> int:
    out = Console(highlight=False, soft_wrap=True)
    project = Project(infra_file)
    infra = project.load_infra()
    lock = project.fresh_lock(infra)
    out.print(f"lock: {project.lock_file.name} is fresh")
    differences = 0
    rendered = render_tree(infra, lock)
    for rel, body in rendered.items():
        expected = managed_block(body)
        data = read_or_none(project.root / rel)
        actual = None if data is None else extract_managed(data.decode("utf-8", "replace"))
        if actual == expected:
            continue
        differences += 1
        if actual is None:
            out.print(f"{rel}: {'missing' if data is None else 'no managed section'}; run `anklume build`")
            continue
        diff = difflib.unified_diff(actual.splitlines(keepends=True), expected.splitlines(keepends=True),
                                    f"{rel} (on disk)", f"{rel} (from the lock)")
        out.out("".join(diff), end="")
    if differences:
        out.print(f"verify: {differences} of {len(rendered)} generated file(s) differ from the lock")
        return 1
    out.print(f"tree: {len(rendered)} generated file(s) match the lock")
    return 0

"""``anklume verify`` (offline part): the lock is fresh, and every generated
file's managed section is byte-for-byte what the lock renders, and no managed
key is set again outside it."""

from __future__ import annotations

import difflib
from pathlib import Path

from rich.console import Console

from anklume.project import Project
from anklume.render.managed import UnmergeableFile, extract_managed, managed_block, managed_keys_outside
from anklume.render.tree import render_tree
from anklume.render.write import read_tree_file


def do_verify(infra_file: Path, *, live: bool = False, as_json: bool = False, endpoint: str | None = None,
              deep: bool = False) -> int:
    out = Console(highlight=False, soft_wrap=True, markup=False, emoji=False, stderr=as_json)
    project = Project(infra_file)
    infra = project.load_infra()
    lock = project.fresh_lock(infra)
    out.print(f"lock: {project.lock_file.name} is fresh")
    differences = 0
    rendered = render_tree(infra, lock)
    for rel, body in rendered.items():
        expected = managed_block(body)
        text = read_tree_file(project.root / rel, rel)  # never through a link, like build
        try:
            actual = None if text is None else extract_managed(text)
            stray = [] if actual is None else managed_keys_outside(text, body)
        except UnmergeableFile as exc:  # markers that do not make one section
            differences += 1
            out.print(f"{rel}: {exc.message}")
            continue
        for key, line in stray:  # YAML keeps the last value: this one overrides the managed one
            out.print(f"{rel}:{line}: the managed key '{key}' is also set outside the managed section "
                      "(its value there overrides the managed one); delete it, or set it in infra.yml")
        if actual == expected and not stray:
            continue
        differences += 1
        if actual == expected:
            continue
        if actual is None:
            out.print(f"{rel}: {'missing' if text is None else 'no managed section'}; run `anklume build`")
            continue
        # The section ends without a newline: add one so the diff's last line ends too.
        diff = difflib.unified_diff((actual + "\n").splitlines(keepends=True),
                                    (expected + "\n").splitlines(keepends=True),
                                    f"{rel} (on disk)", f"{rel} (from the lock)")
        out.out("".join(diff), end="")
    if differences:
        out.print(f"verify: {differences} of {len(rendered)} generated file(s) differ from the lock")
    else:
        out.print(f"tree: {len(rendered)} generated file(s) match the lock")
    code = 1 if differences else 0
    if live:
        from anklume.actions.build import incus_endpoint
        from anklume.actions.live import do_verify_live

        code = max(code, do_verify_live(project, infra, lock, as_json=as_json, deep=deep,
                                        endpoint=incus_endpoint(infra, endpoint)))
    return code

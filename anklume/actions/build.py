"""``anklume build``: the Ansible tree from the lock (and, later, Incus)."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from anklume.errors import AnklumeError
from anklume.project import Project
from anklume.render.tree import render_tree
from anklume.render.write import apply_tree, find_orphans, plan_tree, prune


def do_build(infra_file: Path, *, apply: bool, prune_orphans: bool) -> int:
    out = Console(highlight=False, soft_wrap=True)
    project = Project(infra_file)
    infra = project.load_infra()
    lock = project.fresh_lock(infra)
    if apply:
        raise AnklumeError("applying to Incus is not available in this version of anklume",
                           "use `anklume build --no-apply` to write the Ansible tree")
    rendered = render_tree(infra, lock)
    changes = plan_tree(project.root, rendered)
    apply_tree(changes)
    for change in changes.changed:
        out.print(f"{'created' if change.created else 'updated'} {change.path}")
    out.print(f"tree: {len(changes.changed)} file(s) written, {len(changes.unchanged)} unchanged")
    report_orphans(out, find_orphans(project.root, rendered), prune_them=prune_orphans)
    return 0


def report_orphans(out: Console, orphans, *, prune_them: bool) -> None:
    if prune_them:
        result = prune(orphans)
        for orphan in result.deleted:
            out.print(f"deleted orphan {orphan.path} ({orphan.reason})")
        for orphan in result.skipped:
            out.print(f"PROTECTED, kept: {orphan.path} ({orphan.reason}); remove it by hand if you mean it")
        return
    for orphan in orphans:
        if orphan.protected:
            out.print(f"PROTECTED orphan: {orphan.path} ({orphan.reason}); manual removal required")
        else:
            out.print(f"ORPHAN: {orphan.path} ({orphan.reason}); `anklume build --no-apply --prune` deletes it")

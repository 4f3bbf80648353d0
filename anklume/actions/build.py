"""``anklume build``: the Ansible tree from the lock, then the Incus objects."""

from __future__ import annotations

import os
from pathlib import Path

import msgspec
from rich.console import Console

from anklume.project import Project
from anklume.render.tree import render_tree
from anklume.render.write import apply_tree, find_orphans, plan_tree, prune


def incus_endpoint(infra, flag: str | None) -> str | None:
    """``--incus``, else ``ANKLUME_INCUS``, else ``global.sources.incus``, else the local socket (None)."""
    from anklume.resolve.sources import effective_sources

    if flag:
        return flag
    return effective_sources(msgspec.structs.asdict(infra.global_.sources), os.environ).incus


def do_build(infra_file: Path, *, apply: bool, prune_orphans: bool, plan_only: bool = False,
             as_json: bool = False, jobs: int = 4, replace: bool = False, endpoint: str | None = None,
             deep: bool = False) -> int:
    out = Console(highlight=False, soft_wrap=True, markup=False, emoji=False, stderr=as_json)
    project = Project(infra_file)
    infra = project.load_infra()
    lock = project.fresh_lock(infra)
    rendered = render_tree(infra, lock)
    changes = plan_tree(project.root, rendered)
    if plan_only:
        for change in changes.changed:
            out.print(f"would {'create' if change.created else 'update'} {change.path}")
        tree_code = 2 if changes.changed else 0
        if not apply:
            out.print(f"tree: {len(changes.changed)} file(s) to write, {len(changes.unchanged)} unchanged")
            return tree_code
    else:
        apply_tree(changes)
        for change in changes.changed:
            out.print(f"{'created' if change.created else 'updated'} {change.path}")
        out.print(f"tree: {len(changes.changed)} file(s) written, {len(changes.unchanged)} unchanged")
        report_orphans(out, find_orphans(project.root, rendered), prune_them=prune_orphans,
                       command="anklume build --prune" if apply else "anklume build --no-apply --prune")
        if not apply:
            return 0
    from anklume.actions.apply import do_apply

    code = do_apply(project, infra, lock, plan_only=plan_only, as_json=as_json, jobs=jobs,
                    prune=prune_orphans, replace=replace, endpoint=incus_endpoint(infra, endpoint),
                    tree=changes, deep=deep)
    if plan_only and code == 0:
        return tree_code
    return code


def report_orphans(out: Console, orphans, *, prune_them: bool, command: str) -> None:
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
            out.print(f"ORPHAN: {orphan.path} ({orphan.reason}); `{command}` deletes it")

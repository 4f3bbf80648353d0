"""Benchmark of the render path (not collected by pytest): ``python -m tests.render.bench_render [N]``.

Builds an N-machine infra directly from the structs (40 machines a domain; loading infra.yml
is measured elsewhere), then times, cold (fresh process, empty caches):
render_tree with ``dump`` and with ``dump_reference``, a first build, and a no-op rebuild
(render + diff_tree + find_orphans) over the files written by the first one.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path

from anklume.model.schema import Domain, Global, Infra, Machine
from anklume.render import tree as tree_mod
from anklume.render import yamlout
from anklume.render.tree import render_tree
from anklume.render.write import apply_tree, find_orphans, diff_tree


def make_infra(n: int, per_domain: int = 40) -> Infra:
    domains = {}
    for d in range((n + per_domain - 1) // per_domain):
        machines = {
            f"m{k}": Machine(description=f"Machine {k} of domain {d}", ip=f"10.100.{d}.{j + 1}",
                             config={"limits.cpu": "2", "limits.memory": "2GiB"}, roles=["base_system"])
            for j, k in enumerate(range(d * per_domain, min(n, (d + 1) * per_domain)))
        }
        domains[f"d{d}"] = Domain(subnet_id=d, description=f"Domain number {d}", machines=machines)
    return Infra(project_name="bench", global_=Global(default_os_image="images:debian/13",
                                                      default_connection="community.general.incus",
                                                      default_user="root"), domains=domains)


def timed(label: str, nfiles: int, fn):
    start = time.perf_counter()
    result = fn()
    took = time.perf_counter() - start
    print(f"{label:<44} {took:7.3f} s  {took / nfiles * 1e6:7.1f} us/file")
    return result


def main(n: int) -> None:
    infra = make_infra(n)
    nfiles = 1 + 2 * len(infra.domains) + n
    print(f"{n} machines, {len(infra.domains)} domains, {nfiles} files")
    rendered = timed("render_tree, dump (cold caches)", nfiles, lambda: render_tree(infra, None))
    tree_mod.dump = yamlout.dump_reference
    try:
        slow = timed("render_tree, dump_reference", nfiles, lambda: render_tree(infra, None))
    finally:
        tree_mod.dump = yamlout.dump
    assert slow == rendered
    docs: list = []
    tree_mod.dump = lambda data: docs.append(data) or ""
    try:
        render_tree(infra, None)
    finally:
        tree_mod.dump = yamlout.dump
    yamlout._SCALARS.clear()
    yamlout._KEYS.clear()
    timed("dump() alone, cold caches", nfiles, lambda: [yamlout.dump(d) for d in docs])
    timed("dump() alone, warm caches", nfiles, lambda: [yamlout.dump(d) for d in docs])
    timed("dump_reference() alone", nfiles, lambda: [yamlout.dump_reference(d) for d in docs])
    root = Path(tempfile.mkdtemp(prefix="anklume-bench-"))
    try:
        timed("first build (plan + apply, fsync each)", nfiles, lambda: apply_tree(diff_tree(root, rendered)))

        def noop():
            again = render_tree(infra, None)
            changes = diff_tree(root, again)
            orphans = find_orphans(root, again)
            assert not changes.changed and not orphans
        timed("no-op rebuild (render + plan + orphans)", nfiles, noop)
        timed("  of which diff_tree", nfiles, lambda: diff_tree(root, rendered))
        timed("  of which find_orphans", nfiles, lambda: find_orphans(root, rendered))
    finally:
        shutil.rmtree(root)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 10_000)

"""``anklume build`` (apply to Incus), ``build --plan``, ``why`` and ``graph``.

    do_apply(project, infra, lock, plan_only=..., as_json=..., jobs=4, prune=False, replace=False,
             endpoint=None) -> exit code

Exit codes: 0 done / nothing to do, 2 (``--plan`` only) changes pending, 1 an error or a unit
that failed.  A no-op build reads a constant handful of listings and writes nothing.
"""

from __future__ import annotations

import fcntl
import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import msgspec
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from anklume.errors import AnklumeError
from anklume.fsio import atomic_write, read_or_none
from anklume.lock.schema import Lock
from anklume.model.schema import Infra
from anklume.project import Project
from anklume.units.graph import Graph, plan_units
from anklume.units.key import canonical, short
from anklume.render.write import TreeChanges
from anklume.units.plan import Change, LiveObject, Plan, mark_damaged, plan_changes
from anklume.units.provision import ARTEFACT_KINDS, PROVISION_KINDS, provision_live
from anklume.units.unit import DELETE_ORDER


class SpecStore:
    """Applied specs, content-addressed: ``<root>/<hex of key>.json`` (for ``why``)."""

    def __init__(self, root: Path | None = None):
        if root is None:
            base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
            root = Path(base) / "anklume" / "specs"
        self.root = root

    def path(self, key: str) -> Path:
        return self.root / f"{key.removeprefix('blake3:')}.json"

    def put(self, key: str, spec: dict[str, Any]) -> None:
        path = self.path(key)
        if not path.exists():
            atomic_write(path, canonical(spec) + b"\n")

    def get(self, key: str) -> dict[str, Any] | None:
        data = read_or_none(self.path(key))
        if data is None:
            return None
        try:
            return json.loads(data)
        except ValueError:
            return None


class BuildBusy(AnklumeError):
    """Another build holds the project's build lock."""


@contextmanager
def build_lock(root: Path) -> Iterator[None]:
    """One build at a time per project directory: ``fcntl.flock`` on the directory itself (no lock
    file left in the user's repository; the kernel drops it when the process dies, even by
    ``kill -9``).  A second build stops clearly instead of waiting."""
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise BuildBusy(f"another anklume build is running for {root}",
                            "wait for it to finish, then run the build again") from None
        yield
    finally:
        os.close(fd)


# -- planning -------------------------------------------------------------------------------------


def _pools(graph: Graph) -> set[str]:
    return {"default"} | {u.spec["pool"] for u in graph if u.kind == "volume"}


def read_plan(graph: Graph, backend, store: SpecStore, *, prune: bool, replace: bool, owner: str | None = None
              ) -> tuple[Plan, dict[str, LiveObject]]:
    domains = {u.name for u in graph if u.kind == "project"}
    live = with_provision(graph, backend.read_live(domains, _pools(graph), exact_networks=False))
    return plan_changes(graph, live, specs=store.get, prune=prune, replace=replace, owner=owner), live


def with_provision(graph: Graph, live: dict[str, LiveObject]) -> dict[str, LiveObject]:
    """``live`` plus the units inside instances, as their instances' records say (see
    :mod:`anklume.units.provision`)."""
    inside = [u for u in graph if u.kind in PROVISION_KINDS]
    out = {uid: o for uid, o in live.items() if o.kind not in PROVISION_KINDS}
    if inside:
        instances = {u.object: out[f"instance:{u.object}"] for u in inside if f"instance:{u.object}" in out}
        out.update(provision_live(inside, instances))
    return out


def artefact_damage(plan: Plan, graph: Graph, backend, lock: Lock, *, deep: bool) -> dict[str, list[str]]:
    """Read back the artefacts of unchanged units in unchanged, running instances (one exec per
    instance; ``deep``: every byte re-hashed): uid -> what is wrong."""
    from anklume.actions.provision import check_artefacts

    action = {c.uid: c.action for c in plan.changes}
    units = [u for u in graph if u.kind in ARTEFACT_KINDS and action.get(u.uid) == "unchanged"
             and action.get(f"instance:{u.object}") == "unchanged"]
    damaged: dict[str, list[str]] = {}
    for f in check_artefacts(backend, units, lock, deep=deep):
        damaged.setdefault(f.object, []).append(f"{f.field}: expected {f.expected}, found {f.actual}")
    return damaged


_STYLE = {"create": "green", "update": "yellow", "replace": "bold magenta", "delete": "red", "unchanged": "dim"}


def plan_json(plan: Plan) -> dict[str, Any]:
    return {
        "changes": [{"action": c.action, "unit": c.uid, "reasons": [r.render() for r in c.reasons],
                     "fields": [msgspec.to_builtins(r) for r in c.reasons if r.text is None],
                     "blocked": c.blocked, "key": c.key, "recorded_key": c.old_key} for c in plan.changes],
        "summary": {a: plan.count(a) for a in ("create", "update", "replace", "delete", "unchanged")},
        "pending": len(plan.pending),
    }


def print_plan(plan: Plan, console: Console, *, show_unchanged: bool = False) -> None:
    table = Table(show_header=True, header_style="bold", box=None, pad_edge=False)
    table.add_column("action")
    table.add_column("unit")
    table.add_column("why")
    for c in plan.changes:
        if c.action == "unchanged" and not show_unchanged:
            continue
        why = escape("; ".join(r.render() for r in c.reasons) or f"key {short(c.key or '')}")
        if c.blocked:
            why += f" [bold red](blocked: {escape(c.blocked)})[/]"
        table.add_row(f"[{_STYLE[c.action]}]{c.action}[/]", escape(c.uid), why)
    if table.row_count:
        console.print(table)
    console.print(f"plan: {plan.summary()}")


# -- applying -------------------------------------------------------------------------------------


def plan_tasks(plan: Plan, graph: Graph, live: dict[str, LiveObject], backend, store: SpecStore,
               *, replace: bool, provisioner=None):
    from anklume.executor import Task

    tasks: list[Task] = []
    deleting = [c for c in plan.pending if c.action == "delete"]
    networks = [c.uid for c in plan.pending if c.action != "delete" and c.uid.startswith("network:")]
    for change in plan.pending:
        unit = graph.get(change.uid)
        obj = live.get(change.uid)
        if change.action == "delete":
            assert obj is not None
            deps = tuple(d.uid for d in deleting
                         if DELETE_ORDER[live[d.uid].kind] < DELETE_ORDER[obj.kind]
                         and live[d.uid].domain == obj.domain)
        else:
            assert unit is not None
            deps = unit.after

        def run(change: Change = change, unit=unit, obj=obj) -> None:
            if unit is not None and change.action != "delete":
                store.put(unit.key, unit.spec)
            if unit is not None and unit.kind in PROVISION_KINDS:
                if provisioner is None:  # pragma: no cover - do_apply always passes one
                    raise AnklumeError(f"{unit.uid}: nothing to apply units inside instances with")
                provisioner.apply(unit)
            else:
                backend.apply(change, unit, obj, replace=replace)

        kind, _, name = change.uid.partition(":")
        # every bridge is made before any instance starts (ordering only, a failed bridge does not stop
        # other domains): Incus 6.0 fails to create a bridge while veths of starting instances come and
        # go ("Failed to delete bridge children interfaces")
        after = tuple(networks) if kind == "instance" else ()
        tasks.append(Task(id=change.uid, run=run, deps=deps, after=after, label=f"{change.action} {kind} {name}"))
    return tasks


def apply_plan(plan: Plan, graph: Graph, live: dict[str, LiveObject], backend, store: SpecStore, *,
               jobs: int, replace: bool, progress=None, provisioner=None):
    from anklume.executor import execute

    tasks = plan_tasks(plan, graph, live, backend, store, replace=replace, provisioner=provisioner)
    return execute(tasks, jobs=jobs, progress=progress)


def _targets(plan: Plan, graph: Graph, live: dict[str, LiveObject]):
    """The objects of the pending changes, to re-read under the lease."""
    for c in plan.pending:
        unit, obj = graph.get(c.uid), live.get(c.uid)
        if unit is not None and unit.kind in PROVISION_KINDS:  # its record lives on its instance
            unit, obj = graph.get(f"instance:{unit.object}"), live.get(f"instance:{unit.object}")
            if unit is not None:
                yield unit.uid, unit.kind, unit.project, unit.object, None
            continue
        if unit is not None:
            yield c.uid, unit.kind, unit.project, unit.object, unit.spec.get("pool")
        if obj is not None and (unit is None or obj.project != unit.project):
            yield c.uid, obj.kind, obj.project, obj.object, obj.pool


def _apply_pending(plan, graph, live, backend, store, out, *, as_json: bool, jobs: int, replace: bool,
                   provisioner=None):
    from anklume.executor import make_progress

    if not plan.pending:
        return {}
    if not as_json:
        print_plan(plan, out)
    progress = None if as_json else make_progress(len(plan.pending), out)
    return apply_plan(plan, graph, live, backend, store, jobs=jobs, replace=replace, progress=progress,
                      provisioner=provisioner)


def do_apply(project: Project, infra: Infra, lock: Lock, *, plan_only: bool, as_json: bool, jobs: int = 4,
             prune: bool = False, replace: bool = False, endpoint: str | None = None,
             store: SpecStore | None = None, console: Console | None = None, tree: TreeChanges | None = None,
             deep: bool = False, artefacts=None) -> int:
    """Plan and apply; ``tree``: the Ansible tree changes about to be (or just) written (the roles'
    variables); ``deep``: re-hash every placed artefact; ``artefacts``: the local artefact store."""
    from anklume.actions.provision import ArtefactSources, Provisioner, provision_inputs
    from anklume.backends.incus_apply import IncusBackend, lease_holder

    out = console or Console(highlight=False)
    store = store or SpecStore()
    graph = plan_units(infra, lock, provision_inputs(project, infra, tree))
    backend = IncusBackend(endpoint, owner=infra.project_name)

    def planned(plan: Plan) -> Plan:
        return mark_damaged(plan, artefact_damage(plan, graph, backend, lock, deep=deep))

    if plan_only:
        plan, _ = read_plan(graph, backend, store, prune=prune, replace=replace, owner=infra.project_name)
        plan = planned(plan)
        if as_json:
            out.print_json(json.dumps(plan_json(plan)))
        else:
            print_plan(plan, out)
        return plan.exit_code
    provisioner = None
    with build_lock(project.root):
        plan, live = read_plan(graph, backend, store, prune=prune, replace=replace, owner=infra.project_name)
        plan = planned(plan)
        if plan.pending:
            # changes to make: take the daemon-wide lease, then re-read what is about to change
            # (O(changes) requests) and plan again under it
            lease = backend.acquire_lease(lease_holder())
            try:
                live = with_provision(graph, backend.refresh(live, _targets(plan, graph, live)))
                damaged = {c.uid: [r.render() for r in c.reasons] for c in plan.changes
                           if any(r.field == "artefact" for r in c.reasons)}
                plan = mark_damaged(plan_changes(graph, live, specs=store.get, prune=prune, replace=replace,
                                                 owner=infra.project_name), damaged)
                if any(u.kind in PROVISION_KINDS for u in graph):
                    def event(text: str) -> None:  # a role's tasks, an artefact's progress: one line each
                        out.print(f"  {text}", markup=False, highlight=False, soft_wrap=True)

                    provisioner = Provisioner(backend, project, infra, lock, sources=ArtefactSources.of(infra),
                                              store=artefacts, endpoint=endpoint,
                                              on_event=None if as_json else event)
                results = _apply_pending(plan, graph, live, backend, store, out, as_json=as_json, jobs=jobs,
                                         replace=replace, provisioner=provisioner)
            finally:
                backend.release_lease(lease)
        if not plan.pending:
            for c in plan.changes:
                if c.action == "delete":
                    out.print(f"kept {c.uid}: {c.blocked}", markup=False)
            if as_json:
                out.print_json(json.dumps({**plan_json(plan), "results": {}}))
            else:
                out.print(f"nothing to do ({len(graph)} units unchanged)")
            return 0
    failed = [o for o in results.values() if o.status != "ok"]
    if as_json:
        done = {uid: {"status": o.status, "error": o.error, "seconds": round(o.seconds, 3)}
                for uid, o in results.items()}
        sent = dict(provisioner.transferred) if provisioner is not None else {}
        out.print_json(json.dumps({**plan_json(plan), "results": done, "transferred": sent}))
    else:
        ok = sum(1 for o in results.values() if o.status == "ok")
        out.print(f"applied {ok} of {len(results)} change(s)"
                  + (f"; {len(failed)} failed or skipped" if failed else ""))
        for o in failed:
            out.print(f"[red]{o.status}[/] {escape(o.id)}: {escape(o.error or '')}", highlight=False)
    return 1 if failed else 0


def _provision_inputs(project: Project, infra: Infra):
    from anklume.actions.provision import provision_inputs

    return provision_inputs(project, infra)


def do_why(project: Project, infra: Infra, lock: Lock, *, unit: str | None = None, as_json: bool = False,
           endpoint: str | None = None, store: SpecStore | None = None, console: Console | None = None) -> int:
    """Why each unit (or the one named: ``instance:web`` or just ``web``) would be applied."""
    from anklume.backends.incus_apply import IncusBackend

    out = console or Console(highlight=False)
    graph = plan_units(infra, lock, _provision_inputs(project, infra))
    plan, _ = read_plan(graph, IncusBackend(endpoint), store or SpecStore(), prune=False, replace=False,
                        owner=infra.project_name)
    changes = plan.changes
    if unit is not None:
        changes = [c for c in changes if c.uid == unit or c.uid.split(":", 1)[1] == unit]
        if not changes:
            raise AnklumeError(f"no unit named {unit}", "see `anklume graph` for the unit names")
    if as_json:
        out.print_json(json.dumps(plan_json(Plan(changes))))
        return 0
    for c in changes:
        if c.action == "unchanged":
            out.print(f"{c.uid}: unchanged (recorded key {short(c.old_key or '')} = planned key)")
            continue
        out.print(f"{c.uid}: {c.action}" + (f" (blocked: {c.blocked})" if c.blocked else ""))
        for r in c.reasons:
            out.print(f"  {r.render()}", highlight=False, markup=False)
    return 0


def do_graph(project: Project, infra: Infra, lock: Lock, *, dot: bool = False, as_json: bool = False,
             console: Console | None = None) -> int:
    """The units, their keys and their dependencies (``--dot``: Graphviz)."""
    out = console or Console(highlight=False)
    graph = plan_units(infra, lock, _provision_inputs(project, infra))
    if as_json:
        out.print_json(json.dumps([{"unit": u.uid, "key": u.key, "after": list(u.after),
                                    "key_deps": list(u.key_deps)} for u in graph]))
    elif dot:
        lines = ["digraph anklume {", "  rankdir=LR;"]
        for u in graph:
            lines.append(f'  "{u.uid}" [label="{u.uid}\\n{short(u.key)}"];')
        for u in graph:
            for dep in u.after:
                lines.append(f'  "{dep}" -> "{u.uid}";')
        lines.append("}")
        if console is None:
            sys.stdout.write("\n".join(lines) + "\n")  # raw: a rich console would wrap long lines
        else:
            out.print("\n".join(lines), markup=False, highlight=False)
    else:
        for u in graph:
            after = f"  after {', '.join(u.after)}" if u.after else ""
            out.print(f"{u.uid}  {short(u.key)}{after}", markup=False, highlight=False, soft_wrap=True)
    return 0

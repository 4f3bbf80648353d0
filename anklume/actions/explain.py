"""``anklume why`` (what would be applied, and why; reads Incus, writes nothing) and
``anklume graph`` (the unit DAG; offline)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from rich.console import Console

from anklume.actions.build import endpoint_of
from anklume.actions.report import plan_json
from anklume.backends.incus import IncusBackend
from anklume.engine import observe_and_plan
from anklume.errors import AnklumeError
from anklume.lock.schema import Lock
from anklume.model.schema import Infra
from anklume.project import Project
from anklume.provision.inputs import project_units
from anklume.store import SpecStore
from anklume.units.key import short
from anklume.units.plan import Plan


def do_why(infra_file: Path, *, unit: str | None, as_json: bool, endpoint: str | None) -> int:
    project = Project(infra_file)
    infra, lock = project.load()
    return why(project, infra, lock, unit=unit, as_json=as_json, endpoint=endpoint_of(infra, endpoint))


def why(project: Project, infra: Infra, lock: Lock, *, unit: str | None = None, as_json: bool = False,
        endpoint: str | None = None, specs: SpecStore | None = None, console: Console | None = None) -> int:
    """Why each unit (or the one named: ``instance:web`` or just ``web``) would be applied."""
    out = console or Console(highlight=False)
    graph = project_units(project, infra, lock)
    plan, _ = observe_and_plan(graph, IncusBackend(endpoint), specs or SpecStore(),
                               prune=False, replace=False, owner=infra.project_name)
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


def do_graph(infra_file: Path, *, dot: bool, as_json: bool) -> int:
    project = Project(infra_file)
    infra, lock = project.load()
    return graph_of(project, infra, lock, dot=dot, as_json=as_json)


def graph_of(project: Project, infra: Infra, lock: Lock, *, dot: bool = False, as_json: bool = False,
             console: Console | None = None) -> int:
    """The units, their keys and their dependencies (``--dot``: Graphviz)."""
    out = console or Console(highlight=False)
    graph = project_units(project, infra, lock)
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

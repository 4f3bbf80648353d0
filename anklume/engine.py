"""The build engine: observe the daemon, plan against it, turn the plan into executor tasks.

    observe(graph, backend, exact_networks=...) -> live objects (Incus objects and the units
                                                   inside instances, as their records say)
    observe_and_plan(graph, backend, specs, ...) -> (Plan, live)
    artefact_damage(plan, graph, backend, lock, deep=...) -> uid -> what is wrong
    refresh_targets(plan, graph, live) -> the objects to re-read under the lease
    tasks_for(plan, graph, live, backend, specs, ...) -> executor Tasks
    apply_plan(...) -> executor outcomes

It knows the backend only through :class:`anklume.backends.base.Backend` and the units inside
instances only through a :class:`anklume.provision.artefacts.Provisioner`; the command handlers
(:mod:`anklume.actions.build`, ``verify``, ``explain``) wire them and print.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping

from anklume.backends.base import Backend
from anklume.errors import AnklumeError
from anklume.executor import Outcome, Progress, Task, execute
from anklume.lock.schema import Lock
from anklume.provision.artefacts import Provisioner
from anklume.provision.readback import check_artefacts
from anklume.store import SpecStore
from anklume.units.cluster import is_clustered
from anklume.units.findings import Finding
from anklume.units.graph import Graph
from anklume.units.inside import ARTEFACT_KINDS, INSIDE_KINDS, with_inside
from anklume.units.plan import Change, Plan, plan_changes
from anklume.units.unit import DELETE_ORDER, LiveObject


def pools_of(graph: Graph) -> set[str]:
    return {"default"} | {u.spec["pool"] for u in graph if u.kind == "volume"}


def observe(graph: Graph, backend: Backend, *, exact_networks: bool) -> dict[str, LiveObject]:
    """What the daemon holds for ``graph``'s domains, plus the units inside instances."""
    domains = {u.name for u in graph if u.kind == "project"}
    return with_inside(graph, backend.read_live(domains, pools_of(graph), exact_networks=exact_networks,
                                                members=is_clustered(graph)))


def observe_and_plan(graph: Graph, backend: Backend, specs: SpecStore, *, prune: bool, replace: bool,
                     owner: str | None = None, adopt: Collection[str] = (),
                     exact: bool = False) -> tuple[Plan, dict[str, LiveObject]]:
    """``exact``: read the bridges and network ACLs themselves (``build --deep``: what was changed
    by hand under a recorded key is seen and repaired) rather than their mirrored keys."""
    live = observe(graph, backend, exact_networks=exact)
    return plan_changes(graph, live, specs=specs.get, prune=prune, replace=replace, owner=owner,
                        adopt=adopt), live


def artefact_damage(plan: Plan, graph: Graph, backend: Backend, lock: Lock, *, deep: bool) -> dict[str, list[str]]:
    """Read back the artefacts of unchanged units in unchanged, running instances (one exec per
    instance; ``deep``: every byte re-hashed): uid -> what is wrong."""
    action = {c.uid: c.action for c in plan.changes}
    units = [u for u in graph if u.kind in ARTEFACT_KINDS and action.get(u.uid) == "unchanged"
             and action.get(f"instance:{u.object}") == "unchanged"]
    damaged: dict[str, list[str]] = {}
    for f in check_artefacts(backend, units, lock, deep=deep):
        damaged.setdefault(f.object, []).append(f"{f.field}: expected {f.expected}, found {f.actual}")
    return damaged


def artefact_findings(graph: Graph, live: Mapping[str, LiveObject], backend: Backend, lock: Lock, *,
                      deep: bool) -> list[Finding]:
    """The artefacts recorded as placed, read back from their (running) instances: presence and
    sizes, and with ``deep`` every byte re-hashed (``verify --live``)."""
    units = [u for u in graph if u.kind in ARTEFACT_KINDS
             and (live.get(u.uid) is not None and live[u.uid].key == u.key)
             and getattr(live.get(f"instance:{u.object}"), "status", None) == "Running"]
    return check_artefacts(backend, units, lock, deep=deep)


def refresh_targets(plan: Plan, graph: Graph, live: Mapping[str, LiveObject]
                    ) -> Iterator[tuple[str, str, str, str, str | None]]:
    """The objects of the pending changes, to re-read under the lease:
    (uid, kind, project, object, pool)."""
    for c in plan.pending:
        unit, obj = graph.get(c.uid), live.get(c.uid)
        if unit is not None and unit.kind in INSIDE_KINDS:  # its record lives on its instance
            unit, obj = graph.get(f"instance:{unit.object}"), live.get(f"instance:{unit.object}")
            if unit is not None:
                yield unit.uid, unit.kind, unit.project, unit.object, None
            continue
        if unit is not None:
            yield c.uid, unit.kind, unit.project, unit.object, unit.spec.get("pool")
        if obj is not None and (unit is None or obj.project != unit.project):
            yield c.uid, obj.kind, obj.project, obj.object, obj.pool


def tasks_for(plan: Plan, graph: Graph, live: Mapping[str, LiveObject], backend: Backend, specs: SpecStore,
              *, replace: bool, provisioner: Provisioner | None = None) -> list[Task]:
    """One executor task per pending change: deletions ordered by kind within a domain, creations
    and updates after the units they need.

    Ordering only (a failure there stops nothing): every bridge to make comes before any instance
    starts, and bridges are deleted one at a time after every instance change (Incus 6.0 fails to
    create or delete a bridge while other bridges' or instances' interfaces come and go: "Failed to
    delete bridge children interfaces ... does not exist"); an orphan volume, profile or project
    is deleted after the instance changes (an instance replaced out of its old domain, one that
    stops using it)."""
    tasks: list[Task] = []
    deleting = [c for c in plan.pending if c.action == "delete"]
    networks = [c.uid for c in plan.pending if c.action != "delete" and c.uid.startswith("network:")]
    instances = tuple(c.uid for c in plan.pending if c.action != "delete" and c.uid.startswith("instance:"))
    all_instances = tuple(c.uid for c in plan.pending if c.uid.startswith("instance:"))
    bridge_deletes = [c.uid for c in deleting if live[c.uid].kind == "network"]
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
                specs.put(unit.key, unit.spec)
            if unit is not None and unit.kind in INSIDE_KINDS:
                if provisioner is None:  # pragma: no cover - the build handler always passes one
                    raise AnklumeError(f"{unit.uid}: nothing to apply units inside instances with")
                provisioner.apply(unit)
            else:
                backend.apply(change, unit, obj, replace=replace)

        kind, _, name = change.uid.partition(":")
        after: tuple[str, ...] = ()
        if kind == "instance":
            after = tuple(networks)
        elif change.action == "delete" and obj is not None and obj.kind == "network":
            # after every instance change and every other bridge change, one bridge at a time
            at = bridge_deletes.index(change.uid)
            after = all_instances + tuple(networks) + ((bridge_deletes[at - 1],) if at else ())
        elif change.action == "delete" and obj is not None and obj.kind != "instance":
            after = instances
        tasks.append(Task(id=change.uid, run=run, deps=deps, after=after, label=f"{change.action} {kind} {name}"))
    return tasks


def apply_plan(plan: Plan, graph: Graph, live: Mapping[str, LiveObject], backend: Backend, specs: SpecStore, *,
               jobs: int, replace: bool, progress: Progress | None = None,
               provisioner: Provisioner | None = None) -> dict[str, Outcome]:
    tasks = tasks_for(plan, graph, live, backend, specs, replace=replace, provisioner=provisioner)
    return execute(tasks, jobs=jobs, progress=progress)

"""``anklume build``: the Ansible tree from the lock, then the Incus objects and what goes inside
the instances (``--plan``: what would be done, and why).

Exit codes: 0 done / nothing to do, 2 (``--plan`` only) changes pending, 1 an error or a unit
that failed.  A no-op build reads a constant handful of listings and writes nothing.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import msgspec
from rich.console import Console
from rich.markup import escape

from anklume.actions.report import plan_json, print_plan
from anklume.backends.incus import IncusBackend, lease_holder
from anklume.engine import apply_plan, artefact_damage, observe_and_plan, refresh_targets
from anklume.errors import AnklumeError
from anklume.executor import make_progress
from anklume.lock.schema import Lock
from anklume.model.schema import Infra
from anklume.project import Project, exclusive_build
from anklume.provision.artefacts import ArtefactSources, Provisioner
from anklume.provision.inputs import project_units
from anklume.render.tree import render_tree
from anklume.render.write import TreeChanges, apply_tree, find_orphans, diff_tree, prune
from anklume.resolve.inventory import host_gpus
from anklume.sources import incus_endpoint
from anklume.store import ArtefactStore, SpecStore
from anklume.units.graph import Graph
from anklume.units.inside import INSIDE_KINDS, with_inside
from anklume.units.cluster import bridges_waiting, down_members, unavailable_units
from anklume.units.plan import Plan, mark_damaged, plan_changes
from anklume.units.preflight import FIX, GpuRefusal, gpu_refusals, mark_refused, refused_units, without_refused


#: The kinds of Incus objects (``--adopt`` takes one over; the units inside instances are not objects).
INCUS_KINDS = frozenset({"project", "acl", "network", "profile", "volume", "instance"})


def endpoint_of(infra: Infra, flag: str | None) -> str | None:
    """``--incus``, else ``ANKLUME_INCUS``, else ``global.sources.incus``, else the local socket."""
    return incus_endpoint(msgspec.structs.asdict(infra.global_.sources), flag, os.environ)


def do_build(infra_file: Path, *, apply: bool, prune_orphans: bool, plan_only: bool = False,
             as_json: bool = False, jobs: int = 4, replace: bool = False, endpoint: str | None = None,
             deep: bool = False, verbose: bool = False, adopt: Sequence[str] = ()) -> int:
    out = Console(highlight=False, soft_wrap=True, markup=False, emoji=False, stderr=as_json)
    project = Project(infra_file)
    infra, lock = project.load()
    rendered = render_tree(infra, lock)
    changes = diff_tree(project.root, rendered)
    if plan_only:
        if changes.changed:  # one print: one per file costs a second for 10,000 files
            out.print("\n".join(f"would {'create' if c.created else 'update'} {c.path}" for c in changes.changed))
        tree_code = 2 if changes.changed else 0
        if not apply:
            out.print(f"tree: {len(changes.changed)} file(s) to write, {len(changes.unchanged)} unchanged")
            return tree_code
    else:
        apply_tree(changes)
        if changes.changed:
            out.print("\n".join(f"{'created' if c.created else 'updated'} {c.path}" for c in changes.changed))
        out.print(f"tree: {len(changes.changed)} file(s) written, {len(changes.unchanged)} unchanged")
        report_orphans(out, find_orphans(project.root, rendered), prune_them=prune_orphans,
                       command="anklume build --prune" if apply else "anklume build --no-apply --prune")
        if not apply:
            return 0
    code = do_apply(project, infra, lock, plan_only=plan_only, as_json=as_json, jobs=jobs,
                    prune=prune_orphans, replace=replace, endpoint=endpoint_of(infra, endpoint),
                    tree=changes, deep=deep, verbose=verbose, adopt=adopt)
    if plan_only and code == 0:
        return tree_code
    return code


def adopted_units(graph: Graph, names: Sequence[str]) -> frozenset[str]:
    """``--adopt NAME`` -> unit uids.  NAME is a unit as the plan names it (``network:homelab``,
    ``profile:homelab/default``, ``instance:web``), a machine (its instance) or a domain (its
    project, bridge, profiles, volumes and instances)."""
    out: set[str] = set()
    incus = [u for u in graph if u.kind in INCUS_KINDS]
    for name in names:
        if name in graph.units and graph[name].kind in INCUS_KINDS:
            out.add(name)
        elif f"instance:{name}" in graph.units:
            out.add(f"instance:{name}")
        elif f"project:{name}" in graph.units:
            out.update(u.uid for u in incus if u.project == name or u.uid in (f"project:{name}", f"network:{name}",
                                                                                   f"acl:{name}"))
        else:
            raise AnklumeError(f"--adopt {name}: no such unit, machine or domain in infra.yml",
                               "name a unit as `anklume build --plan` shows it (e.g. network:homelab), a machine or "
                               "a domain")
    return frozenset(out)


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


def gpu_preflight(lock: Lock, graph: Graph, backend: IncusBackend) -> list[GpuRefusal]:
    """The locked GPUs of ``graph``'s machines against the host (:mod:`anklume.units.preflight`);
    reads the host only when there are some.  In a cluster, each member's pins against that
    member's resources (a member that does not answer is left to the plan: its units wait for it)."""
    pins = {machine: pin for machine, pin in lock.gpus.items() if f"instance:{machine}" in graph.units}
    if not pins:
        return []
    by_member: dict[str | None, dict] = {}
    for machine, pin in pins.items():
        by_member.setdefault(pin.member, {})[machine] = pin
    here = backend.server_name() if any(by_member) else None
    out: list[GpuRefusal] = []
    for member, group in sorted(by_member.items(), key=lambda item: item[0] or ""):
        sources = [f.source for pin in group.values() if pin.driver is not None for f in pin.driver.files]
        try:
            resources = backend.resources(member)
        except AnklumeError:
            if member is None:
                raise
            continue
        # the driver files and nvidia-smi are this machine's: looked at only for the member it is
        endpoint = backend.endpoint if member == here else f"member {member} of {backend.endpoint}"
        out += gpu_refusals(msgspec.structs.replace(lock, gpus=group), graph, host_gpus(resources, endpoint, sources))
    return out


def print_refusals(out: Console, refusals: list[GpuRefusal], graph: Graph) -> None:
    """One message per refusal: what the lock says, what the host has, the fix."""
    for r in refusals:
        held = 1 + len(graph.dependents(f"instance:{r.machine}"))
        out.print(f"refused: {r.render()}", markup=False, highlight=False, soft_wrap=True)
        out.print(f"  hint: {FIX}; nothing of instance {r.machine} is built ({held} unit(s) with what is "
                  "placed in it)", markup=False, highlight=False, soft_wrap=True)


def print_down(out: Console, down: dict[str, str], refused: dict[str, str]) -> None:
    """One message per cluster member that takes no changes now, with what waits for it."""
    for member, why in down.items():
        waiting = sorted(uid for uid, r in refused.items() if r.startswith(why))
        out.print(f"blocked: {why}", markup=False, highlight=False, soft_wrap=True)
        out.print(f"  hint: {len(waiting)} unit(s) wait for it ({', '.join(waiting[:6])}"
                  f"{', ...' if len(waiting) > 6 else ''}); everything on the other members is built; build "
                  "again once it is back (`incus cluster list` shows its status)", markup=False, highlight=False,
                  soft_wrap=True)


def do_apply(project: Project, infra: Infra, lock: Lock, *, plan_only: bool, as_json: bool, jobs: int = 4,
             prune: bool = False, replace: bool = False, endpoint: str | None = None,
             specs: SpecStore | None = None, console: Console | None = None, tree: TreeChanges | None = None,
             deep: bool = False, artefacts: ArtefactStore | None = None, verbose: bool = False,
             adopt: Sequence[str] = ()) -> int:
    """Plan and apply to Incus; ``tree``: the Ansible tree changes about to be (or just) written
    (the roles' variables); ``deep``: re-hash every placed artefact; ``specs``: the applied-spec
    store; ``artefacts``: the local artefact store; ``verbose``: print the traceback of a unit
    that failed on a bug; ``adopt``: what ``--adopt`` names (see :func:`adopted_units`).

    Before any write, the GPU preflight (:func:`gpu_preflight`): a locked GPU the host contradicts
    refuses its instance and every unit after it (blocked in the plan, never applied, one message
    each, exit 1); the other units still apply."""
    out = console or Console(highlight=False)
    errors = Console(stderr=True, highlight=False, soft_wrap=True) if as_json else out
    specs = specs or SpecStore()
    owner = infra.project_name
    graph = project_units(project, infra, lock, tree)
    adopt = adopted_units(graph, adopt)
    backend = IncusBackend(endpoint, owner=owner)
    refusals = gpu_preflight(lock, graph, backend)
    refused = refused_units(graph, refusals)
    down: dict[str, str] = {}  # cluster member -> why it takes no changes now

    def waiting(plan: Plan, live) -> dict[str, str]:
        """uid -> why, for the units that wait: GPU refusals, and on a cluster the units of a
        member that is down and the bridges to make meanwhile."""
        nonlocal down
        down = down_members(graph, live, backend.endpoint)
        bridges = [c.uid for c in plan.pending if c.uid.startswith("network:") and c.action in ("create", "replace")]
        return {**unavailable_units(graph, live, backend.endpoint), **bridges_waiting(graph, bridges, down),
                **refused_units(graph, refusals)}

    def planned(plan: Plan, live) -> Plan:
        nonlocal refused
        refused = waiting(plan, live)
        return mark_refused(mark_damaged(plan, artefact_damage(plan, graph, backend, lock, deep=deep)), refused)

    def refused_json() -> dict:
        return {**({"refused": [r.render() for r in refusals]} if refusals else {}),
                **({"members_down": down} if down else {})}

    def report_refused() -> None:
        print_refusals(errors, refusals, graph)
        print_down(errors, down, refused)

    if plan_only:
        plan, live = observe_and_plan(graph, backend, specs, prune=prune, replace=replace, owner=owner,
                                      adopt=adopt, exact=deep)
        plan = planned(plan, live)
        if as_json:
            out.print_json(json.dumps({**plan_json(plan), **refused_json()}))
        else:
            print_plan(plan, out)
        report_refused()
        return 1 if refusals or down else plan.exit_code
    provisioner = None
    with exclusive_build(project.root):
        plan, live = observe_and_plan(graph, backend, specs, prune=prune, replace=replace, owner=owner,
                                      adopt=adopt, exact=deep)
        plan = planned(plan, live)
        runnable = without_refused(plan, refused)
        if runnable.pending:
            # changes to make: take the daemon-wide lease, then re-read what is about to change
            # (O(changes) requests) and plan again under it
            lease = backend.acquire_lease(lease_holder())
            try:
                live = with_inside(graph, backend.refresh(live, refresh_targets(runnable, graph, live)))
                damaged = {c.uid: [r.render() for r in c.reasons] for c in plan.changes
                           if any(r.field == "artefact" for r in c.reasons)}
                plan = mark_damaged(plan_changes(graph, live, specs=specs.get, prune=prune, replace=replace,
                                                 owner=owner, adopt=adopt), damaged)
                refused = waiting(plan, live)  # a cluster member may have stopped answering meanwhile
                plan = mark_refused(plan, refused)
                runnable = without_refused(plan, refused)
                if any(u.kind in INSIDE_KINDS for u in graph):
                    def event(text: str) -> None:  # a role's tasks, an artefact's progress: one line each
                        out.print(f"  {text}", markup=False, highlight=False, soft_wrap=True)

                    provisioner = Provisioner(backend, project, infra, lock, sources=ArtefactSources.of(infra),
                                              artefacts=artefacts, endpoint=endpoint,
                                              on_event=None if as_json else event)
                results = {}
                if runnable.pending:
                    if not as_json:
                        print_plan(plan, out)
                    progress = None if as_json else make_progress(len(runnable.pending), out)
                    results = apply_plan(runnable, graph, live, backend, specs, jobs=jobs, replace=replace,
                                         progress=progress, provisioner=provisioner)
            finally:
                backend.release_lease(lease)
        if not runnable.pending:
            for c in plan.changes:
                if c.action == "delete":
                    out.print(f"kept {c.uid}: {c.blocked}", markup=False)
            if as_json:
                out.print_json(json.dumps({**plan_json(plan), "results": {}, **refused_json()}))
            elif refused:
                if plan.pending:
                    print_plan(plan, out)
                out.print(f"nothing else to do ({len(graph) - len(refused)} units unchanged, "
                          f"{len(refused)} refused or waiting)")
            else:
                out.print(f"nothing to do ({len(graph)} units unchanged)")
            report_refused()
            return 1 if refusals or down else 0
    failed = [o for o in results.values() if o.status != "ok"]
    if as_json:
        done = {uid: {"status": o.status, "error": o.error, "seconds": round(o.seconds, 3)}
                for uid, o in results.items()}
        sent = dict(provisioner.transferred) if provisioner is not None else {}
        out.print_json(json.dumps({**plan_json(plan), "results": done, "transferred": sent, **refused_json()}))
    else:
        ok = sum(1 for o in results.values() if o.status == "ok")
        out.print(f"applied {ok} of {len(results)} change(s)"
                  + (f"; {len(failed)} failed or skipped" if failed else ""))
        for o in failed:
            out.print(f"[red]{o.status}[/] {escape(o.id)}: {escape(o.error or '')}", highlight=False)
            if verbose and o.trace:
                out.print(o.trace.rstrip(), markup=False, highlight=False)
    report_refused()
    return 1 if failed or refusals or down else 0

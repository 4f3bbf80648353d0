"""A build across an Incus cluster: which units wait for a cluster member (pure).

The lock places each machine on a member (``lock.cluster``); its instance unit, and a custom
volume it mounts, carry that member as ``spec["target"]``.  The live state of a cluster build
holds the members as the cluster sees them (``member:<name>`` objects, their status).  A unit
whose member is not ``Online`` (offline, evacuated, gone from the cluster), and every unit after
it (what is placed inside its instance), is blocked, never applied: everything on the other
members still is, and the next build, once the member is back, converges.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from anklume.units.graph import Graph
from anklume.units.unit import LiveObject

ONLINE = "Online"


def members_of(live: Mapping[str, LiveObject]) -> dict[str, LiveObject]:
    """The cluster's members in the live state, by name (none: not read, or not a cluster)."""
    return {o.name: o for o in live.values() if o.kind == "member"}


def is_clustered(graph: Graph) -> bool:
    """Whether the lock placed ``graph``'s machines on cluster members."""
    return any(u.spec.get("target") for u in graph if u.kind == "instance")


def member_problem(member: str, members: Mapping[str, LiveObject], endpoint: str = "Incus") -> str | None:
    """Why ``member`` cannot take changes now, or None when it is online."""
    if not members:
        return (f"the lock places it on cluster member {member}, but {endpoint} is not a cluster "
                "(run `anklume lock` against the cluster, or point --incus at one of its members)")
    found = members.get(member)
    if found is None:
        return (f"cluster member {member} is not in the cluster (its members: {', '.join(sorted(members))}); "
                "`anklume lock --update MACHINE` places the machine on another member")
    if found.status != ONLINE:
        said = f": {found.description}" if found.description else ""
        return f"cluster member {member} is {found.status or 'in an unknown state'}{said}"
    return None


def unavailable_units(graph: Graph, live: Mapping[str, LiveObject], endpoint: str = "Incus") -> dict[str, str]:
    """uid -> why, for each unit on a member that cannot take changes and every unit after it."""
    members = members_of(live)
    out: dict[str, str] = {}
    for unit in graph:
        member = unit.spec.get("target") if unit.kind in ("instance", "volume") else None
        if member is None:
            continue
        problem = member_problem(member, members, endpoint)
        if problem is None:
            continue
        out.setdefault(unit.uid, problem)
        for dep in graph.dependents(unit.uid):
            out.setdefault(dep, f"{problem} ({unit.uid} waits for it)")
    return out


def down_members(graph: Graph, live: Mapping[str, LiveObject], endpoint: str = "Incus") -> dict[str, str]:
    """member -> why, for each member the lock uses that cannot take changes now."""
    members = members_of(live)
    wanted = sorted({u.spec["target"] for u in graph if u.kind in ("instance", "volume") and u.spec.get("target")})
    return {m: p for m in wanted if (p := member_problem(m, members, endpoint)) is not None}


def bridges_waiting(graph: Graph, bridges: Iterable[str], down: Mapping[str, str]) -> dict[str, str]:
    """uid -> why, for each bridge to create (or re-create) while a member is down, and every unit
    after it: Incus makes a bridge on every member at once and refuses while one is away ("peer
    node ... is down", seen on Incus 6.0.4)."""
    if not down:
        return {}
    member, why = next(iter(sorted(down.items())))
    out: dict[str, str] = {}
    for uid in bridges:
        out.setdefault(uid, f"{why} (a bridge is made on every member)")
        for dep in graph.dependents(uid):
            out.setdefault(dep, f"{why} ({uid} waits for it)")
    return out

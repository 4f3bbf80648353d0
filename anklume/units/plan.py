"""Units + the live state -> a ``Plan``: what ``build`` would do, and why (pure).

The live state is read by the backend (a handful of listings, see
the backend) into :class:`~anklume.units.unit.LiveObject` values; this module only compares.
The rule above the others: **a protected instance and its data are never destroyed by anklume,
whatever state the daemon is in**; and an object anklume did not create is never taken over
silently.

- no live object: **create**;
- an object another infra owns (its ``user.anklume.owner``, else its domain project's) or one
  anklume did not create (no ``user.anklume.managed``): **blocked**, unless the unit is named in
  ``adopt`` (``build --adopt``).  A project's default profile comes with its project;
- recorded key (``user.anklume.key``) equal to the unit's key: **unchanged** (an instance that
  is not running is an **update** whose only reason is its state: it is started);
- key different, identity equal: **update** in place;
- identity different (an instance's image fingerprint, type or project; a volume's pool; a
  bridge whose creation was interrupted, left "Pending"): **replace**.  An instance that holds
  data to keep (protected, or adopted) is never deleted: with ``replace=True`` it is *rebuilt*
  (stopped, snapshotted, the snapshot published as an image, rebuilt from the new image: its
  config, uuid and custom volumes stay), otherwise blocked; one that changes project or type
  cannot be rebuilt and is blocked with what to do by hand.  An unprotected instance is deleted,
  then created.  A volume that changes pool needs ``replace=True`` (its data would go), and is
  blocked while a protected instance uses it;
- an instance without a recorded key: unprotected and managed, an interrupted create, **replace**d;
  protected (protection is written with the key, so no interrupted build left it) or adopted,
  **update**d in place;
- a managed object no unit names: an orphan, **delete**d only with ``prune=True``, never when
  protected, nor while an instance still in its domain uses it (a protected orphan, an instance
  moving to another domain, one anklume did not create).  A project's own images that exist
  nowhere else (backups) are moved to the default project before it is deleted.

Reasons name the field that changed, old -> new, from the applied spec kept in the local store
(``specs(key)``); without it, the recorded and planned keys are named.  Drift that leaves the
recorded key alone (a config key set by hand) is ``verify --live``'s business, not the plan's.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from typing import Any, Literal

import msgspec

from anklume.errors import EXIT_CHANGES, EXIT_OK
from anklume.units.graph import Graph
from anklume.units.inside import INSIDE_KINDS, unrecorded
from anklume.units.key import short
from anklume.units.acl import acl_uid, bridge_uses_acl, rule_drift, show_rule
from anklume.units.cluster import member_problem, members_of
from anklume.units.unit import DELETE_ORDER, LiveObject, Unit

Action = Literal["create", "update", "replace", "move", "delete", "unchanged"]
#: The actions a plan counts, in the order its summary names them.
ACTIONS: tuple[Action, ...] = ("create", "update", "replace", "move", "delete")


class Reason(msgspec.Struct, frozen=True):
    field: str
    old: Any = None
    new: Any = None
    text: str | None = None

    def render(self) -> str:
        if self.text is not None:
            return self.text
        return f"{self.field}: {show_value(self.old)} -> {show_value(self.new)}"


class Change(msgspec.Struct, frozen=True, kw_only=True):
    action: Action
    uid: str
    reasons: list[Reason] = []
    blocked: str | None = None  # why it will not be applied (protected, needs --prune/--replace)
    key: str | None = None  # the planned key (None for deletes)
    old_key: str | None = None  # the recorded key
    start_only: bool = False  # an update whose only reason is a stopped instance
    #: a replace that keeps the instance: rebuilt from the new image, its old root filesystem
    #: published as an image first (protected or adopted instances); otherwise deleted, created
    rebuild: bool = False

    @property
    def pending(self) -> bool:
        """A change ``build`` still has to make (kept orphans are reported, not pending)."""
        return self.action != "unchanged" and not (self.action == "delete" and self.blocked)


class Plan(msgspec.Struct, frozen=True):
    changes: list[Change]

    def count(self, action: Action) -> int:
        return sum(1 for c in self.changes if c.action == action)

    @property
    def pending(self) -> list[Change]:
        return [c for c in self.changes if c.pending]

    @property
    def exit_code(self) -> int:
        return EXIT_CHANGES if self.pending else EXIT_OK

    def summary(self) -> str:
        parts = [f"{self.count(a)} to {a}" for a in ACTIONS if self.count(a)]
        parts.append(f"{self.count('unchanged')} unchanged")
        return ", ".join(parts)


def show_value(value: Any) -> str:
    """A value as a finding or a reason prints it."""
    if value is None:
        return "(none)"
    if isinstance(value, str):
        return repr(value)
    return msgspec.json.encode(value).decode()


def diff_specs(old: Mapping[str, Any], new: Mapping[str, Any], prefix: str = "") -> list[Reason]:
    """Every leaf that differs between two specs, as ``a.b.c: old -> new``."""
    out: list[Reason] = []
    for k in sorted(set(old) | set(new), key=str):
        path = f"{prefix}{k}"
        a, b = old.get(k), new.get(k)
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            out.extend(diff_specs(a, b, path + "."))
        elif a != b:
            out.append(Reason(path, a, b))
    return out


SpecLookup = Callable[[str], "dict[str, Any] | None"]


def _no_specs(_key: str) -> None:
    return None


def owner_of(obj: LiveObject, live: Mapping[str, LiveObject]) -> str | None:
    """The ``project_name`` of the infra an object belongs to: its own ``user.anklume.owner``,
    else (the mark removed by hand, or never written) that of its domain's project."""
    if obj.owner or obj.kind == "project":
        return obj.owner
    project = live.get(f"project:{obj.domain}")
    return project.owner if project is not None and project.managed else None


def _theirs(obj: LiveObject, live: Mapping[str, LiveObject], owner: str | None) -> str | None:
    """The other infra's ``project_name`` when ``obj`` belongs to another infra, else None."""
    other = owner_of(obj, live)
    return other if owner is not None and other is not None and other != owner else None


class _Context(msgspec.Struct, frozen=True):
    graph: Graph
    live: Mapping[str, LiveObject]
    specs: SpecLookup
    prune: bool
    replace: bool
    owner: str | None
    adopt: frozenset[str]


def plan_changes(graph: Graph, live: Mapping[str, LiveObject], *, specs: SpecLookup = _no_specs,
                 prune: bool = False, replace: bool = False, owner: str | None = None,
                 adopt: Collection[str] = ()) -> Plan:
    """Compare each unit with its live object, then list the orphans (pure).

    ``owner``: this infra's ``project_name``.  Objects another infra's build wrote are never
    orphans here, and a unit that would take one over is blocked.  ``adopt``: the uids of the units
    whose existing object anklume did not create (or another infra owns) may be taken over; any
    other such object blocks its unit."""
    ctx = _Context(graph, live, specs, prune, replace, owner, frozenset(adopt))
    changes = _wait_for_moves([_change(unit, live.get(unit.uid), ctx) for unit in graph], ctx)
    changes.extend(_orphans(changes, ctx))
    return Plan(changes)


def _wait_for_moves(changes: list[Change], ctx: _Context) -> list[Change]:
    """A volume an instance moving by hand takes along is not created empty in its new domain:
    the move (``incus storage volume move``) would find the name taken."""
    waiting: dict[str, str] = {}  # volume uid in the new domain -> the instance that brings it
    for c in changes:
        obj, unit = ctx.live.get(c.uid), ctx.graph.get(c.uid)
        if c.rebuild and c.blocked and obj is not None and unit is not None and obj.project != unit.project:
            for d in obj.devices.values():
                if d.get("type") == "disk" and d.get("pool") and d.get("source"):
                    waiting[f"volume:{unit.project}/{d['source']}"] = unit.object
    if not waiting:
        return changes
    return [msgspec.structs.replace(c, blocked=(
        f"waits for {waiting[c.uid]} to move: its volume {c.uid.rsplit('/', 1)[-1]} comes along "
        f"(see instance:{waiting[c.uid]})")) if c.action == "create" and c.uid in waiting else c for c in changes]


def _key_reasons(unit: Unit, obj: LiveObject, specs: SpecLookup) -> list[Reason]:
    old = specs(obj.key) if obj.key else None
    if old is not None:
        found = diff_specs(old, unit.spec)
        if found:
            return found
    return [Reason("key", text=f"recorded key {short(obj.key or '') or '(none)'} -> {short(unit.key)}"
                   + ("" if old is not None else " (applied spec not in the local store)"))]


def _made_with_our_project(unit: Unit, ctx: _Context) -> bool:
    """A project's default profile: Incus made it with the project, so it is adopted with it."""
    if unit.kind != "profile" or unit.object != "default":
        return False
    project = ctx.live.get(f"project:{unit.project}")
    if f"project:{unit.project}" in ctx.adopt:
        return True
    return project is not None and project.managed and not _theirs(project, ctx.live, ctx.owner)


def _change(unit: Unit, obj: LiveObject | None, ctx: _Context) -> Change:
    if obj is None:
        return Change(action="create", uid=unit.uid, key=unit.key, reasons=[Reason("object", text=unrecorded(unit)
                      if unit.kind in INSIDE_KINDS else f"{unit.kind} {unit.object} does not exist")])
    unreadable = _on_a_member_down(unit, obj, ctx)
    if unreadable is not None:
        return unreadable
    old_key = obj.key
    adopted = unit.uid in ctx.adopt
    live_id = obj.identity()
    id_diff = [Reason(f"identity.{k}", live_id.get(k), v) for k, v in sorted(unit.identity.items())
               if live_id.get(k) != v]
    other = _theirs(obj, ctx.live, ctx.owner)
    if other and not adopted:
        return Change(action="update", uid=unit.uid, key=unit.key, old_key=old_key, reasons=[
            Reason("owner", other, ctx.owner)], blocked=(
            f"{unit.kind} {unit.object} belongs to the anklume project {other!r}: another infra.yml on this "
            f"daemon, or this one before its project_name changed. If it is yours, set project_name back to "
            f"{other!r} (or take it over: `anklume build --adopt {unit.uid}`); if not, name yours otherwise"))
    if not obj.managed and not adopted and not _made_with_our_project(unit, ctx):
        return Change(action="replace" if id_diff else "update", uid=unit.uid, key=unit.key, old_key=old_key,
                      reasons=[Reason("managed", text=f"{unit.kind} {unit.object} exists, not created by anklume"),
                               *id_diff],
                      blocked=(f"{unit.kind} {unit.object} exists but anklume did not create it: it is never "
                               f"taken over silently. Remove or rename it, or adopt it explicitly: "
                               f"`anklume build --adopt {unit.uid}`"))
    if id_diff and old_key != unit.key:
        if unit.kind == "instance":
            return _instance_replace(unit, obj, id_diff, ctx)
        blocked = None
        if unit.kind == "volume":
            blocked = _volume_move(unit, obj, ctx)
        return Change(action="replace", uid=unit.uid, key=unit.key, old_key=old_key, reasons=id_diff,
                      blocked=blocked)
    if unit.kind == "instance" and not old_key:
        if obj.protected or not obj.managed:
            # protection is written with the key: a protected instance without one was not left
            # half-created by anklume (its key was removed by hand), nor was an adopted one
            text = (f"instance {unit.object} exists, not created by anklume: adopted (--adopt), its spec applied "
                    "in place" if not obj.managed else
                    f"instance {unit.object} carries no recorded key (removed by hand?), but it is protected and "
                    "anklume writes protection only with the key, once the instance is complete: its spec is "
                    "applied in place")
            return Change(action="update", uid=unit.uid, key=unit.key, reasons=[Reason("key", text=text)])
        # anklume created it and never recorded it as applied: an interrupted create, re-done
        return Change(action="replace", uid=unit.uid, key=unit.key, reasons=[Reason(
            "key", text=f"instance {unit.object} carries no recorded key and is not protected: left half-created "
                        "by an interrupted build (or its key was removed): re-created")])
    moved = _move(unit, obj, ctx)
    if moved is not None:
        return moved
    if unit.kind == "network" and obj.status not in (None, "Created"):
        return Change(action="replace", uid=unit.uid, key=unit.key, old_key=old_key,
                      reasons=[Reason("status", obj.status, "Created")])
    if not obj.managed:
        why = "adopted (--adopt)" if adopted else "made by Incus with its project: adopted with it"
        return Change(action="update", uid=unit.uid, key=unit.key, old_key=old_key,
                      reasons=[Reason("managed", text=f"{unit.kind} {unit.object} exists, not created by anklume: "
                                                      f"{why}")])
    if other:
        return Change(action="update", uid=unit.uid, key=unit.key, old_key=old_key,
                      reasons=[Reason("owner", other, ctx.owner, text=f"owner: {other!r} -> {ctx.owner!r} "
                                                                       "(taken over: --adopt)")])
    if old_key != unit.key:
        return Change(action="update", uid=unit.uid, key=unit.key, old_key=old_key,
                      reasons=_key_reasons(unit, obj, ctx.specs))
    if unit.kind == "instance" and obj.status != "Running":
        return Change(action="update", uid=unit.uid, key=unit.key, old_key=old_key, start_only=True,
                      reasons=[Reason("state", obj.status, "Running")])
    edited = _acl_edited(unit, obj, ctx)
    if edited:
        return Change(action="update", uid=unit.uid, key=unit.key, old_key=old_key, reasons=edited)
    return Change(action="unchanged", uid=unit.uid, key=unit.key, old_key=old_key)


def _on_a_member_down(unit: Unit, obj: LiveObject, ctx: _Context) -> Change | None:
    """An instance (or volume) on a cluster member that is not online: Incus lists it without its
    config (status "Error"), so nothing about it can be compared: it waits for its member."""
    if obj.location is None or f"member:{obj.location}" not in ctx.live:
        return None
    problem = member_problem(obj.location, members_of(ctx.live))
    if problem is None:
        return None
    return Change(action="update", uid=unit.uid, key=unit.key, old_key=obj.key, blocked=problem, reasons=[Reason(
        "member", text=f"{unit.kind} {unit.object} is on cluster member {obj.location}: its state cannot be read")])


def _move(unit: Unit, obj: LiveObject, ctx: _Context) -> Change | None:
    """An instance on another cluster member than the lock's: **move**d (stopped, moved, its spec
    applied, started); a protected one only with ``--replace`` (its root filesystem is copied
    to the new member and deleted from the old one).  A custom volume on another member is
    blocked: the instances that mount it move with it by hand."""
    target = unit.spec.get("target")
    if target is None or obj.location is None or obj.location == target:
        return None
    reasons = [Reason("location", obj.location, target,
                      text=f"member: {obj.location} -> {target} (the lock places it there)")]
    if unit.kind == "volume":
        return Change(action="move", uid=unit.uid, key=unit.key, old_key=obj.key, reasons=reasons, blocked=(
            f"volume {unit.object} is on member {obj.location}: anklume does not move data between members. Move "
            f"it by hand (incus storage volume move {obj.pool}/{unit.object} {obj.pool}/{unit.object} --project "
            f"{unit.project} --target {obj.location} --destination-target {target}), or place the machines that "
            f"mount it on {obj.location} (target: in infra.yml, then `anklume lock`)"))
    if unit.kind != "instance":
        return None
    blocked = None
    if (obj.protected or unit.protected) and not ctx.replace:
        blocked = (f"{unit.object} is protected (ephemeral: false): moving it stops it and copies its root "
                   f"filesystem from {obj.location} to {target}: pass --replace to move it")
    return Change(action="move", uid=unit.uid, key=unit.key, old_key=obj.key, reasons=reasons, blocked=blocked)


def _acl_edited(unit: Unit, obj: LiveObject, ctx: _Context) -> list[Reason]:
    """Isolation changed by hand under a recorded key (read in the same listing, so a no-op build
    stays a no-op): an ACL's rules edited, or a bridge that no longer applies its ACL."""
    if unit.kind == "acl" and obj.exact:  # (in a plain build, known by its mirrored key only)
        return [Reason(direction, show_rule(want) if want else None, show_rule(have) if have else None,
                       text=f"{direction} rule {'missing' if have is None else 'added by hand'}: "
                            f"{show_rule(want or have or {})}")
                for direction, want, have in rule_drift(unit, obj)]
    if unit.kind == "network":
        if obj.exact:  # `build --deep`, or re-read under the lease: the bridge's own config
            keys = [k for k in unit.spec["config"] if k.startswith("security.acls")]
            edited = [Reason(k, obj.config.get(k), unit.spec["config"][k]) for k in keys
                      if obj.config.get(k) != unit.spec["config"][k]]
            if edited:
                return edited
        acl = ctx.live.get(acl_uid(unit.name))
        if acl is not None and bridge_uses_acl(unit.object, acl) is False \
                and unit.spec["config"].get("security.acls") == acl.object:
            return [Reason("security.acls", text=f"bridge {unit.object} no longer applies {acl.object} "
                                                 "(its security.acls changed by hand)")]
    return []


def _instance_replace(unit: Unit, obj: LiveObject, id_diff: list[Reason], ctx: _Context) -> Change:
    """An instance whose identity changed.  One that holds data anklume must keep (protected: the
    live flag, or the unit's when it was fully built; or adopted) is rebuilt in place, never
    deleted: only with --replace, only in its own project and with its own type."""
    kept = obj.protected or not obj.managed or (unit.protected and bool(obj.key))
    if not kept:  # deleted, then created
        return Change(action="replace", uid=unit.uid, key=unit.key, old_key=obj.key, reasons=id_diff)
    what = "protected (ephemeral: false)" if obj.protected or unit.protected else "not created by anklume (adopted)"
    blocked = None
    if obj.project != unit.project:
        blocked = _instance_move(unit, obj, what)
    elif obj.type != unit.spec["type"]:
        blocked = (f"{unit.object} is {what} and changes type ({obj.type} -> {unit.spec['type']}): Incus rebuilds "
                   "an instance only with its own type; save its data, then delete it by hand")
    elif not ctx.replace:
        blocked = (f"{unit.object} is {what}: pass --replace to snapshot it and rebuild it from the new image "
                   "(its old root filesystem kept as an image, its volumes kept)")
    return Change(action="replace", uid=unit.uid, key=unit.key, old_key=obj.key, reasons=id_diff, blocked=blocked,
                  rebuild=True)


def _instance_move(unit: Unit, obj: LiveObject, what: str) -> str:
    old, new, name = obj.project, unit.project, unit.object
    volumes = sorted((d["pool"], d["source"]) for d in obj.devices.values()
                     if d.get("type") == "disk" and d.get("pool") and d.get("source")
                     and not d["source"].startswith("/"))
    steps = [f"incus stop {name} --project {old}"]
    steps += [f"incus storage volume move {p}/{v} {p}/{v} --project {old} --target-project {new}" for p, v in volumes]
    steps += [f"incus move {name} --project {old} --target-project {new}"]
    said = f" with its volumes ({', '.join(v for _, v in volumes)})" if volumes else ""
    return (f"{name} is {what} and moves from domain {old} to domain {new}: anklume neither deletes it nor "
            f"moves it, and keeps what it uses in {old}. Move it{said} by hand, then build again: "
            + "; ".join(steps) + f". Or keep it in domain {old} in infra.yml")


def _volume_move(unit: Unit, obj: LiveObject, ctx: _Context) -> str | None:
    """Why a volume that changes pool is not replaced (its data would go), or None."""
    old, new = obj.pool, unit.spec["pool"]
    by_hand = (f"move it by hand: incus storage volume move {old}/{unit.object} {new}/{unit.object} "
               f"--project {unit.project}")
    users = sorted(u.object for u in ctx.graph if u.kind == "instance" and u.protected and u.project == unit.project
                   and any(d.get("type") == "disk" and d.get("source") == unit.object
                           for d in u.spec["devices"].values()))
    if users:
        return (f"volume {unit.object} moves from pool {old} to {new}: protected instance(s) {', '.join(users)} "
                f"use it and replacing it deletes its data: {by_hand}")
    if not ctx.replace:
        return f"replacing volume {unit.object} (new pool) deletes its data: pass --replace, or {by_hand}"
    return None


def _orphans(changes: list[Change], ctx: _Context) -> list[Change]:
    graph, live = ctx.graph, ctx.live
    by_uid = {c.uid: c for c in changes}
    orphans = sorted(((uid, o) for uid, o in live.items()
                      if o.managed and uid not in graph.units and not _theirs(o, live, ctx.owner)),
                     key=lambda item: (DELETE_ORDER.get(item[1].kind, 9), item[0]))
    # the instances that are still in each domain after this build: what they use stays
    staying: dict[str, list[str]] = {}
    for uid, o in live.items():
        if o.kind != "instance":
            continue
        unit, change = graph.get(uid), by_uid.get(uid)
        if unit is None:
            if not o.managed:
                why = f"instance {o.object} (not created by anklume) is in project {o.project}"
            elif _theirs(o, live, ctx.owner):
                why = f"instance {o.object} of the anklume project {_theirs(o, live, ctx.owner)!r} is in it"
            elif o.protected:
                why = f"protected instance {o.object} of domain {o.domain} is kept"
            else:
                continue  # an orphan: deleted with --prune, first
        elif o.project == unit.project:
            continue  # its domain is in infra.yml
        elif change is not None and change.action == "replace" and not change.blocked and not change.rebuild:
            continue  # deleted from its old project by its replace, which comes first
        else:
            why = f"instance {o.object} still uses domain {o.domain} (it moves to {unit.project}: see {uid})"
        staying.setdefault(o.domain, []).append(why)
    out: list[Change] = []
    for uid, o in orphans:
        reasons = [Reason("infra", text=f"{o.kind} {o.object} is no longer in infra.yml")]
        if o.kind == "project":
            reasons.append(Reason("images", text="images found only in it (the anklume-before-* backups, images "
                                                 "imported by hand) are moved to project default first"))
        blocked = None
        if o.protected:
            blocked = "protected (ephemeral: false): never deleted; remove it by hand if you mean it"
        elif o.kind != "instance" and staying.get(o.domain):
            blocked = "kept: " + "; ".join(staying[o.domain])
        elif not ctx.prune:
            blocked = "kept: pass --prune to delete it"
        out.append(Change(action="delete", uid=uid, old_key=o.key, reasons=reasons, blocked=blocked))
    return out


def mark_damaged(plan: Plan, damaged: Mapping[str, list[str]]) -> Plan:
    """``plan`` with each unchanged unit named in ``damaged`` (uid -> what was found wrong in its
    instance) turned into an update whose reasons say what is wrong: ``build`` re-places it."""
    if not damaged:
        return plan
    out = []
    for c in plan.changes:
        if c.action == "unchanged" and c.uid in damaged:
            c = Change(action="update", uid=c.uid, key=c.key, old_key=c.old_key,
                       reasons=[Reason("artefact", text=f"damaged in the instance: {d}") for d in damaged[c.uid]])
        out.append(c)
    return Plan(out)

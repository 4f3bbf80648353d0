"""Units + the live state -> a ``Plan``: what ``build`` would do, and why (pure).

The live state is read by the backend (a handful of listings, see
the backend) into :class:`~anklume.units.unit.LiveObject` values; this module only compares:

- no live object: **create**;
- recorded key (``user.anklume.key``) equal to the unit's key: **unchanged** (an instance that
  is not running is an **update** whose only reason is its state: it is started);
- key different, identity equal: **update** in place (an object not yet managed by anklume,
  e.g. a project's default profile, is adopted this way);
- identity different (an instance's image fingerprint, type or project; a volume's pool; a
  bridge whose creation was interrupted, left "Pending"; an instance an interrupted build left
  without a key): **replace**.  A protected instance is replaced only with ``replace=True``
  (stopped, snapshotted, the snapshot published as an image, then rebuilt from the new image:
  its config, uuid and custom volumes stay), otherwise the change is blocked; a volume that
  changes pool too (its data would go);
- a managed object (``user.anklume.managed=true``) no unit names: an orphan, **delete**d only
  with ``prune=True`` and never when protected (nor its domain's project, bridge, profiles and
  volumes while a protected instance of that domain is kept).

Reasons name the field that changed, old -> new, from the applied spec kept in the local store
(``specs(key)``); without it, the recorded and planned keys are named.  Drift that leaves the
recorded key alone (a config key set by hand) is ``verify --live``'s business, not the plan's.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Literal

import msgspec

from anklume.errors import EXIT_CHANGES, EXIT_OK
from anklume.units.graph import Graph
from anklume.units.inside import INSIDE_KINDS, unrecorded
from anklume.units.key import short
from anklume.units.unit import DELETE_ORDER, LiveObject, Unit

Action = Literal["create", "update", "replace", "delete", "unchanged"]


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
        parts = [f"{self.count(a)} to {a}" for a in ("create", "update", "replace", "delete") if self.count(a)]
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


def plan_changes(graph: Graph, live: Mapping[str, LiveObject], *, specs: SpecLookup = _no_specs,
                 prune: bool = False, replace: bool = False, owner: str | None = None) -> Plan:
    """Compare each unit with its live object, then list the orphans (pure).

    ``owner``: this infra's ``project_name``.  Objects another infra's build wrote are never
    orphans here, and a unit that would take one over is blocked."""
    changes: list[Change] = []
    for unit in graph:
        obj = live.get(unit.uid)
        if obj is not None and obj.owned_by_other(owner):
            changes.append(Change(action="update", uid=unit.uid, key=unit.key, old_key=obj.key, reasons=[
                Reason("owner", obj.owner, owner)], blocked=f"{unit.kind} {unit.object} belongs to the anklume "
                f"project {obj.owner!r} (another infra.yml on this daemon): rename yours"))
            continue
        changes.append(_change(unit, obj, specs, replace))
    changes.extend(_orphans(graph, live, prune, owner))
    return Plan(changes)


def _key_reasons(unit: Unit, obj: LiveObject, specs: SpecLookup) -> list[Reason]:
    old = specs(obj.key) if obj.key else None
    if old is not None:
        found = diff_specs(old, unit.spec)
        if found:
            return found
    return [Reason("key", text=f"recorded key {short(obj.key or '') or '(none)'} -> {short(unit.key)}"
                   + ("" if old is not None else " (applied spec not in the local store)"))]


def _change(unit: Unit, obj: LiveObject | None, specs: SpecLookup, replace: bool) -> Change:
    if obj is None:
        return Change(action="create", uid=unit.uid, key=unit.key, reasons=[Reason("object", text=unrecorded(unit)
                      if unit.kind in INSIDE_KINDS else f"{unit.kind} {unit.object} does not exist")])
    old_key = obj.key
    live_id = obj.identity()
    id_diff = [Reason(f"identity.{k}", live_id.get(k), v) for k, v in sorted(unit.identity.items())
               if live_id.get(k) != v]
    if id_diff and old_key != unit.key:
        blocked = None
        if not obj.managed and not replace:
            blocked = (f"{unit.kind} {unit.object} exists but anklume did not create it: rename or remove it, "
                       "or pass --replace")
        elif obj.protected and not replace:
            blocked = (f"{unit.object} is protected (ephemeral: false): pass --replace to snapshot it and "
                       "rebuild it from the new image")
        elif unit.kind == "volume" and not replace:
            blocked = f"replacing volume {unit.object} (new pool) deletes its data: pass --replace"
        elif obj.protected and live_id.get("project") != unit.identity.get("project"):
            blocked = f"{unit.object} is protected and moves to another project: move it by hand"
        return Change(action="replace", uid=unit.uid, key=unit.key, old_key=old_key, reasons=id_diff,
                      blocked=blocked)
    if unit.kind == "instance" and obj.managed and not old_key:
        # anklume created it and never recorded it as applied: an interrupted create, re-done
        return Change(action="replace", uid=unit.uid, key=unit.key, reasons=[Reason(
            "key", text=f"instance {unit.object} was left half-created by an interrupted build: re-created")],
            blocked=None if not obj.protected or replace else
            f"{unit.object} is protected: pass --replace to re-create it")
    if unit.kind == "network" and obj.status not in (None, "Created"):
        return Change(action="replace", uid=unit.uid, key=unit.key, old_key=old_key,
                      reasons=[Reason("status", obj.status, "Created")])
    if not obj.managed:
        return Change(action="update", uid=unit.uid, key=unit.key, old_key=old_key,
                      reasons=[Reason("managed", text=f"{unit.kind} {unit.object} exists, not managed by anklume "
                                                      "yet: adopting it")])
    if old_key != unit.key:
        return Change(action="update", uid=unit.uid, key=unit.key, old_key=old_key,
                      reasons=_key_reasons(unit, obj, specs))
    if unit.kind == "instance" and obj.status != "Running":
        return Change(action="update", uid=unit.uid, key=unit.key, old_key=old_key, start_only=True,
                      reasons=[Reason("state", obj.status, "Running")])
    return Change(action="unchanged", uid=unit.uid, key=unit.key, old_key=old_key)


def _orphans(graph: Graph, live: Mapping[str, LiveObject], prune: bool, owner: str | None = None) -> list[Change]:
    orphans = [o for uid, o in live.items() if o.managed and uid not in graph.units and not o.owned_by_other(owner)]
    orphans.sort(key=lambda o: (DELETE_ORDER.get(o.kind, 9), o.uid))
    kept_domains: dict[str, str] = {}
    for o in orphans:
        if o.protected:
            kept_domains.setdefault(o.domain, o.object)
    out: list[Change] = []
    for o in orphans:
        reasons = [Reason("infra", text=f"{o.kind} {o.object} is no longer in infra.yml")]
        blocked = None
        if o.protected:
            blocked = "protected (ephemeral: false): never deleted; remove it by hand if you mean it"
        elif o.kind != "instance" and kept_domains.get(o.domain):
            blocked = f"kept: protected instance {kept_domains[o.domain]} of domain {o.domain} is kept"
        elif not prune:
            blocked = "kept: pass --prune to delete it"
        out.append(Change(action="delete", uid=o.uid, old_key=o.key, reasons=reasons, blocked=blocked))
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

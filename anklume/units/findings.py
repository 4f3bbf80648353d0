"""Live state against the lock, as findings (pure): what ``verify --live`` reports.

Each :class:`Finding` names an object, a field, what the lock expects and what Incus has:

- every unit's object exists, is managed, and carries the unit's recorded key;
- its actual config and devices equal the unit's spec: a config key changed or added by hand,
  a device removed or edited, a profile list changed; an instance that is not running; an
  instance whose ``volatile.base_image`` is not the pinned fingerprint;
- a managed object that the lock no longer describes (an orphan);
- each pinned GPU slot still holds a GPU of the pinned vendor/product (and UUID when both are
  known), from ``/1.0/resources``.

It mirrors :func:`anklume.units.plan.plan_changes`, which decides what ``build`` does.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import msgspec

from anklume.lock.schema import Lock
from anklume.units.graph import Graph
from anklume.units.inside import INSIDE_KINDS, record_key
from anklume.units.plan import show_value
from anklume.units.unit import LiveObject, Unit


class Finding(msgspec.Struct, frozen=True):
    object: str
    field: str
    expected: Any
    actual: Any

    def render(self) -> str:
        return f"{self.object}: {self.field}: expected {show_value(self.expected)}, found {show_value(self.actual)}"


def _ours(key: str) -> bool:
    return not key.startswith(("volatile.", "image.", "user.anklume."))


def _compare_map(uid: str, prefix: str, expected: Mapping[str, Any], actual: Mapping[str, Any], *,
                 exact: bool) -> list[Finding]:
    keys = set(expected) | ({k for k in actual if _ours(k)} if exact else set())
    return [Finding(uid, f"{prefix}.{k}", expected.get(k), actual.get(k))
            for k in sorted(keys) if expected.get(k) != actual.get(k)]


def _compare_devices(uid: str, expected: Mapping[str, Mapping[str, str]],
                     actual: Mapping[str, Mapping[str, str]]) -> list[Finding]:
    out: list[Finding] = []
    for name in sorted(set(expected) | set(actual)):
        want, have = expected.get(name), actual.get(name)
        if want is None or have is None:
            out.append(Finding(uid, f"devices.{name}", want, have))
        elif dict(want) != dict(have):
            out.extend(_compare_map(uid, f"devices.{name}", want, have, exact=True))
    return out


def unit_findings(unit: Unit, obj: LiveObject | None) -> list[Finding]:
    uid = unit.uid
    if unit.kind in INSIDE_KINDS:  # recorded on its instance; what it placed: artefact_findings
        recorded = obj.key if obj is not None else None
        if recorded != unit.key:
            return [Finding(uid, f"instance {unit.object}: config.{record_key(unit.kind, unit.name)}", unit.key,
                            recorded)]
        return []
    if obj is None:
        return [Finding(uid, "exists", f"{unit.kind} {unit.object}", None)]
    out: list[Finding] = []
    if not obj.managed:
        out.append(Finding(uid, "config.user.anklume.managed", "true", obj.config.get("user.anklume.managed")))
    if obj.key != unit.key:
        out.append(Finding(uid, "config.user.anklume.key", unit.key, obj.key))
    spec = unit.spec
    if unit.kind in ("project", "network"):
        out += _compare_map(uid, "config", spec["config"], obj.config, exact=False)
        if unit.kind == "network" and obj.status not in (None, "Created"):
            out.append(Finding(uid, "status", "Created", obj.status))
    elif unit.kind == "volume":
        out += _compare_map(uid, "config", spec["config"], obj.config, exact=False)
        if obj.pool != spec["pool"]:
            out.append(Finding(uid, "pool", spec["pool"], obj.pool))
    elif unit.kind == "profile":
        out += _compare_map(uid, "config", spec["config"], obj.config, exact=True)
        out += _compare_devices(uid, spec["devices"], obj.devices)
    elif unit.kind == "instance":
        out += _compare_map(uid, "config", spec["config"], obj.config, exact=True)
        out += _compare_devices(uid, spec["devices"], obj.devices)
        if list(obj.profiles) != list(spec["profiles"]):
            out.append(Finding(uid, "profiles", spec["profiles"], obj.profiles))
        if obj.project != unit.project:
            out.append(Finding(uid, "project", unit.project, obj.project))
        if obj.type != spec["type"]:
            out.append(Finding(uid, "type", spec["type"], obj.type))
        fp = spec["image"]["fingerprint"]
        if obj.config.get("volatile.base_image") != fp:
            out.append(Finding(uid, "config.volatile.base_image", fp, obj.config.get("volatile.base_image")))
        if obj.status != "Running":
            out.append(Finding(uid, "status", "Running", obj.status))
    if unit.kind in ("project", "network", "profile") and obj.description != spec.get("description", ""):
        out.append(Finding(uid, "description", spec.get("description", ""), obj.description))
    return out


def gpu_findings(lock: Lock, cards: Sequence[Any]) -> list[Finding]:
    """Each pinned slot still holds a GPU of the pinned vendor/product (and uuid when known)."""
    by_pci = {c.pci: c for c in cards}
    out: list[Finding] = []
    for machine, pin in sorted(lock.gpus.items()):
        want = pin.locked
        uid = f"gpu:{machine}"
        card = by_pci.get(want.pci)
        if card is None:
            out.append(Finding(uid, "pci", want.pci, f"no GPU at {want.pci}"))
            continue
        for field in ("vendor_id", "product_id"):
            if getattr(card, field) != getattr(want, field):
                out.append(Finding(uid, field, getattr(want, field), getattr(card, field)))
        if want.uuid and card.uuid and want.uuid != card.uuid:
            out.append(Finding(uid, "uuid", want.uuid, card.uuid))
    return out


def live_findings(graph: Graph, live: Mapping[str, LiveObject], lock: Lock, cards: Sequence[Any] = (),
                  owner: str | None = None) -> list[Finding]:
    """``owner``: this infra's ``project_name``; another infra's objects are not orphans of this one,
    and a unit's object that another infra wrote is a finding."""
    out: list[Finding] = []
    for unit in graph:
        obj = live.get(unit.uid)
        if obj is not None and obj.owned_by_other(owner):
            out.append(Finding(unit.uid, "config.user.anklume.owner", owner, obj.owner))
        out += unit_findings(unit, obj)
    for uid, obj in sorted(live.items()):
        if obj.managed and uid not in graph.units and not obj.owned_by_other(owner):
            out.append(Finding(uid, "managed", "not in the lock (orphan)", f"{obj.kind} {obj.object}"))
    out += gpu_findings(lock, cards)
    return out

"""Live state against the lock, as findings (pure): what ``verify --live`` reports.

Each :class:`Finding` names an object, a field, what the lock expects and what Incus has:

- every unit's object exists, is managed, and carries the unit's recorded key;
- its whole config, its devices and its description equal the unit's spec: a config key
  changed, removed or added by hand, a device removed or edited, a profile list changed; an
  instance that is not running; an instance whose ``volatile.base_image`` is not the pinned
  fingerprint.  Only the keys Incus writes itself are left out (:func:`filled_by_incus`);
- a managed object that the lock no longer describes (an orphan);
- each pinned GPU slot still holds a GPU of the pinned vendor/product (and UUID when both are
  known) and, for a pin that records the driver, the card's driver is of the pinned version,
  from ``/1.0/resources`` (what nvidia-smi says inside the container is
  :mod:`anklume.provision.gpucheck`'s).

It mirrors :func:`anklume.units.plan.plan_changes`, which decides what ``build`` does.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import msgspec

from anklume.lock.schema import Lock
from anklume.units.acl import rule_drift, show_rule
from anklume.units.cluster import down_members, members_of
from anklume.units.graph import Graph
from anklume.units.inside import INSIDE_KINDS, record_key
from anklume.units.plan import owner_of, show_value
from anklume.units.unit import LiveObject, Unit


class Finding(msgspec.Struct, frozen=True):
    object: str
    field: str
    expected: Any
    actual: Any

    def render(self) -> str:
        return f"{self.object}: {self.field}: expected {show_value(self.expected)}, found {show_value(self.actual)}"


#: Config keys that are never the user's, on every kind: Incus's own state, and anklume's
#: bookkeeping (the key, the owner, the records of the units inside an instance: checked on their own).
OWNED_PREFIXES = ("volatile.", "user.anklume.")
#: What Incus sets on a project when the creation request leaves these features out.
PROJECT_FEATURE_DEFAULTS = {"features.images": "true", "features.profiles": "true",
                            "features.storage.volumes": "true", "features.storage.buckets": "true"}
#: A bridge's keys that Incus fills in when the creation request leaves out the address of their
#: family (key -> that address key): it picks a subnet and turns NAT on.
BRIDGE_FILLED = {"ipv4.address": "ipv4.address", "ipv4.nat": "ipv4.address",
                 "ipv6.address": "ipv6.address", "ipv6.nat": "ipv6.address"}


def filled_by_incus(obj: LiveObject, spec_config: Mapping[str, str], key: str, value: str) -> bool:
    """Whether config ``key`` = ``value`` of ``obj`` is Incus's (or anklume's bookkeeping) rather
    than the user's, given the spec anklume created it from.  Seen on Incus 6.0 (the keys each
    kind gets on creation, tests/integration/test_verify_live.py), and nothing else:

    - every kind: ``volatile.*`` (Incus's state) and ``user.anklume.*`` (anklume's bookkeeping);
    - instance: ``image.*``, the image's properties copied on creation;
    - project: the ``features.*`` the request left out, set to ``true`` (with anklume's spec:
      ``features.storage.buckets``);
    - bridge: an address family the request left out gets an address and ``*.nat=true``
      (anklume sets ``ipv4.address``, ``ipv4.nat`` and ``ipv6.address``: nothing is added);
    - volume: its pool's ``volume.<key>`` defaults, copied on creation, and on block-backed pools
      ``block.filesystem`` / ``block.mount_options`` (``LiveObject.defaults``, from the pool);
    - profile: nothing.

    A key of the spec is never Incus's; a default whose value was changed by hand is a finding."""
    if key.startswith(OWNED_PREFIXES):
        return True
    if key in spec_config:
        return False
    if obj.kind == "instance":
        return key.startswith("image.")
    if obj.kind == "project":
        return PROJECT_FEATURE_DEFAULTS.get(key) == value
    if obj.kind == "network":
        family = BRIDGE_FILLED.get(key)
        return family is not None and family not in spec_config and (key == family or value == "true")
    if obj.kind == "volume":
        return obj.defaults.get(key) == value
    return False


def _compare_config(uid: str, spec_config: Mapping[str, str], obj: LiveObject) -> list[Finding]:
    """Every key of the spec, and every key of the object that Incus did not write itself."""
    keys = set(spec_config) | {k for k, v in obj.config.items() if not filled_by_incus(obj, spec_config, k, v)}
    return [Finding(uid, f"config.{k}", spec_config.get(k), obj.config.get(k))
            for k in sorted(keys) if spec_config.get(k) != obj.config.get(k)]


def _compare_map(uid: str, prefix: str, expected: Mapping[str, Any], actual: Mapping[str, Any]) -> list[Finding]:
    return [Finding(uid, f"{prefix}.{k}", expected.get(k), actual.get(k))
            for k in sorted(set(expected) | set(actual)) if expected.get(k) != actual.get(k)]


def _compare_devices(uid: str, expected: Mapping[str, Mapping[str, str]],
                     actual: Mapping[str, Mapping[str, str]]) -> list[Finding]:
    out: list[Finding] = []
    for name in sorted(set(expected) | set(actual)):
        want, have = expected.get(name), actual.get(name)
        if want is None or have is None:
            out.append(Finding(uid, f"devices.{name}", want, have))
        elif dict(want) != dict(have):
            out.extend(_compare_map(uid, f"devices.{name}", want, have))
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
    out += _compare_config(uid, spec["config"], obj)
    if unit.kind == "network":
        if obj.status not in (None, "Created"):
            out.append(Finding(uid, "status", "Created", obj.status))
    elif unit.kind == "acl":  # a missing, extra or edited rule (edited: one of each)
        out += [Finding(uid, f"{direction} rule", show_rule(want) if want else None, show_rule(have) if have else None)
                for direction, want, have in rule_drift(unit, obj)]
    elif unit.kind == "volume":
        if obj.pool != spec["pool"]:
            out.append(Finding(uid, "pool", spec["pool"], obj.pool))
    elif unit.kind == "profile":
        out += _compare_devices(uid, spec["devices"], obj.devices)
    elif unit.kind == "instance":
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
    if unit.kind in ("instance", "volume") and spec.get("target") and obj.location != spec["target"]:
        out.append(Finding(uid, "location", spec["target"], obj.location))  # the cluster member
    # a volume's spec has none: anklume creates it without one
    if obj.description != spec.get("description", ""):
        out.append(Finding(uid, "description", spec.get("description", ""), obj.description))
    return out


def gpu_findings(lock: Lock, cards: Sequence[Any], member_cards: Mapping[str, Sequence[Any] | None] = {}
                 ) -> list[Finding]:
    """Each pinned slot still holds a GPU of the pinned vendor/product (and uuid when known): of
    this server (``cards``), or in a cluster of the pin's member (``member_cards``: member -> its
    cards, None for a member that did not answer)."""
    out: list[Finding] = []
    for machine, pin in sorted(lock.gpus.items()):
        want = pin.locked
        uid = f"gpu:{machine}"
        pool = cards if pin.member is None else member_cards.get(pin.member)
        if pool is None:
            out.append(Finding(uid, "member", f"cluster member {pin.member} answering", "no answer"))
            continue
        card = {c.pci: c for c in pool}.get(want.pci)
        if card is None:
            out.append(Finding(uid, "pci", want.pci, f"no GPU at {want.pci}"))
            continue
        for field in ("vendor_id", "product_id"):
            if getattr(card, field) != getattr(want, field):
                out.append(Finding(uid, field, getattr(want, field), getattr(card, field)))
        if want.uuid and card.uuid and want.uuid != card.uuid:
            out.append(Finding(uid, "uuid", want.uuid, card.uuid))
        have = getattr(card, "driver_version", None)
        if pin.driver is not None and have and have != pin.driver.version:
            out.append(Finding(uid, "driver_version", pin.driver.version, have))
    return out


def live_findings(graph: Graph, live: Mapping[str, LiveObject], lock: Lock, cards: Sequence[Any] = (),
                  owner: str | None = None, member_cards: Mapping[str, Sequence[Any] | None] = {},
                  endpoint: str = "Incus") -> list[Finding]:
    """``owner``: this infra's ``project_name``; another infra's objects are not orphans of this one,
    and a unit's object that another infra wrote is a finding.  In a cluster, a member the lock
    uses that is missing or not online is a finding, and each GPU is looked for on its member
    (``member_cards``)."""
    out: list[Finding] = []
    members = members_of(live)
    for member, why in down_members(graph, live, endpoint).items():
        found = members.get(member)
        out.append(Finding(f"member:{member}", "status", "Online", found.status if found else None))
    for unit in graph:
        obj = live.get(unit.uid)
        if obj is not None and obj.owned_by_other(owner):
            out.append(Finding(unit.uid, "config.user.anklume.owner", owner, obj.owner))
        out += unit_findings(unit, obj)
    for uid, obj in sorted(live.items()):
        other = owner_of(obj, live)  # an ownerless object belongs to its project's owner, as in the plan
        if obj.managed and uid not in graph.units and not (owner is not None and other is not None and other != owner):
            out.append(Finding(uid, "managed", "not in the lock (orphan)", f"{obj.kind} {obj.object}"))
    out += gpu_findings(lock, cards, member_cards)
    return out

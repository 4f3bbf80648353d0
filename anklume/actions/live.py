"""``anklume verify --live``: compare the live Incus daemon with the lock, without writing.

Findings (object, field, expected, actual):

- every unit's object exists, is managed, and carries the unit's recorded key;
- its actual config and devices equal the unit's spec: a config key changed or added by hand,
  a device removed or edited, a profile list changed; an instance that is not running; an
  instance whose ``volatile.base_image`` is not the pinned fingerprint;
- a managed object that the lock no longer describes (an orphan);
- each pinned GPU slot still holds a GPU of the pinned vendor/product (and UUID when both are
  known), from ``/1.0/resources``.

Exit codes: 0 clean, 1 findings (or an error).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import msgspec
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from anklume.lock.schema import Lock
from anklume.model.schema import Infra
from anklume.project import Project
from anklume.units.graph import Graph, plan_units
from anklume.units.plan import LiveObject, show_value
from anklume.units.provision import ARTEFACT_KINDS, PROVISION_KINDS, record_key
from anklume.units.unit import Unit


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
    if unit.kind in PROVISION_KINDS:  # recorded on its instance; what it placed: artefact_findings
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


def artefact_findings(graph: Graph, live: Mapping[str, LiveObject], backend, lock: Lock, *,
                      deep: bool) -> list[Finding]:
    """The artefacts recorded as placed, read back from their (running) instances: presence and
    sizes, and with ``deep`` every byte re-hashed."""
    from anklume.actions.provision import check_artefacts

    units = [u for u in graph if u.kind in ARTEFACT_KINDS
             and (live.get(u.uid) is not None and live[u.uid].key == u.key)
             and getattr(live.get(f"instance:{u.object}"), "status", None) == "Running"]
    return check_artefacts(backend, units, lock, deep=deep)


def do_verify_live(project: Project, infra: Infra, lock: Lock, *, as_json: bool = False,
                   endpoint: str | None = None, console: Console | None = None, deep: bool = False) -> int:
    from anklume.actions.apply import with_provision
    from anklume.actions.provision import provision_inputs
    from anklume.backends.incus_apply import IncusBackend
    from anklume.resolve.gpus import parse_resources

    out = console or Console(highlight=False)
    graph = plan_units(infra, lock, provision_inputs(project, infra))
    backend = IncusBackend(endpoint)
    domains = {u.name for u in graph if u.kind == "project"}
    pools = {"default"} | {u.spec["pool"] for u in graph if u.kind == "volume"}
    live = with_provision(graph, backend.read_live(domains, pools))
    cards = parse_resources(backend.resources()) if lock.gpus else []
    findings = live_findings(graph, live, lock, cards, owner=infra.project_name) + artefact_findings(
        graph, live, backend, lock, deep=deep)
    if as_json:
        out.print_json(json.dumps({"clean": not findings, "findings": [msgspec.to_builtins(f) for f in findings]}))
    elif findings:
        table = Table("object", "field", "expected", "actual", box=None, header_style="bold")
        for f in findings:
            table.add_row(escape(f.object), escape(f.field), escape(show_value(f.expected)), escape(show_value(f.actual)))
        out.print(table)
        out.print(f"[red]live state differs from the lock: {len(findings)} finding(s)[/]")
    else:
        out.print(f"live state matches the lock ({len(graph)} units"
                  + (f", {len(lock.gpus)} GPU slot(s)" if lock.gpus else "") + ")")
    return 1 if findings else 0

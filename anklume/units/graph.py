"""Infra + Lock -> the units of the Incus layer, as a DAG (pure).

Per domain ``d`` (subnet ``<base>.<sid>``):

- ``project:d``: Incus project ``d`` with its own images, profiles and storage volumes,
  the default project's networks (``features.networks=false``), the domain's description;
- ``network:d``: bridge ``net-d`` (networks are global: it lives in the default project),
  ``ipv4.address=<base>.<sid>.254/24``, ``ipv4.nat=true``, ``ipv6.address=none``;
- ``acl:d``: the network ACL ``acl-d`` that isolates the domain (:mod:`anklume.units.acl`),
  attached to the bridge by its ``security.acls*`` keys; the bridge comes after it;
- ``profile:d/default``: the project's default profile: nic ``eth0`` on ``net-d`` and the
  ``root`` disk on pool ``default`` (what the original's ``incus_profiles`` reconciled);
- ``profile:d/<p>``: each declared profile, WITH its devices and its config (the original
  silently ignored both);

per machine ``m``:

- ``volume:d/<vol>``: each of its storage volumes (pool, size);
- ``instance:m``: a container or VM created from the PINNED fingerprint of its image (never
  the alias), its profiles, config (values as Incus strings: ``true``/``false``), devices, an
  ``eth0`` override carrying ``ipv4.address`` when it has an ip, a disk per volume, a
  ``gputype: physical`` device ``gpu`` on the locked PCI slot for GPU machines (a container
  also gets the host's driver the way its pin says: :mod:`anklume.units.gpu`),
  ``security.protection.delete=true`` when protected (not ephemeral: the machine's value,
  else the domain's, else false), and started.

Which dependency changes force a re-apply (``key_deps``) - none, in this layer, by design:

- a profile, network or volume change is applied to the object itself and Incus propagates
  it live to the instances using it, so an instance is *not* re-applied when its profiles,
  its bridge or its volumes change; likewise the default profile when its project changes;
- everything an instance's result depends on is in its own spec: the image fingerprint
  (identity: a new pin replaces the instance), the type, the project, the names of its
  profiles, its bridge, the pool and name of each volume it mounts, its GPU slot;
- units placed inside an instance (:mod:`anklume.units.inside`) carry the instance's identity
  (type, project, pinned fingerprint) in their own specs rather than its key, and record their
  keys on the instance: a config change applied in place re-runs nothing inside it, a new image
  or a re-created instance re-runs everything.  ``build_graph`` supports ``key_deps`` generally
  (keys are computed in dependency order): a role lists the artefacts it uses.

``after`` is ordering only: an instance comes after its project, bridge, profiles and volumes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import msgspec

from anklume.errors import AnklumeError, StaleLock
from anklume.lock.schema import Lock
from anklume.model.needs import INSTANCE_TYPES, image_key, is_gpu_machine, iter_machines
from anklume.model.schema import Infra
from anklume.units.acl import acl_uid, acl_units, bridge_acl_config
from anklume.units.gpu import driver_config, driver_devices
from anklume.units.key import unit_key
from anklume.units.unit import Unit, uid_of

PROJECT_FEATURES = {
    "features.images": "true",
    "features.profiles": "true",
    "features.storage.volumes": "true",
    "features.networks": "false",
}
DEFAULT_POOL = "default"


class GraphError(AnklumeError):
    """The units do not form a DAG, or two declarations of one object disagree."""


def incus_value(value: Any) -> str:
    """An Incus config value: ``true``/``false`` for booleans, ``str`` otherwise."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def incus_map(mapping: Mapping[str, Any] | None) -> dict[str, str]:
    return {str(k): incus_value(v) for k, v in (mapping or {}).items()}


def incus_devices(devices: Mapping[str, Mapping[str, Any]] | None) -> dict[str, dict[str, str]]:
    return {str(name): incus_map(dev) for name, dev in (devices or {}).items()}


def bridge_name(domain: str) -> str:
    return f"net-{domain}"


@dataclass(frozen=True)
class Graph:
    """Units by uid, in a deterministic dependency order."""

    units: dict[str, Unit]

    def __iter__(self):
        return iter(self.units.values())

    def __len__(self) -> int:
        return len(self.units)

    def __getitem__(self, uid: str) -> Unit:
        return self.units[uid]

    def get(self, uid: str) -> Unit | None:
        return self.units.get(uid)

    def dependents(self, uid: str) -> list[str]:
        """Units that (transitively) come after ``uid``."""
        out: list[str] = []
        frontier = [uid]
        while frontier:
            cur = frontier.pop()
            for u in self.units.values():
                if cur in u.after and u.uid not in out:
                    out.append(u.uid)
                    frontier.append(u.uid)
        return out


def topological(units: Iterable[Unit]) -> list[Unit]:
    """Dependency order (``after`` and ``key_deps``), stable w.r.t. the input order.

    A cycle is a :class:`GraphError` naming the whole path ``a -> b -> a``; a dependency on an
    unknown unit too.
    """
    by_uid = {u.uid: u for u in units}
    for u in by_uid.values():
        for dep in (*u.after, *u.key_deps):
            if dep not in by_uid:
                raise GraphError(f"unit {u.uid} depends on unknown unit {dep}")
    order: list[Unit] = []
    state: dict[str, int] = {}  # 1: visiting, 2: done

    def visit(uid: str, path: list[str]) -> None:
        if state.get(uid) == 2:
            return
        if state.get(uid) == 1:
            cycle = path[path.index(uid):] + [uid]
            raise GraphError("dependency cycle: " + " -> ".join(cycle))
        state[uid] = 1
        unit = by_uid[uid]
        for dep in (*unit.after, *unit.key_deps):
            visit(dep, path + [uid])
        state[uid] = 2
        order.append(unit)

    for uid in by_uid:
        visit(uid, [])
    return order


def build_graph(units: Iterable[Unit]) -> Graph:
    """Order the units and compute their keys (key dependencies first)."""
    keyed: dict[str, Unit] = {}
    for unit in topological(units):
        deps = {dep: keyed[dep].key for dep in unit.key_deps}
        keyed[unit.uid] = _with_key(unit, unit_key(unit.kind, unit.name, unit.spec, deps))
    return Graph(keyed)


def _with_key(unit: Unit, key: str) -> Unit:
    return msgspec.structs.replace(unit, key=key)


def member_of(lock: Lock, machine: str) -> str | None:
    """The cluster member the lock places ``machine`` on; None for a single Incus server.  A
    cluster lock that does not place it is stale."""
    if lock.cluster is None:
        return None
    placed = lock.cluster.placement.get(machine)
    if placed is None:
        raise StaleLock(f"the lock places machine {machine} on no cluster member", "run `anklume lock`")
    return placed.locked.member


def _place_volume(vunit: Unit, member: str, machine: str, volumes: dict[str, Unit]) -> None:
    """A custom volume lives on the member of the instances that mount it (a ``dir`` or ``lvm``
    pool is local to each member): its spec carries that member."""
    placed = vunit.spec.get("target")
    if placed is not None and placed != member:
        raise StaleLock(f"storage volume {vunit.object} of domain {vunit.project} is mounted by machines the lock "
                        f"places on members {placed} and {member} ({machine})",
                        "run `anklume lock`: machines that share a volume are placed on one member")
    if placed is None:
        volumes[vunit.uid] = msgspec.structs.replace(vunit, spec={**vunit.spec, "target": member})


def incus_units(infra: Infra, lock: Lock) -> list[Unit]:
    """The units of the Incus layer (not yet keyed)."""
    units: list[Unit] = []
    volumes: dict[str, Unit] = {}
    base = infra.global_.base_subnet
    acls = {u.name: u for u in acl_units(infra)}  # isolation between domains: anklume.units.acl
    for dname, domain in infra.domains.items():
        project_uid = uid_of("project", dname)
        network_uid = uid_of("network", dname)
        units.append(Unit(kind="project", name=dname, project="default", object=dname,
                          spec={"description": domain.description, "config": dict(PROJECT_FEATURES)}))
        units.append(acls[dname])
        # after its project: the bridge's key is mirrored on the project (read without the
        # slow bridge listing, see anklume.backends.incus.live.read_live)
        units.append(Unit(kind="network", name=dname, project="default", object=bridge_name(dname),
                          spec={"type": "bridge", "description": domain.description, "config": {
                              "ipv4.address": f"{base}.{domain.subnet_id}.254/24",
                              "ipv4.nat": "true",
                              "ipv6.address": "none",
                              **bridge_acl_config(dname),
                          }}, after=(project_uid, acl_uid(dname))))
        declared = {str(k): v or {} for k, v in (domain.profiles or {}).items()}
        default_decl = declared.pop("default", {})
        default_devices = {
            "eth0": {"type": "nic", "network": bridge_name(dname), "name": "eth0"},
            "root": {"type": "disk", "pool": DEFAULT_POOL, "path": "/"},
        }
        default_devices.update(incus_devices(default_decl.get("devices")))
        units.append(Unit(kind="profile", name=f"{dname}/default", project=dname, object="default",
                          spec={"description": str(default_decl.get("description") or ""),
                                "config": incus_map(default_decl.get("config")),
                                "devices": default_devices},
                          after=(project_uid, network_uid)))
        for pname, profile in declared.items():
            units.append(Unit(kind="profile", name=f"{dname}/{pname}", project=dname, object=pname,
                              spec={"description": str(profile.get("description") or ""),
                                    "config": incus_map(profile.get("config")),
                                    "devices": incus_devices(profile.get("devices"))},
                              after=(project_uid,)))

    for dname, domain, mname, machine in iter_machines(infra):
        project_uid = uid_of("project", dname)
        after: list[str] = [project_uid, uid_of("network", dname)]
        profiles = list(machine.profiles) if machine.profiles is not None else ["default"]
        for pname in profiles:
            after.append(uid_of("profile", f"{dname}/{pname}"))
        devices = incus_devices(machine.devices)
        if machine.ip:
            eth0 = {"type": "nic", "network": bridge_name(dname), "name": "eth0"}
            eth0.update(devices.get("eth0", {}))
            eth0["ipv4.address"] = machine.ip
            devices["eth0"] = eth0
        for vname, vol in (machine.storage_volumes or {}).items():
            pool = str(vol.get("pool") or DEFAULT_POOL)
            vconfig = {} if vol.get("size") is None else {"size": incus_value(vol["size"])}
            vunit = Unit(kind="volume", name=f"{dname}/{vname}", project=dname, object=vname,
                         spec={"pool": pool, "config": vconfig}, identity={"pool": pool},
                         after=(project_uid,))
            prior = volumes.get(vunit.uid)
            if prior is not None and {k: v for k, v in prior.spec.items() if k != "target"} != vunit.spec:
                raise GraphError(f"storage volume {vname} of domain {dname} is declared twice with different "
                                 f"settings ({prior.spec} vs {vunit.spec})",
                                 "declare it the same way on every machine that mounts it")
            if prior is None:
                volumes[vunit.uid] = vunit
                units.append(vunit)
            after.append(vunit.uid)
            devices[str(vname)] = {"type": "disk", "pool": pool, "source": str(vname), "path": str(vol["path"])}
        driver = None
        if is_gpu_machine(domain, machine):
            gpu = lock.gpus.get(mname)
            if gpu is None:
                raise StaleLock(f"machine {mname} needs a GPU but the lock pins none",
                                "run `anklume lock` on the host that runs it")
            devices["gpu"] = {"type": "gpu", "gputype": "physical", "pci": gpu.locked.pci}
            driver = gpu.driver if machine.type == "lxc" else None  # a VM's guest has its own driver
        devices.update(driver_devices(driver))
        config = incus_map(machine.config)
        for k, v in driver_config(driver).items():
            config.setdefault(k, v)
        ephemeral = machine.ephemeral if machine.ephemeral is not None else domain.ephemeral
        protected = not ephemeral
        if protected:
            config["security.protection.delete"] = "true"
        ikey = image_key(infra, machine)
        pin = lock.images.get(ikey)
        if pin is None:
            raise StaleLock(f"image {ikey} of machine {mname} is not pinned in the lock", "run `anklume lock`")
        itype = INSTANCE_TYPES[machine.type]
        image = {"fingerprint": pin.locked.fingerprint, "server": pin.locked.server,
                 "remote": pin.original.remote}
        spec = {"type": itype, "description": machine.description, "image": image,
                "profiles": profiles, "config": config, "devices": devices, "state": "running"}
        member = member_of(lock, mname)
        if member is not None:
            spec["target"] = member
            for vname in machine.storage_volumes or {}:
                _place_volume(volumes[uid_of("volume", f"{dname}/{vname}")], member, mname, volumes)
        units.append(Unit(kind="instance", name=mname, project=dname, object=mname, spec=spec,
                          identity={"type": itype, "project": dname, "fingerprint": pin.locked.fingerprint},
                          after=tuple(dict.fromkeys(after)), protected=protected))
    units = [volumes[u.uid] if u.kind == "volume" else u for u in units]  # with their member
    known = {u.uid for u in units}
    for u in units:
        for dep in u.after:
            if dep not in known:
                kind, _, name = dep.partition(":")
                raise GraphError(f"{u.uid} uses {kind} {name}, which is not declared",
                                 f"declare it under domains.{name.split('/')[0]}.profiles"
                                 if kind == "profile" else None)
    return units

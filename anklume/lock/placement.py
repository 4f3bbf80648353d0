"""Placement in an Incus cluster: which member runs each machine, decided once by ``anklume lock``
and pinned in the lock's ``cluster`` section (docs/cluster.md).  Pure.

Inputs: the Infra, the cluster's facts (:class:`ClusterFacts`: each member's architecture and
status, and for an ``Online`` member its hardware threads and memory; a member that is not
``Online`` has unknown facts), the old lock's ``cluster`` and GPU pins, which names ``--update``
re-resolves, each member's GPU inventory (asked lazily, only for the members a GPU machine may go
to) and the pinned models (their VRAM).  Output (:class:`Placed`): the new ``Cluster`` (the
members' facts and one ``Placement`` per machine) and the GPU pins, each naming its ``member``.

The rules, in the order they are applied:

1. **Kept.**  A machine keeps its placement byte for byte (its ``reason`` included) when the old
   lock places it, what infra.yml asks (``original.target``) is unchanged, its member is still a
   member of the cluster, and ``--update`` names neither it nor (``--update`` alone) everything.  A
   GPU machine keeps it only together with its GPU pin: a pin of the same ``gpu_policy``, on the
   same member, not renewed by ``--update NAME`` or ``--update gpus``; under ``exclusive`` two kept
   pins on one card keep only the first machine by name.  A kept GPU pin is not checked against
   the member's inventory (``--update NAME`` re-reads it).  So adding a machine never moves another.
2. **Explicit.**  ``target`` of the machine, else of its domain, names the member.  A member that
   is not one of the cluster's, or whose architecture is not ``global.architecture``, is refused
   (a ResolveError naming the key path, the member and the cluster's members).  Reason:
   ``target of machine M`` / ``target of domain D``.  A member that is down may be named: the
   machine is placed there (build reports it blocked until the member is back).  This rule, and
   rule 4 for a group whose member a target or a kept placement fixes, need no facts: without
   the cluster (``--offline``) they place against the members the old lock lists.
3. **GPU machines** (``anklume.model.needs.is_gpu_machine``), by name.  Each card of each
   ``Online`` member of ``global.architecture`` is a candidate when the machine's models fit its
   VRAM (the sum of their ``vram_bytes``, as ``lock/gpu.py:check_vram`` computes; unknown VRAM
   fits) and, under ``exclusive``, no other machine holds it; under ``shared`` the cards with the
   fewest machines come first.  Ties go by (member name, PCI address).  A GPU machine with a
   ``target`` (or that must follow a volume, rule 4) takes a card of that member by the same rule.
   Reason: ``GPU 0000:04:00.0 (NVIDIA H200) free on m2`` (exclusive) or ``GPU ... on m2, the least
   shared (1 other machine)`` (shared).  The pin records ``member``.
4. **Shared volumes.**  Machines of one domain that mount a storage volume of the same name
   (``storage_volumes``; a ``dir`` pool's volume lives on one member) share a member, transitively.
   A group's member is fixed by its explicit targets and kept placements: two that disagree are a
   ResolveError naming both (give them the same target, or ``--update`` the kept one); else by the
   first of its machines placed by rule 3 or 5.  The others follow it: reason
   ``shares volume V with M``.  Volume locality comes before room (a follower is not refused for
   memory).
5. **Spread**, the other machines by name.  Candidates: the ``Online`` members with known facts
   and ``global.architecture``.  A machine's demand is its declared ``limits.cpu`` (a count:
   ``"4"`` -> 4, ``"0-3"`` -> 4, ``"1,3"`` -> 2; unset: 1) and ``limits.memory`` (``"2GiB"``,
   ``"512MB"``, bytes, or ``"50%"`` of that member's memory; unset: 0), as Incus expands them
   (the machine's profiles in order, then its own ``config``); a group of rule 4 is placed with
   the demand of its machines still to place.  A member has room when the memory declared by the
   machines placed there plus this demand is at most its memory.  The member with the lowest load
   after placing it wins, load = max(threads used / threads, memory used / memory), computed
   exactly (fractions, never floats); ties by member name.  Reason: ``spread: least loaded (2 of
   8 threads, 1.0 of 16.0 GiB declared)``.  Every placed machine counts towards its member's load
   (kept, explicit and GPU ones included, in that order).
6. **No candidate**: a ResolveError that says why (no member online, or no room: the demand and
   each member's room).

Members' facts: the lock records each member's architecture, hardware threads and memory as
read.  A member that does not answer now keeps the threads and memory the old lock records for
it (when its architecture is unchanged): a brief outage while locking does not change the lock.

Determinism: the result depends on the facts, not on the order in which a source listed members
or cards (both are sorted), nor on anything but the inputs above.  On a single Incus server there
is no placement: ``anklume.lock.gpu.assign_gpus`` pins the GPUs, as before clusters.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Protocol

from anklume.errors import ResolveError
from anklume.lock.gpu import Card, fits, new_pin, slot_of, vram_need
from anklume.lock.schema import (Cluster, ClusterMember, GpuPin, ModelPin, Placement, PlacementLocked,
                                 PlacementOriginal)
from anklume.model.needs import (cpu_count, declared_limit, is_gpu_machine, iter_machines, machine_target,
                                 memory_demand, shared_volumes)
from anklume.model.schema import Infra

#: The status of a member that answers (``/1.0/cluster/members``).
ONLINE = "Online"
#: Reasons are free text of at most 256 characters in the lock.
MAX_REASON = 256


class Wants(Protocol):
    """What ``--update`` names (``anklume.lock.assemble.Update``)."""

    def wants(self, *names: str) -> bool: ...


@dataclass(frozen=True)
class MemberFacts:
    """One member as the cluster describes it; ``cpu_threads`` and ``memory_bytes`` are None when
    the member did not answer (its status is then not ``Online``, or it was not ready)."""

    architecture: str
    status: str = ONLINE
    cpu_threads: int | None = None
    memory_bytes: int | None = None

    @property
    def known(self) -> bool:
        return self.status == ONLINE and self.cpu_threads is not None and self.memory_bytes is not None


@dataclass(frozen=True)
class ClusterFacts:
    """The cluster as read now: the member that answered, and every member's facts."""

    server_name: str
    members: Mapping[str, MemberFacts]

    def recorded(self, before: Mapping[str, ClusterMember] | None = None) -> dict[str, ClusterMember]:
        """The lock's ``cluster.members``: each member's facts as read; a member that did not answer
        keeps its entry in ``before`` (the old lock's) when that has the same architecture."""
        out = {}
        for name, f in sorted(self.members.items()):
            old = (before or {}).get(name)
            if f.known:
                out[name] = ClusterMember(architecture=f.architecture, cpu_threads=f.cpu_threads,
                                          memory_bytes=f.memory_bytes)
            elif old is not None and old.architecture == f.architecture:
                out[name] = old
            else:
                out[name] = ClusterMember(architecture=f.architecture)
        return out


class FactsNeeded(ResolveError):
    """Placing ``machines`` needs the cluster's facts, which were not read (``--offline``)."""

    def __init__(self, file: str, machines: list[str]):
        self.machines = machines
        super().__init__(f"{file}: placing {', '.join(machines)} needs the cluster's members, which were not read",
                         "run `anklume lock` without --offline")


@dataclass(frozen=True)
class Placed:
    cluster: Cluster
    #: The GPU pins of the GPU machines, each with its ``member``.
    gpus: dict[str, GpuPin]


@dataclass
class _Machine:
    name: str
    domain: str
    target: str | None
    target_path: str  # the key path that names the target ("" when none)
    gpu: bool
    vm: bool
    models: list[str]
    volumes: list[tuple[str, str]]
    cpu: int = 1
    memory: tuple[str, int] = ("bytes", 0)

    @property
    def original(self) -> PlacementOriginal:
        return PlacementOriginal(target=self.target)

    @property
    def target_reason(self) -> str:
        what = "machine" if self.target_path.endswith(f"machines.{self.name}.target") else "domain"
        return f"target of {what} {self.name if what == 'machine' else self.domain}"


def cluster_machines(infra: Infra) -> list[_Machine]:
    """The machines to place, by name."""
    out = []
    for dname, domain, mname, machine in iter_machines(infra):
        target, path = machine_target(dname, domain, mname, machine)
        out.append(_Machine(name=mname, domain=dname, target=target, target_path=path,
                            gpu=is_gpu_machine(domain, machine), vm=machine.type == "vm",
                            models=list(machine.models or []), volumes=shared_volumes(dname, machine)))
    return sorted(out, key=lambda m: m.name)


def declared_targets(infra: Infra) -> list[tuple[str, str]]:
    """(member, key path) of every ``target`` infra.yml declares, in declaration order."""
    out = []
    for dname, domain in infra.domains.items():
        if domain.target is not None:
            out.append((domain.target, f"domains.{dname}.target"))
        for mname, machine in (domain.machines or {}).items():
            if machine.target is not None:
                out.append((machine.target, f"domains.{dname}.machines.{mname}.target"))
    return out


def kept_machines(infra: Infra, old: Cluster | None, old_gpus: Mapping[str, GpuPin], update: Wants,
                  members: Collection[str] | None = None) -> set[str]:
    """The machines whose old placement (and GPU pin) rule 1 keeps; ``members``: the cluster's
    members now (default: those the old lock lists)."""
    if old is None:
        return set()
    members = set(old.members if members is None else members)
    policy = infra.global_.gpu_policy
    kept: set[str] = set()
    held: set[tuple[str | None, str]] = set()
    for m in cluster_machines(infra):
        placed = old.placement.get(m.name)
        if (placed is None or placed.original != m.original or placed.locked.member not in members
                or update.wants(m.name)):
            continue
        if m.gpu:
            pin = old_gpus.get(m.name)
            if (pin is None or pin.original.policy != policy or pin.member != placed.locked.member
                    or update.wants(m.name, "gpus")):
                continue
            if policy == "exclusive":
                if slot_of(pin) in held:
                    continue
                held.add(slot_of(pin))
        kept.add(m.name)
    return kept


def place(infra: Infra, old: Cluster | None, old_gpus: Mapping[str, GpuPin], facts: ClusterFacts | None,
          update: Wants, inventory: Callable[[str], Sequence[Card]], models: Mapping[str, ModelPin], *,
          file: str = "infra.yml") -> Placed:
    """The placement of every machine of ``infra`` (rules above).  ``facts`` None: the cluster was
    not read (the old lock's members are kept as they are); :class:`FactsNeeded` when a machine
    needs them (one rules 1, 2 and 4 do not place).  ``inventory(member)``: that member's GPU cards
    (asked at most once each)."""
    if facts is None and old is None:
        raise ValueError("place() needs the cluster's facts or an old cluster")
    return _Placement(infra, old, old_gpus, facts, update, inventory, models, file).run()


@dataclass
class _Placement:
    infra: Infra
    old: Cluster | None
    old_gpus: Mapping[str, GpuPin]
    facts: ClusterFacts | None
    update: Wants
    inventory: Callable[[str], Sequence[Card]]
    models: Mapping[str, ModelPin]
    file: str
    placement: dict[str, Placement] = field(default_factory=dict)
    gpus: dict[str, GpuPin] = field(default_factory=dict)
    cpu_used: dict[str, int] = field(default_factory=dict)
    memory_used: dict[str, Fraction] = field(default_factory=dict)
    #: (member, PCI address) -> the machines holding that card
    holders: dict[tuple[str | None, str], list[str]] = field(default_factory=dict)
    cards: dict[str, list[Card]] = field(default_factory=dict)

    def run(self) -> Placed:
        arch = self.infra.global_.architecture
        self.policy = self.infra.global_.gpu_policy
        if self.facts is not None:
            self.members = dict(sorted(self.facts.members.items()))
        else:
            assert self.old is not None
            self.members = {n: MemberFacts(architecture=c.architecture, status="(not read)")
                            for n, c in sorted(self.old.members.items())}
        machines = cluster_machines(self.infra)
        self.by_name = {m.name: m for m in machines}
        for m in machines:
            if m.target is not None:
                self._check_target(m, arch)
        kept = kept_machines(self.infra, self.old, self.old_gpus, self.update, self.members)
        pending = [m for m in machines if m.name not in kept]
        if self.facts is not None:
            for m in machines:
                self._demand(m)
        self.groups = _volume_groups(machines)
        self.group_of = {name: gid for gid, names in self.groups.items() for name in names}
        self.anchor: dict[int, str] = {}  # group -> its member
        self._fixed_members(machines, kept)
        if self.facts is None:
            needs = [m.name for m in pending if m.target is None and self.group_of.get(m.name) not in self.anchor]
            if needs:
                raise FactsNeeded(self.file, needs)

        assert self.old is not None or not kept
        for m in machines:  # 1. kept
            if m.name in kept:
                assert self.old is not None
                self._put(m, self.old.placement[m.name])
                if m.gpu:
                    self._hold(m.name, self.old_gpus[m.name])
        for m in pending:  # 2. explicit
            if m.target is not None:
                self._put(m, self._placement(m, m.target, m.target_reason), gpu=m.gpu)
        for m in pending:  # 3. GPU machines
            if m.target is None and m.gpu:
                follow = self._following(m)
                if follow is not None:
                    self._put(m, self._placement(m, *follow), gpu=True)
                else:
                    member, card, reason = self._gpu_member(m, self._gpu_candidates())
                    self._put(m, self._placement(m, member, reason))
                    self._hold(m.name, new_pin(m.name, self.policy, card, card_only=m.vm, member=member))
        for m in pending:  # 4. and 5.: followers, then spread
            if m.target is None and not m.gpu:
                follow = self._following(m)
                if follow is None:
                    follow = self._spread(m)
                self._put(m, self._placement(m, *follow))
        if self.facts is not None:
            members = self.facts.recorded(self.old.members if self.old is not None else None)
        else:
            assert self.old is not None
            members = dict(self.old.members)
        return Placed(cluster=Cluster(members=members, placement=dict(sorted(self.placement.items()))),
                      gpus=dict(sorted(self.gpus.items())))

    # -- checks ---------------------------------------------------------------------------------

    def _check_target(self, m: _Machine, arch: str) -> None:
        assert m.target is not None
        facts = self.members.get(m.target)
        if facts is None and self.facts is None:  # maybe a member the old lock does not know yet
            raise FactsNeeded(self.file, [m.name])
        if facts is None:
            raise ResolveError(f"{self.file}: {m.target_path}: {m.target!r} is not a member of the cluster "
                               f"(its members: {', '.join(self.members)})",
                               "`incus cluster list` names them; or remove `target` and let `anklume lock` choose")
        if facts.architecture != arch:
            raise ResolveError(f"{self.file}: {m.target_path}: member {m.target!r} is {facts.architecture} but "
                               f"global.architecture is {arch}",
                               "name a member of that architecture, or change global.architecture")

    def _demand(self, m: _Machine) -> None:
        domain = self.infra.domains[m.domain]
        machine = (domain.machines or {})[m.name]
        cpu = declared_limit(domain, machine, "limits.cpu", m.domain, m.name)
        memory = declared_limit(domain, machine, "limits.memory", m.domain, m.name)
        try:
            if cpu is not None:
                m.cpu = cpu_count(cpu[0])
        except ValueError as err:
            assert cpu is not None
            raise ResolveError(f"{self.file}: {cpu[1]}: {err}", "Incus's limits.cpu: a count or a CPU set") from None
        try:
            if memory is not None:
                m.memory = memory_demand(memory[0])
        except ValueError as err:
            assert memory is not None
            raise ResolveError(f"{self.file}: {memory[1]}: {err}",
                               "Incus's limits.memory: an integer with kB/MB/GB/KiB/MiB/GiB..., or N%") from None

    def _fixed_members(self, machines: list[_Machine], kept: set[str]) -> None:
        """Each volume group's member, as its explicit targets and kept placements fix it."""
        for gid, names in self.groups.items():
            fixed: list[tuple[str, str, str]] = []  # (member, machine, why)
            for name in names:
                m = self.by_name[name]
                if m.target is not None:
                    fixed.append((m.target, name, f"{m.target_path} names {m.target!r}"))
                elif name in kept:
                    assert self.old is not None
                    member = self.old.placement[name].locked.member
                    fixed.append((member, name, f"the lock places it on {member!r}"))
            if not fixed:
                continue
            first = fixed[0]
            other = next((f for f in fixed if f[0] != first[0]), None)
            if other is not None:
                volume = _shared_volume(self.by_name[first[1]], self.by_name[other[1]], self.by_name, names)
                raise ResolveError(
                    f"{self.file}: machines {first[1]} and {other[1]} share {volume} and must run on one member, "
                    f"but {first[2]} and {other[2]}",
                    f"give them the same target, or re-place one with `anklume lock --update {other[1]}`")
            self.anchor[gid] = first[0]

    # -- placing ------------------------------------------------------------------------------

    def _placement(self, m: _Machine, member: str, reason: str) -> Placement:
        return Placement(original=m.original, locked=PlacementLocked(member=member, reason=_text(reason)))

    def _put(self, m: _Machine, placed: Placement, *, gpu: bool = False) -> None:
        member = placed.locked.member
        self.placement[m.name] = placed
        gid = self.group_of.get(m.name)
        if gid is not None:
            self.anchor.setdefault(gid, member)
        if gpu:
            _, card, _ = self._gpu_member(m, [member])
            self._hold(m.name, new_pin(m.name, self.policy, card, card_only=m.vm, member=member))
        facts = self.members[member]
        if self.facts is not None and facts.known:
            self.cpu_used[member] = self.cpu_used.get(member, 0) + m.cpu
            self.memory_used[member] = self.memory_used.get(member, Fraction(0)) + _memory_on(m, facts)

    def _hold(self, machine: str, pin: GpuPin) -> None:
        self.gpus[machine] = pin
        self.holders.setdefault(slot_of(pin), []).append(machine)

    def _following(self, m: _Machine) -> tuple[str, str] | None:
        """(member, reason) when ``m`` must follow its volume group's member."""
        gid = self.group_of.get(m.name)
        if gid is None or gid not in self.anchor:
            return None
        names = self.groups[gid]
        partner = next(n for n in names if n != m.name and _shared_names(m, self.by_name[n]))
        volume = _shared_names(m, self.by_name[partner])[0]
        return self.anchor[gid], f"shares volume {volume} with {partner}"

    # -- GPU machines -------------------------------------------------------------------------

    def _gpu_candidates(self) -> list[str]:
        arch = self.infra.global_.architecture
        return [n for n, f in self.members.items() if f.status == ONLINE and f.architecture == arch]

    def _cards(self, member: str) -> list[Card]:
        if member not in self.cards:
            self.cards[member] = sorted(self.inventory(member), key=lambda c: c.pci)
        return self.cards[member]

    def _gpu_member(self, m: _Machine, members: Sequence[str]) -> tuple[str, Card, str]:
        need = vram_need(m.models, self.models)
        options = []
        for member in sorted(members):
            for card in self._cards(member):
                users = len(self.holders.get((member, card.pci), []))
                if not fits(card, need) or (self.policy == "exclusive" and users):
                    continue
                options.append(((users if self.policy == "shared" else 0, member, card.pci), member, card, users))
        if not options:
            raise ResolveError(self._no_gpu(m, members, need),
                               "free a card (remove `gpu` from a machine), set global.gpu_policy: shared, "
                               "pin smaller models, or check `anklume gpus`")
        _, member, card, users = min(options, key=lambda o: o[0])
        name = f"GPU {card.pci} ({card.model or f'{card.vendor_id}:{card.product_id}'})"
        if self.policy == "exclusive":
            return member, card, f"{name} free on {member}"
        return member, card, f"{name} on {member}, the least shared ({users} other machine{'s' if users != 1 else ''})"

    def _no_gpu(self, m: _Machine, members: Sequence[str], need: int) -> str:
        where = f"member {members[0]}" if len(members) == 1 else "no member"
        parts = []
        for member in sorted(self.members):
            if member not in members:
                status = self.members[member]
                if len(members) != 1:  # not a target's: say why each other member is no candidate
                    parts.append(f"{member}: {status.status}" if status.status != ONLINE
                                 else f"{member}: {status.architecture}")
                continue
            cards = self._cards(member)
            if not cards:
                parts.append(f"{member}: no GPU")
            for card in cards:
                holders = self.holders.get((member, card.pci), [])
                vram = f"{_gib(card.vram_mib * 2**20)} of VRAM" if card.vram_mib is not None else "VRAM unknown"
                held = f", held by {', '.join(holders)}" if holders else ""
                parts.append(f"{member}: {card.pci} {card.model or ''} ({vram}{held})".replace("  ", " "))
        models = f", its models need {_gib(need)} of VRAM" if need else ""
        free = "a free GPU" if self.policy == "exclusive" else "a GPU"
        return (f"{self.file}: machine {m.name!r} asks for a GPU ({self.policy}{models}) but {where} has "
                f"{free} that fits: {'; '.join(parts) or 'the cluster has no member online'}")

    # -- spread ---------------------------------------------------------------------------------

    def _spread(self, m: _Machine) -> tuple[str, str]:
        arch = self.infra.global_.architecture
        gid = self.group_of.get(m.name)
        group = [self.by_name[n] for n in self.groups[gid] if n not in self.placement] if gid is not None else [m]
        cpu = sum(g.cpu for g in group)
        candidates = {n: f for n, f in self.members.items() if f.known and f.architecture == arch}
        if not candidates:
            why = "; ".join(f"{n}: {f.status}" if f.status != ONLINE else
                            f"{n}: {f.architecture}" if f.architecture != arch else f"{n}: facts unknown"
                            for n, f in self.members.items())
            raise ResolveError(f"{self.file}: machine {m.name!r}: no cluster member can take it: no member of "
                               f"architecture {arch} is online ({why})",
                               "bring a member back (`incus cluster list`), or give the machine a `target`")
        best = None
        rooms = []
        for name, facts in candidates.items():
            assert facts.cpu_threads is not None and facts.memory_bytes is not None
            memory = sum((_memory_on(g, facts) for g in group), Fraction(0))
            cpu_after = self.cpu_used.get(name, 0) + cpu
            memory_after = self.memory_used.get(name, Fraction(0)) + memory
            if memory_after > facts.memory_bytes:
                free = facts.memory_bytes - self.memory_used.get(name, Fraction(0))
                rooms.append(f"{name}: {_gib(max(free, Fraction(0)), unit=False)} of {_gib(facts.memory_bytes)} free")
                continue
            load = max(Fraction(cpu_after, facts.cpu_threads), memory_after / facts.memory_bytes)
            if best is None or (load, name) < best[0]:
                best = ((load, name), name, cpu_after, memory_after, facts)
        if best is None:
            what = f"machine {m.name!r}" if len(group) == 1 else \
                f"machines {', '.join(g.name for g in group)} (they share a volume)"
            demand = "; ".join(f"{g.name}: {_show_memory(g.memory)}" for g in group)
            raise ResolveError(f"{self.file}: {what}: no cluster member has room for the memory declared "
                               f"({demand}): {'; '.join(rooms)}",
                               "lower limits.memory, add a member, or give the machine a `target`")
        _, name, cpu_after, memory_after, facts = best
        return name, (f"spread: least loaded ({cpu_after} of {facts.cpu_threads} threads, "
                      f"{_gib(memory_after, unit=False)} of {_gib(facts.memory_bytes)} declared)")


def _memory_on(m: _Machine, facts: MemberFacts) -> Fraction:
    kind, value = m.memory
    if kind == "bytes":
        return Fraction(value)
    assert facts.memory_bytes is not None
    return Fraction(value * facts.memory_bytes, 100)


def _show_memory(memory: tuple[str, int]) -> str:
    kind, value = memory
    return f"{value}% of a member's memory" if kind == "percent" else _gib(value)


def _volume_groups(machines: list[_Machine]) -> dict[int, list[str]]:
    """Machines of one domain mounting volumes of the same name, transitively: gid -> names (by
    name); machines sharing nothing are in no group."""
    parent = {m.name: m.name for m in machines}

    def root(name: str) -> str:
        while parent[name] != name:
            parent[name] = parent[parent[name]]
            name = parent[name]
        return name

    first: dict[tuple[str, str], str] = {}
    for m in machines:
        for volume in m.volumes:
            if volume in first:
                a, b = root(first[volume]), root(m.name)
                if a != b:
                    parent[max(a, b)] = min(a, b)
            else:
                first[volume] = m.name
    members: dict[str, list[str]] = {}
    for m in machines:
        members.setdefault(root(m.name), []).append(m.name)
    groups = [sorted(names) for names in members.values() if len(names) > 1]
    return dict(enumerate(sorted(groups)))


def _shared_names(a: _Machine, b: _Machine) -> list[str]:
    return sorted(name for dname, name in set(a.volumes) & set(b.volumes))


def _shared_volume(a: _Machine, b: _Machine, by_name: Mapping[str, _Machine], group: list[str]) -> str:
    direct = _shared_names(a, b)
    if direct:
        return f"volume {direct[0]}"
    return f"volumes (through {', '.join(n for n in group if n not in (a.name, b.name))})"


def _gib(n: int | Fraction, unit: bool = True) -> str:
    """Bytes as GiB with one decimal, rounded exactly (no float)."""
    tenths = round(Fraction(n) * 10 / 2**30)
    return f"{tenths // 10}.{tenths % 10}" + (" GiB" if unit else "")


def _text(reason: str) -> str:
    return reason if len(reason) <= MAX_REASON else reason[:MAX_REASON - 3] + "..."

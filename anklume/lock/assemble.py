"""``lock_infra``: Infra + the old lock + a resolver -> the new lock.

Re-locking is minimal, as ``cargo update -p`` / ``nix flake update INPUT``:
a pin whose ``original`` is unchanged is kept byte-for-byte unless ``update``
names it; pins nothing refers to any more are dropped.  Only the resolver
touches the network or the GPU inventory; everything here is pure.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from anklume.errors import OfflineMiss, ResolveError, SourceError
from anklume.lock.codec import infra_hash, lock_problem
from anklume.lock.gpu import Card, assign_gpus, check_vram, sharing_warnings
from anklume.lock.placement import ClusterFacts, FactsNeeded, cluster_machines, declared_targets, kept_machines, place
from anklume.lock.show import member_summary
from anklume.model.needs import (INSTANCE_TYPES, RELEASE_ARCH, effective_image, image_key, is_gpu_machine,
                               iter_machines, needs_ollama, needs_open_webui)
from anklume.lock.schema import (LOCK_VERSION, Cluster, GpuPin, ImageLocked, ImageOriginal, ImagePin,
                                 Lock, ModelLocked, ModelOriginal, ModelPin, OllamaLocked, OllamaOriginal, OllamaPin,
                                 OpenWebUILocked, OpenWebUIOriginal, OpenWebUIPin, Placement)
from anklume.model.names import parse_image_ref
from anklume.model.schema import Infra

T = TypeVar("T")

#: The ``--update`` name of the Open WebUI pin (its PyPI project name).
OPEN_WEBUI_PIN = "open-webui"


class Resolver(Protocol):
    def image(self, original: ImageOriginal) -> ImageLocked: ...
    def ollama(self, original: OllamaOriginal) -> OllamaLocked: ...
    def model(self, ref: str) -> ModelLocked: ...
    def open_webui(self, original: OpenWebUIOriginal) -> OpenWebUILocked: ...
    def gpu_inventory(self, member: str | None = None) -> Sequence[Card]:
        """The GPU cards of the Incus server (``member`` None) or of that cluster member."""
        ...
    def cluster(self) -> ClusterFacts | None:
        """The cluster's members and their facts; None when the Incus server is not clustered."""
        ...


@dataclass(frozen=True)
class Update:
    """Which pins ``--update`` re-resolves: all of them, or those named."""

    all: bool = False
    names: frozenset[str] = frozenset()

    def wants(self, *names: str) -> bool:
        return self.all or any(n in self.names for n in names)


@dataclass
class Requirements:
    """What the infra needs pinned."""

    images: dict[str, ImageOriginal] = field(default_factory=dict)
    ollama: OllamaOriginal | None = None
    open_webui: OpenWebUIOriginal | None = None
    models: list[str] = field(default_factory=list)
    gpu_machines: list[str] = field(default_factory=list)
    gpu_vms: set[str] = field(default_factory=set)  # GPU machines that get the card only (no driver pinned)
    machine_models: dict[str, list[str]] = field(default_factory=dict)
    #: ("image", key) / ("model", ref) / ("ollama", "") / ("open_webui", "") -> the infra.yml key path that
    #: first asks for it, so a pin that cannot be resolved is reported where it is written.
    where: dict[tuple[str, str], str] = field(default_factory=dict)


def requirements(infra: Infra) -> Requirements:
    req = Requirements()
    arch = infra.global_.architecture
    for dname, domain, mname, machine in iter_machines(infra):
        mpath = f"domains.{dname}.machines.{mname}"
        remote, alias, _ = parse_image_ref(effective_image(infra, machine))
        key = image_key(infra, machine)
        req.images[key] = ImageOriginal(
            remote=remote, alias=alias, architecture=arch, type=INSTANCE_TYPES[machine.type])
        req.where.setdefault(("image", key), f"{mpath}.os_image" if machine.os_image else
                             "global.default_os_image" if infra.global_.default_os_image else
                             f"{mpath} (no os_image: the default {effective_image(infra, machine)})")
        if needs_ollama(machine):
            req.ollama = OllamaOriginal(version=infra.global_.ollama.version, architecture=RELEASE_ARCH[arch])
            req.where.setdefault(("ollama", ""), f"global.ollama.version (needed by {mpath})")
        if needs_open_webui(machine):
            req.open_webui = OpenWebUIOriginal(version=infra.global_.open_webui.version)
            req.where.setdefault(("open_webui", ""), f"global.open_webui.version (needed by {mpath})")
        for i, ref in enumerate(machine.models or []):
            req.where.setdefault(("model", ref), f"{mpath}.models[{i}]")
            if ref not in req.models:
                req.models.append(ref)
        if machine.models:
            req.machine_models[mname] = list(machine.models)
        if is_gpu_machine(domain, machine):
            req.gpu_machines.append(mname)
            if machine.type == "vm":
                req.gpu_vms.add(mname)
    return req


def known_pin_names(lock: Lock | None, infra: Infra) -> set[str]:
    """Every name ``--update`` accepts: the pins of ``lock`` and those ``infra`` needs
    (a pin that is new is resolved anyway, but naming it is not a mistake)."""
    req = requirements(infra)
    lock = lock or Lock(version=LOCK_VERSION, infra_hash="")
    originals = [p.original for p in lock.images.values()] + list(req.images.values())
    names = set(lock.images) | set(req.images) | {f"{o.remote}:{o.alias}" for o in originals}
    names |= set(lock.models) | set(req.models) | set(lock.gpus) | set(req.gpu_machines)
    if lock.ollama is not None or req.ollama is not None:
        names.add("ollama")
    if lock.open_webui is not None or req.open_webui is not None:
        names.add(OPEN_WEBUI_PIN)
    if lock.gpus or req.gpu_machines:
        names.add("gpus")
    if lock.cluster is not None or declared_targets(infra):  # a machine's name re-places it
        names |= set(lock.cluster.placement if lock.cluster else ()) | {m.name for m in cluster_machines(infra)}
    return names


def lock_infra(infra: Infra, old: Lock | None, resolver: Resolver, update: Update = Update(),
               warn: Callable[[str], None] = lambda _msg: None, file: str = "infra.yml", *,
               detect_cluster: bool = False) -> Lock:
    """The new lock.  A pin that cannot be resolved raises the resolver's error, prefixed
    with ``file`` and the key path that asks for the pin.

    The cluster (``resolver.cluster()``) is asked only when placement needs it (see
    :func:`cluster_wanted`); ``detect_cluster``: an Incus endpoint was named explicitly, so a lock
    without a cluster section asks whether it is a cluster."""
    req = requirements(infra)
    old = old or Lock(version=LOCK_VERSION, infra_hash="")

    def resolve(kind: str, name: str, ask: Callable[[], T]) -> T:
        try:
            return ask()
        except ResolveError as exc:
            raise type(exc)(f"{file}: {req.where[kind, name]}: {exc.message}", exc.hint) from None

    images: dict[str, ImagePin] = {}
    for key, original in sorted(req.images.items()):
        pin = old.images.get(key)
        short = f"{original.remote}:{original.alias}"
        if pin is None or pin.original != original or update.wants(key, short):
            pin = ImagePin(original=original,
                           locked=resolve("image", key, lambda o=original: resolver.image(o)))
        images[key] = pin

    ollama = None
    if req.ollama is not None:
        ollama = old.ollama
        if ollama is None or ollama.original != req.ollama or update.wants("ollama"):
            wanted = req.ollama
            ollama = OllamaPin(original=wanted, locked=resolve("ollama", "", lambda: resolver.ollama(wanted)))

    open_webui = None
    if req.open_webui is not None:
        open_webui = old.open_webui
        if open_webui is None or open_webui.original != req.open_webui or update.wants(OPEN_WEBUI_PIN):
            asked = req.open_webui
            open_webui = OpenWebUIPin(original=asked,
                                      locked=resolve("open_webui", "", lambda: resolver.open_webui(asked)))

    models: dict[str, ModelPin] = {}
    for ref in sorted(req.models):
        pin = old.models.get(ref)
        if pin is None or update.wants(ref):
            pin = ModelPin(original=ModelOriginal(ref=ref),
                           locked=resolve("model", ref, lambda r=ref: resolver.model(r)))
        models[ref] = pin

    policy = infra.global_.gpu_policy
    gpus: dict[str, GpuPin] = {}
    cluster: Cluster | None = None
    facts: ClusterFacts | None = None
    offline: OfflineMiss | None = None  # the cluster could not be asked: place from the old lock if possible
    asked, pending = cluster_wanted(infra, old, update, detect_cluster=detect_cluster)
    if asked:
        try:
            facts = resolver.cluster()
        except OfflineMiss as exc:
            if old.cluster is None:
                raise OfflineMiss(f"{file}: placing {_names(pending)} in the cluster: {exc.message}",
                                  exc.hint) from None
            offline = exc
        targets = declared_targets(infra)
        if facts is None and targets and offline is None:
            member, path = targets[0]
            raise ResolveError(f"{file}: {path}: names the cluster member {member!r} but the Incus server is not "
                               "part of a cluster",
                               "remove `target`, or point anklume at the cluster (global.sources.incus, "
                               "ANKLUME_INCUS or `anklume lock --incus`)")
    if facts is not None or (old.cluster is not None and (offline is not None or not asked)):
        try:
            placed = place(infra, old.cluster, old.gpus, facts, update,
                           lambda member: resolver.gpu_inventory(member), models, file=file)
        except FactsNeeded as need:
            if offline is None:
                raise
            raise OfflineMiss(f"{file}: placing {_names(need.machines)} in the cluster: {offline.message}",
                              offline.hint) from None
        cluster, gpus = placed.cluster, placed.gpus
    elif req.gpu_machines:  # a single Incus server: GPU pins without a member only
        single = {m: pin for m, pin in old.gpus.items() if pin.member is None}
        keep = {m for m in req.gpu_machines if not update.wants(m, "gpus")}
        reusable = all(m in keep and m in single and single[m].original.policy == policy
                       for m in req.gpu_machines)
        if reusable and _still_valid(single, req.gpu_machines, policy):
            gpus = {m: single[m] for m in sorted(req.gpu_machines)}
        else:
            gpus = assign_gpus(req.gpu_machines, policy, resolver.gpu_inventory(), single, keep,
                               card_only=req.gpu_vms)
    for w in sharing_warnings(gpus) + check_vram(gpus, req.machine_models, models):
        warn(w)
    lock = Lock(version=LOCK_VERSION, infra_hash=infra_hash(infra), images=images, ollama=ollama,
                open_webui=open_webui, models=models, gpus=gpus, cluster=cluster)
    # The resolvers check what they pin; this is the net under them: never write a lock
    # that reading it back would refuse.
    problem = lock_problem(lock)
    if problem is not None:
        raise SourceError(f"a source answered a value the lock cannot record: {problem}",
                          "check the sources (global.sources and the ANKLUME_* variables)")
    return lock


def _still_valid(old: dict[str, GpuPin], machines: list[str], policy: str) -> bool:
    """Kept pins without asking the host: under ``exclusive`` no slot is claimed twice."""
    slots = [old[m].locked.pci for m in machines]
    return policy == "shared" or len(slots) == len(set(slots))


def cluster_wanted(infra: Infra, old: Lock, update: Update, *, detect_cluster: bool = False) -> tuple[bool, list[str]]:
    """Whether ``anklume lock`` asks Incus about the cluster, and the machines to place.

    - the old lock has a ``cluster`` section: only when some machine must be placed (a new
      machine, a changed ``target``, ``--update``...: every machine rule 1 of
      :mod:`anklume.lock.placement` does not keep); otherwise the section is kept as it is;
    - it has none: when infra.yml declares a ``target``, or ``detect_cluster`` (an Incus endpoint
      named explicitly: it may be a cluster).

    An infra that never mentions a cluster, locked without an explicit endpoint, never asks."""
    if old.cluster is None and not detect_cluster and not declared_targets(infra):
        return False, []  # the common case, without a pass over the machines
    machines = [m.name for m in cluster_machines(infra)]
    if old.cluster is not None:
        kept = kept_machines(infra, old.cluster, old.gpus, update)
        pending = [m for m in machines if m not in kept]
        return bool(pending), pending
    return True, machines


def _names(names: list[str]) -> str:
    shown = ", ".join(names[:5])
    return shown + (f" and {len(names) - 5} more" if len(names) > 5 else "") if names else "the machines"


def describe_changes(old: Lock | None, new: Lock) -> list[str]:
    """One line per pin that was added, changed (old -> new) or removed."""
    old = old or Lock(version=LOCK_VERSION, infra_hash="")
    lines: list[str] = []

    def compare(kind: str, before: dict, after: dict, show: Callable, changed: Callable | None = None) -> None:
        for key in sorted(set(before) | set(after)):
            a, b = before.get(key), after.get(key)
            name = kind if key == kind else f"{kind} {key}"
            if a == b:
                continue
            if a is None:
                lines.append(f"+ {name}: {show(b)}")
            elif b is None:
                lines.append(f"- {name}: {show(a)}")
            else:
                lines.append(f"~ {name}: {changed(a, b) if changed else f'{show(a)} -> {show(b)}'}")

    compare("image", old.images, new.images, lambda p: f"{p.locked.fingerprint[:12]} ({p.locked.serial or 'local'})")
    compare("ollama", {"ollama": old.ollama} if old.ollama else {},
            {"ollama": new.ollama} if new.ollama else {},
            lambda p: f"v{p.locked.version} {p.locked.sha256[:12]}")
    compare(OPEN_WEBUI_PIN, {OPEN_WEBUI_PIN: old.open_webui} if old.open_webui else {},
            {OPEN_WEBUI_PIN: new.open_webui} if new.open_webui else {},
            lambda p: f"v{p.locked.version} {p.locked.sha256[:12]}")
    compare("model", old.models, new.models, lambda p: p.locked.digest[:19])
    compare("gpu", old.gpus, new.gpus, lambda p: f"{p.locked.pci} {p.locked.model or ''}".strip()
            + (f" on {p.member}" if p.member else "")
            + (f" (driver {p.driver.version}, {p.driver.mode})" if p.driver else ""))
    compare("member", old.cluster.members if old.cluster else {}, new.cluster.members if new.cluster else {},
            member_summary)
    compare("placement", old.cluster.placement if old.cluster else {}, new.cluster.placement if new.cluster else {},
            _placed, changed=lambda a, b: f"{a.locked.member} -> {_placed(b)}")
    return lines


def _placed(p: Placement | None) -> str:
    assert p is not None
    return f"{p.locked.member} ({p.locked.reason})"


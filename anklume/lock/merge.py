"""Two branches' locks -> the pins of the merged ``infra.yml``: a set operation.

Pins are content-addressed, so merging locks needs no network: for every pin the merged
``infra.yml`` needs (``anklume.lock.assemble.requirements``), the pin is taken, unchanged,
from the side that has it:

- one side has it (its ``original`` is what the merged infra asks): that side's;
- both sides have the same pin: that one;
- both sides have it, pinned differently: a **conflict**, unless
  - ``--ours NAME`` / ``--theirs NAME`` keeps one side, or ``--update NAME`` re-resolves it,
  - or the merge base is known and one side still has the base's pin: the other side
    changed it (an ``--update`` on one branch), and its pin is taken, as git takes a change
    made on one side only;
- under ``gpu_policy: exclusive``, two machines whose pins (one from each side) claim the same
  slot (the same PCI address on the same cluster member) are a conflict too: the later by name
  is named, and only ``--update MACHINE`` (which asks the host's inventory) gives it another slot.

In a cluster (either side has a ``cluster`` section):

- each machine's **placement** is a pin like the others, named by the machine: taken from the side
  that has it (with what infra.yml asks now as its ``original``), the same on both, or changed on
  one side only; placed differently on both sides, it is a conflict (``--ours NAME`` /
  ``--theirs NAME`` keep one side of it, and of that machine's GPU pin, named alike;
  ``--update NAME`` re-places it);
- the **members** are the union of both sides' (so every kept placement names a member).  A
  member both sides recorded differently is facts read at two times, never a conflict: the side
  that read it online (threads and memory known) wins over one that read it down; else the side
  that changed it since the merge base; else ours.  The next ``anklume lock`` that places a
  machine records fresh facts anyway.
- a GPU pin whose member is not its machine's chosen member is left to ``anklume lock`` to
  re-place (only possible when the two came from different sides).

Pins nobody needs are dropped.  ``merge_locks`` returns the pins kept (as the "old" lock that
``lock_infra`` then completes and re-hashes: a pin neither side has is resolved there, the
only thing that may reach the network), what came from where, and the conflicts.  Pure.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from anklume.lock.assemble import OPEN_WEBUI_PIN, Update, requirements
from anklume.lock.gpu import slot_of
from anklume.lock.placement import cluster_machines
from anklume.lock.schema import LOCK_VERSION, Cluster, ClusterMember, Lock
from anklume.lock.show import label, summary
from anklume.model.schema import Infra

OURS, THEIRS = "ours", "theirs"


@dataclass(frozen=True)
class Pick:
    """Where one pin of the merged lock came from: ``both``, ``ours``, ``theirs``, or
    ``ours (--ours)``, ``theirs (changed on that side only)``..."""

    group: str
    name: str
    source: str
    pin: Any
    #: Why a pin was dropped.
    why: str = ""

    def line(self) -> str:
        return f"{self.source:<7} {label(self.group, self.name)}: {summary(self.group, self.pin)}"


@dataclass(frozen=True)
class Conflict:
    """One input pinned differently on both sides; ``names``: what ``--update``, ``--ours`` and
    ``--theirs`` accept for it."""

    group: str
    name: str
    ours: str
    theirs: str
    names: tuple[str, ...]
    #: What to say instead of "ours ..., theirs ..." (a conflict that is not between the sides).
    text: str = ""

    def line(self) -> str:
        return f"{label(self.group, self.name)}: {self.text or f'ours {self.ours}, theirs {self.theirs}'}"


@dataclass
class Merged:
    #: The pins kept, to hand ``lock_infra`` as the old lock (its infra_hash is not meaningful).
    lock: Lock
    picks: list[Pick] = field(default_factory=list)
    #: Pins of either side the merged infra.yml does not need.
    dropped: list[Pick] = field(default_factory=list)
    conflicts: list[Conflict] = field(default_factory=list)
    #: Pins left to ``lock_infra`` to resolve (``--update`` names, or needed and on neither side).
    unresolved: list[str] = field(default_factory=list)


def pin_names(group: str, name: str, pin: Any) -> tuple[str, ...]:
    """The names by which ``--update``, ``--ours`` and ``--theirs`` designate a pin."""
    if group == "images":
        short = f"{pin.original.remote}:{pin.original.alias}"
        return (name,) if short == name else (name, short)
    if group == "gpus":
        return (name, "gpus")
    return (name,)


def merge_locks(infra: Infra, ours: Lock, theirs: Lock, base: Lock | None = None, *,
                keep_ours: frozenset[str] = frozenset(), keep_theirs: frozenset[str] = frozenset(),
                update: Update = Update()) -> Merged:
    """The pins of ``infra`` from ``ours`` and ``theirs`` (and ``base``, when known)."""
    req = requirements(infra)
    sides = {OURS: ours, THEIRS: theirs}
    merged = Merged(lock=Lock(version=LOCK_VERSION, infra_hash=""))
    chosen: dict[str, dict[str, Any]] = {"images": {}, "models": {}, "gpus": {}}
    single: dict[str, Any] = {}

    def choose(group: str, name: str, usable: Callable[[Any], bool], get: Callable[[Lock], Any]) -> Any:
        candidates = {side: pin for side, lock in sides.items()
                      if (pin := get(lock)) is not None and usable(pin)}
        if not candidates:
            merged.unresolved.append(label(group, name))
            return None
        some = next(iter(candidates.values()))
        names = pin_names(group, name, some)
        if update.wants(*names):
            merged.unresolved.append(label(group, name))
            return None
        if len(candidates) == 1:
            [(side, pin)] = candidates.items()
            merged.picks.append(Pick(group, name, side, pin))
            return pin
        a, b = candidates[OURS], candidates[THEIRS]
        if a == b:
            merged.picks.append(Pick(group, name, "both", a))
            return a
        if any(n in keep_ours for n in names):
            merged.picks.append(Pick(group, name, f"{OURS} (--ours)", a))
            return a
        if any(n in keep_theirs for n in names):
            merged.picks.append(Pick(group, name, f"{THEIRS} (--theirs)", b))
            return b
        was = get(base) if base is not None else None
        if was is not None and usable(was) and was in (a, b):
            side, pin = (THEIRS, b) if was == a else (OURS, a)
            merged.picks.append(Pick(group, name, f"{side} (changed on that side only)", pin))
            return pin
        merged.conflicts.append(Conflict(group, name, summary(group, a), summary(group, b), names))
        return None

    for key, original in sorted(req.images.items()):
        pin = choose("images", key, lambda p, o=original: p.original == o, lambda lock, k=key: lock.images.get(k))
        if pin is not None:
            chosen["images"][key] = pin
    if req.ollama is not None:
        single["ollama"] = choose("ollama", "ollama", lambda p: p.original == req.ollama, lambda lock: lock.ollama)
    if req.open_webui is not None:
        single["open_webui"] = choose("open_webui", OPEN_WEBUI_PIN, lambda p: p.original == req.open_webui,
                                      lambda lock: lock.open_webui)
    for ref in sorted(req.models):
        pin = choose("models", ref, lambda p: True, lambda lock, r=ref: lock.models.get(r))
        if pin is not None:
            chosen["models"][ref] = pin
    policy = infra.global_.gpu_policy
    for machine in sorted(req.gpu_machines):
        pin = choose("gpus", machine, lambda p: p.original.policy == policy, lambda lock, m=machine: lock.gpus.get(m))
        if pin is not None:
            chosen["gpus"][machine] = pin
    if policy == "exclusive":
        _slots_claimed_twice(merged, chosen["gpus"])

    originals = {m.name: m.original for m in cluster_machines(infra)}
    cluster = None
    if ours.cluster is not None or theirs.cluster is not None:
        placement = {}
        for machine, original in sorted(originals.items()):
            pin = choose("placement", machine, lambda p, o=original: p.original == o,
                         lambda lock, m=machine: lock.cluster.placement.get(m) if lock.cluster else None)
            if pin is not None:
                placement[machine] = pin
        for machine, pin in list(chosen["gpus"].items()):
            placed = placement.get(machine)
            if pin.member is not None and (placed is None or placed.locked.member != pin.member):
                del chosen["gpus"][machine]  # from the other side than its placement: anklume lock re-places it
                merged.picks = [p for p in merged.picks if not (p.group == "gpus" and p.name == machine)]
                merged.unresolved.append(label("gpus", machine))
        cluster = Cluster(members=_members(merged, ours, theirs, base), placement=placement)

    needed = {"images": set(req.images), "ollama": {"ollama"} if req.ollama else set(),
              "open_webui": {OPEN_WEBUI_PIN} if req.open_webui else set(), "models": set(req.models),
              "gpus": set(req.gpu_machines), "placement": set(originals)}
    asked = {"images": lambda name, pin: pin.original == req.images[name],
             "ollama": lambda name, pin: pin.original == req.ollama,
             "open_webui": lambda name, pin: pin.original == req.open_webui,
             "models": lambda name, pin: True,
             "gpus": lambda name, pin: pin.original.policy == policy,
             "placement": lambda name, pin: pin.original == originals[name]}
    for group, name, side, pin in _all_pins(ours, theirs):
        if name not in needed[group]:
            merged.dropped.append(Pick(group, name, side, pin, why="nothing in infra.yml needs it"))
        elif not asked[group](name, pin):
            merged.dropped.append(Pick(group, name, side, pin, why="infra.yml asks for another one now"))
    merged.lock = Lock(version=LOCK_VERSION, infra_hash="", images=chosen["images"], models=chosen["models"],
                       gpus=chosen["gpus"], ollama=single.get("ollama"), open_webui=single.get("open_webui"),
                       cluster=cluster)
    return merged


def _members(merged: Merged, ours: Lock, theirs: Lock, base: Lock | None) -> dict[str, ClusterMember]:
    """Both sides' members (the rule in the module docstring); a member taken from one side of
    two that differ is reported as a pick."""
    a = dict(ours.cluster.members) if ours.cluster else {}
    b = dict(theirs.cluster.members) if theirs.cluster else {}
    was = dict(base.cluster.members) if base is not None and base.cluster is not None else {}
    out: dict[str, ClusterMember] = {}
    for name in sorted(set(a) | set(b)):
        mine, their = a.get(name), b.get(name)
        if mine is None or their is None or mine == their:
            out[name] = mine or their  # type: ignore[assignment]
            if mine != their:
                merged.picks.append(Pick("members", name, OURS if their is None else THEIRS, out[name]))
            continue
        if (mine.cpu_threads is None) != (their.cpu_threads is None):
            side, pick = (THEIRS, their) if mine.cpu_threads is None else (OURS, mine)
            why = "read online on that side"
        elif was.get(name) in (mine, their):
            side, pick = (THEIRS, their) if was[name] == mine else (OURS, mine)
            why = "changed on that side only"
        else:
            side, pick, why = OURS, mine, "read on both sides: ours"
        out[name] = pick
        merged.picks.append(Pick("members", name, f"{side} ({why})", pick))
    return out


def _all_pins(ours: Lock, theirs: Lock):
    """(group, name, side, pin) of both locks; a pin both have alike once, from ``both``."""
    for group in ("images", "ollama", "open_webui", "models", "gpus", "placement"):
        a, b = _group(ours, group), _group(theirs, group)
        for name in sorted(set(a) | set(b)):
            if a.get(name) is not None and a.get(name) == b.get(name):
                yield group, name, "both", a[name]
                continue
            for side, pins in ((OURS, a), (THEIRS, b)):
                if name in pins:
                    yield group, name, side, pins[name]


def _group(lock: Lock, group: str) -> dict[str, Any]:
    if group == "ollama":
        return {"ollama": lock.ollama} if lock.ollama is not None else {}
    if group == "open_webui":
        return {OPEN_WEBUI_PIN: lock.open_webui} if lock.open_webui is not None else {}
    if group == "placement":
        return dict(lock.cluster.placement) if lock.cluster is not None else {}
    return dict(getattr(lock, group))


def _slots_claimed_twice(merged: Merged, gpus: dict[str, Any]) -> None:
    """Under ``exclusive``, two machines on one slot: the later (by name) is a conflict, and its
    pin is not kept."""
    owner: dict[tuple[str | None, str], str] = {}
    for machine in sorted(gpus):
        slot = slot_of(gpus[machine])
        if slot not in owner:
            owner[slot] = machine
            continue
        first = owner[slot]
        merged.conflicts.append(Conflict(
            "gpus", machine, summary("gpus", gpus[first]), summary("gpus", gpus[machine]), (machine, "gpus"),
            text=f"{summary('gpus', gpus[machine])}, the slot of {first} too, and gpu_policy is exclusive"))
        merged.picks = [p for p in merged.picks if not (p.group == "gpus" and p.name == machine)]
        del gpus[machine]

"""GPU assignment: which physical GPU (PCI slot) each GPU machine gets.  Pure.

Order (documented in docs/lock.md): GPU machines are taken by name, GPUs by PCI
address.  Existing pins are kept while the slot is still in the inventory and
(under ``exclusive``) not claimed twice; the others are filled in order:
``exclusive`` gives each machine a free GPU, ``shared`` gives it the GPU with
the fewest machines so far.

A new pin records, beside the card, how the host's driver reaches the machine
(:class:`~anklume.lock.schema.GpuDriver`, from the card's inventory entry) unless the machine
is a VM (``card_only``): a VM's guest needs its own driver.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Protocol

from anklume.errors import ResolveError
from anklume.lock.schema import GpuDriver, GpuDriverFile, GpuLocked, GpuOriginal, GpuPin, ModelPin

#: The PCI vendor id of NVIDIA: the only driver whose user space anklume brings into containers.
NVIDIA = "10de"


class Card(Protocol):
    pci: str
    vendor_id: str
    product_id: str
    model: str | None
    uuid: str | None
    vram_mib: int | None


def pin_card(card: Card) -> GpuLocked:
    return GpuLocked(pci=card.pci, vendor_id=card.vendor_id, product_id=card.product_id,
                     model=card.model, uuid=card.uuid, vram_mib=card.vram_mib)


def driver_of(card: Card) -> GpuDriver | None:
    """How the host's driver reaches a container given ``card``, as its inventory entry says
    (``driver_version``, ``cuda_version``, ``driver_mode``, ``driver_files``); None for a card
    that is not NVIDIA's, or whose driver version or mode is unknown (an inventory from Incus's
    resources alone: the container gets the card only)."""
    version = getattr(card, "driver_version", None)
    mode = getattr(card, "driver_mode", None)
    if card.vendor_id != NVIDIA or not version or mode not in ("runtime", "files"):
        return None
    files = [GpuDriverFile(target=f.target, source=f.source, sha256=f.sha256, size=f.size)
             for f in getattr(card, "driver_files", None) or []] if mode == "files" else []
    if mode == "files" and not files:
        return None
    return GpuDriver(mode=mode, version=version, cuda=getattr(card, "cuda_version", None), files=files)


def assign_gpus(machines: Sequence[str], policy: str, cards: Sequence[Card],
                old: Mapping[str, GpuPin], keep: set[str], card_only: Collection[str] = ()) -> dict[str, GpuPin]:
    """Return the GPU pins of ``machines``; ``card_only``: those (VMs) whose new pin records no driver.

    ``keep``: machines whose old pin may be kept (not named by ``--update``).  A kept
    pin is returned unchanged, even if the card now in its slot differs (the pin says
    which card the lock was made for; ``--update`` re-reads it).
    """
    machines = sorted(machines)
    if machines and not cards:
        raise ResolveError(
            f"{len(machines)} machine{'s ask' if len(machines) > 1 else ' asks'} for a GPU "
            f"({', '.join(machines)}) but the host has none",
            "check `anklume gpus`; to lock for another host use --gpu-inventory FILE")
    by_pci = {c.pci: c for c in sorted(cards, key=lambda c: c.pci)}
    users: dict[str, list[str]] = {pci: [] for pci in by_pci}
    chosen: dict[str, str] = {}
    kept: dict[str, GpuPin] = {}
    for m in machines:
        pin = old.get(m)
        if m in keep and pin is not None and pin.original.policy == policy and pin.locked.pci in by_pci:
            if policy == "shared" or not users[pin.locked.pci]:
                chosen[m] = pin.locked.pci
                users[pin.locked.pci].append(m)
                kept[m] = pin  # byte-for-byte: a kept pin is not re-read from the card now there
    pending = [m for m in machines if m not in chosen]
    if policy == "exclusive":
        free = [pci for pci in by_pci if not users[pci]]
        if len(pending) > len(free):
            raise ResolveError(_exclusive_message(machines, len(by_pci)),
                               "Set global.gpu_policy: shared to allow this." if len(by_pci) == 1
                               else "remove `gpu` from some machines, or set global.gpu_policy: shared")
        for m, pci in zip(pending, free):
            chosen[m] = pci
            users[pci].append(m)
    else:
        for m in pending:
            pci = min(by_pci, key=lambda p: (len(users[p]), p))
            chosen[m] = pci
            users[pci].append(m)
    return {m: kept.get(m) or new_pin(m, policy, by_pci[chosen[m]], card_only=m in card_only) for m in machines}


def sharing_warnings(gpus: Mapping[str, GpuPin]) -> list[str]:
    """The original's warning when several machines share one GPU."""
    users: dict[tuple[str | None, str], list[str]] = {}
    for m, pin in gpus.items():
        users.setdefault(slot_of(pin), []).append(m)
    sharing = sorted(m for ms in users.values() if len(ms) > 1 for m in ms)
    if not sharing:
        return []
    return [f"WARNING: GPU policy is 'shared': {len(sharing)} instances share GPU access "
            f"({', '.join(sharing)}). No VRAM isolation on consumer GPUs."]


def _exclusive_message(machines: Sequence[str], ngpus: int) -> str:
    if ngpus == 1:  # the original's message, word for word
        return (f"GPU policy is 'exclusive' but {len(machines)} instances have GPU access: "
                f"{', '.join(machines)}.")
    return (f"GPU policy is 'exclusive' but {len(machines)} instances have GPU access "
            f"({', '.join(machines)}) and the host has {ngpus} GPUs")


def check_vram(gpus: Mapping[str, GpuPin], machine_models: Mapping[str, Sequence[str]],
               models: Mapping[str, ModelPin]) -> list[str]:
    """Raise when one machine's models do not fit its GPU; warn (shared) when sharers together don't."""
    per_gpu: dict[tuple[str | None, str], list[str]] = {}
    for m, pin in sorted(gpus.items()):
        per_gpu.setdefault(slot_of(pin), []).append(m)
        vram = pin.locked.vram_mib
        refs = machine_models.get(m) or []
        if vram is None or not refs:
            continue
        need = vram_need(refs, models)
        if need > vram * 2**20:
            detail = ", ".join(f"{r} ({_gib(models[r].locked.vram_bytes)})" for r in refs)
            raise ResolveError(
                f"machine '{m}': models {detail} need {_gib(need)} of VRAM but GPU {pin.locked.pci} "
                f"({pin.locked.model or 'unknown model'}){_on(pin.member)} has {_gib(vram * 2**20)}",
                "pin smaller models (or quantisations), or move some to another machine")
    warnings = []
    for (member, pci), sharers in per_gpu.items():
        if len(sharers) < 2:
            continue
        vram = gpus[sharers[0]].locked.vram_mib
        need = sum(vram_need(machine_models.get(m) or [], models) for m in sharers)
        if vram is not None and need > vram * 2**20:
            warnings.append(f"WARNING: machines {', '.join(sharers)} share GPU {pci}{_on(member)} and their models "
                            f"need {_gib(need)} together; it has {_gib(vram * 2**20)} "
                            "(models will be swapped in and out of VRAM)")
    return warnings


def slot_of(pin: GpuPin) -> tuple[str | None, str]:
    """Which physical slot a pin holds: (its cluster member, None on a single server; its PCI address)."""
    return pin.member, pin.locked.pci


def vram_need(refs: Sequence[str], models: Mapping[str, ModelPin]) -> int:
    """The VRAM a machine's models need together (what :func:`check_vram` compares with its GPU's)."""
    return sum(models[r].locked.vram_bytes for r in refs)


def fits(card: Card, need: int) -> bool:
    """Whether ``need`` bytes of models fit the card's VRAM (unknown VRAM: they are taken to fit)."""
    return card.vram_mib is None or need <= card.vram_mib * 2**20


def new_pin(machine: str, policy: str, card: Card, *, card_only: bool, member: str | None = None) -> GpuPin:
    """The pin of ``machine`` on ``card`` (of ``member`` in a cluster): the card, and how the host's
    driver reaches a container (none for a VM: ``card_only``)."""
    return GpuPin(original=GpuOriginal(machine=machine, policy=policy), locked=pin_card(card),
                  driver=None if card_only else driver_of(card), member=member)


def _on(member: str | None) -> str:
    return "" if member is None else f" on member {member}"


def _gib(n: int) -> str:
    return f"{n / 2**30:.1f} GiB"

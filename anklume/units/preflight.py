"""``build``'s GPU preflight: each locked GPU against the host, before any write (pure).

A PCI address names a slot, not a card, and a lock made on one host may be built on another:
Incus then refuses to start the instance ("Invalid PCI address") after creating it, or starts it
with another card, or with a driver whose files are not the pinned ones.  So ``build`` reads the
host first (:class:`HostGpus`: Incus's resources, and where the server is this machine
nvidia-smi, nvidia-container-cli and the pinned driver files) and refuses, one message each:

- a slot without a GPU, or with another card (vendor/product, or UUID when both are known);
- another driver version (Incus's or nvidia-smi's);
- where the server is this machine: a ``runtime`` pin without nvidia-container-cli, or a
  ``files`` pin whose files are missing or differ from their pinned size and sha256.

A refused machine's instance and every unit after it (what is placed inside it) are blocked in
the plan (:func:`mark_refused`) and never applied; units that do not depend on it still are.
A VM is checked for its card only (its driver is its guest's).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec

from anklume.lock.schema import GpuPin, Lock
from anklume.units.graph import Graph
from anklume.units.plan import Plan

FIX = "on the host that runs it, `anklume lock --update gpus` re-pins the GPUs for that host (review the diff)"


@dataclass(frozen=True)
class HostGpus:
    """What the host says (read by :func:`anklume.resolve.inventory.host_gpus`).

    ``cards``: its GPUs (:class:`anklume.resolve.gpus.GpuCard`); ``local``: the Incus server is
    this machine, so ``container_cli`` (nvidia-container-cli is installed) and ``files`` (pinned
    driver file -> (size, sha256), None when missing) were looked at, and nvidia-smi asked
    (``smi_error``: what it answered when it failed)."""

    cards: Sequence[Any]
    local: bool
    container_cli: bool = False
    files: Mapping[str, tuple[int, str] | None] = field(default_factory=dict)
    smi_error: str | None = None


class GpuRefusal(msgspec.Struct, frozen=True):
    machine: str
    pci: str
    what: str  # "slot", "card", "driver", "driver files"
    locked: str  # what the lock says
    host: str  # what the host has

    def render(self) -> str:
        return f"GPU of machine {self.machine}: the lock pins {self.locked}; this host has {self.host}"


def describe_pin(pin: GpuPin) -> str:
    lk = pin.locked
    text = f"slot {lk.pci} with {lk.model or 'a GPU'} ({lk.vendor_id}:{lk.product_id})"
    return text + (f", UUID {lk.uuid}" if lk.uuid else "")


def _describe_card(card: Any) -> str:
    text = f"{card.model or 'a GPU'} ({card.vendor_id}:{card.product_id})"
    return text + (f", UUID {card.uuid}" if card.uuid else "")


def gpu_refusals(lock: Lock, graph: Graph, host: HostGpus) -> list[GpuRefusal]:
    """What the host contradicts in the GPU pins of ``graph``'s machines, one refusal each."""
    by_pci = {c.pci: c for c in host.cards}
    out: list[GpuRefusal] = []
    for machine, pin in sorted(lock.gpus.items()):
        unit = graph.get(f"instance:{machine}")
        if unit is None:
            continue
        pci = pin.locked.pci
        card = by_pci.get(pci)
        if card is None:
            others = ", ".join(f"{c.pci} ({c.model or c.product_id})" for c in host.cards)
            out.append(GpuRefusal(machine, pci, "slot", describe_pin(pin), f"no GPU in slot {pci} ("
                                  + (f"its GPUs: {others})" if others else "it has no GPU at all)")))
            continue
        lk = pin.locked
        if (card.vendor_id, card.product_id) != (lk.vendor_id, lk.product_id) or (
                lk.uuid and card.uuid and lk.uuid != card.uuid):
            out.append(GpuRefusal(machine, pci, "card", describe_pin(pin), f"{_describe_card(card)} in that slot"))
            continue
        driver = pin.driver if unit.spec.get("type") == "container" else None
        if driver is None:
            continue
        have = getattr(card, "driver_version", None)
        if have and have != driver.version:
            out.append(GpuRefusal(machine, pci, "driver", f"NVIDIA driver {driver.version}",
                                  f"driver {have}"))
            continue
        if not host.local:
            continue
        if host.smi_error:
            out.append(GpuRefusal(machine, pci, "driver", f"NVIDIA driver {driver.version}, working",
                                  f"a driver nvidia-smi cannot use: {host.smi_error}"))
        elif driver.mode == "runtime" and not host.container_cli:
            out.append(GpuRefusal(machine, pci, "driver", "the driver brought in by nvidia.runtime "
                                  "(the host's nvidia-container-cli)", "no nvidia-container-cli on its PATH"))
        elif driver.mode == "files":
            wrong = []
            for f in driver.files:
                got = host.files.get(f.source)
                if got is None:
                    wrong.append(f"{f.source} (missing)")
                elif got != (f.size, f.sha256):
                    wrong.append(f"{f.source} (sha256 {got[1][:12]}..., not {f.sha256[:12]}...)")
            if wrong:
                out.append(GpuRefusal(machine, pci, "driver files",
                                      f"driver {driver.version}'s {len(driver.files)} files by sha256",
                                      f"{len(wrong)} of them changed: {', '.join(wrong)}"))
    return out


def refused_units(graph: Graph, refusals: Sequence[GpuRefusal]) -> dict[str, str]:
    """uid -> why, for each refused machine's instance and every unit after it."""
    out: dict[str, str] = {}
    for r in refusals:
        uid = f"instance:{r.machine}"
        if uid not in graph.units:
            continue
        out.setdefault(uid, f"GPU preflight: {r.render()}")
        for dep in graph.dependents(uid):
            out.setdefault(dep, f"GPU preflight: instance {r.machine} is refused")
    return out


def mark_refused(plan: Plan, refused: Mapping[str, str]) -> Plan:
    """``plan`` with each pending change of a refused unit blocked (never applied)."""
    if not refused:
        return plan
    return Plan([msgspec.structs.replace(c, blocked=refused[c.uid]) if c.uid in refused and c.pending
                 and c.action != "delete" else c for c in plan.changes])


def without_refused(plan: Plan, refused: Mapping[str, str]) -> Plan:
    """The changes ``build`` may make: ``plan`` less the refused units' (no task is made for them,
    so nothing of them is written)."""
    return Plan([c for c in plan.changes if c.uid not in refused])

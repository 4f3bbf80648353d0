"""Pins as a reviewer reads them: one line each, with what tells two pins apart.

- an image: its key (remote, alias, and ``(virtual-machine)``), the serial, a short fingerprint;
- Ollama and Open WebUI: the version (and what was asked, when it was ``latest``), a short sha256;
- a model: its reference, a short manifest digest, its size;
- a GPU: its machine, the PCI slot, the card (model, short UUID), ``on MEMBER`` in a cluster,
  ``shared`` under that policy;
- in a cluster, a member: its architecture and the facts placement used (threads, memory);
  a placement: the machine's member and why (``m2 (target of machine web)``).

Used by ``anklume lock --diff`` (``pin_changes``, ``diff_lines``), the git diff driver
(``textconv_lines``: ``git diff`` of the lock reads as pins) and the merge's reports.  Pure.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import msgspec

from anklume.lock.schema import ClusterMember, GpuPin, ImagePin, Lock, ModelPin, OllamaPin, OpenWebUIPin, Placement

#: (group, title, the name a pin of a singleton group is shown and updated by)
GROUPS = (("images", "images", None), ("ollama", "Ollama", "ollama"), ("open_webui", "Open WebUI", "open-webui"),
          ("models", "models", None), ("gpus", "GPUs", None), ("members", "cluster members", None),
          ("placement", "placement", None))
#: The word before a pin's name in one-line reports ("model gemma:2b", "gpu gw-llm").
KIND = {"images": "image", "ollama": "ollama", "open_webui": "open-webui", "models": "model", "gpus": "gpu",
        "members": "member", "placement": "placement"}

Pin = ImagePin | OllamaPin | OpenWebUIPin | ModelPin | GpuPin | ClusterMember | Placement


def pins_of(lock: Lock | None) -> dict[str, dict[str, Any]]:
    """group -> {name -> pin}; Ollama and Open WebUI are named ``ollama`` and ``open-webui``."""
    if lock is None:
        return {group: {} for group, _, _ in GROUPS}
    return {"images": dict(lock.images),
            "ollama": {"ollama": lock.ollama} if lock.ollama is not None else {},
            "open_webui": {"open-webui": lock.open_webui} if lock.open_webui is not None else {},
            "models": dict(lock.models),
            "gpus": dict(lock.gpus),
            "members": dict(lock.cluster.members) if lock.cluster is not None else {},
            "placement": dict(lock.cluster.placement) if lock.cluster is not None else {}}


def _gib(n: int) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"


def _version(locked_version: str, asked: str) -> str:
    return f"v{locked_version}" + ("" if asked in (locked_version, f"v{locked_version}") else f" (asked {asked})")


def summary(group: str, pin: Any) -> str:
    """What a reviewer needs of one pin, on one line."""
    if group == "images":
        locked = pin.locked
        return f"{locked.serial or 'local'} {locked.fingerprint[:12]}"
    if group == "ollama":
        return f"{_version(pin.locked.version, pin.original.version)} {pin.locked.sha256[:12]}"
    if group == "open_webui":
        return f"{_version(pin.locked.version, pin.original.version)} {pin.locked.sha256[:12]}"
    if group == "models":
        return f"{pin.locked.digest[:19]} {_gib(pin.locked.size)}"
    if group == "members":
        return member_summary(pin)
    if group == "placement":
        return f"{pin.locked.member} ({pin.locked.reason})"
    locked = pin.locked
    card = locked.model or f"{locked.vendor_id}:{locked.product_id}"
    uuid = f" {locked.uuid[:12]}" if locked.uuid else ""
    return (f"{locked.pci} {card}{uuid}" + (f" on {pin.member}" if pin.member is not None else "")
            + (" (shared)" if pin.original.policy == "shared" else ""))


def member_summary(member: ClusterMember) -> str:
    """``x86_64, 8 threads, 16.0 GiB`` (or ``x86_64, facts unknown (not online when read)``)."""
    if member.cpu_threads is None or member.memory_bytes is None:
        return f"{member.architecture}, facts unknown (not online when read)"
    return f"{member.architecture}, {member.cpu_threads} threads, {member.memory_bytes / 2**30:.1f} GiB"


def label(group: str, name: str) -> str:
    """``image images:debian/13``, ``ollama``, ``model gemma:2b``, ``gpu gw-llm``."""
    kind = KIND[group]
    return kind if name == kind else f"{kind} {name}"


@dataclass(frozen=True)
class PinChange:
    group: str
    name: str
    change: str  # "added", "removed", "changed"
    old: Any = None
    new: Any = None

    def line(self) -> str:
        if self.change == "added":
            return f"+ {self.name}: {summary(self.group, self.new)}"
        if self.change == "removed":
            return f"- {self.name}: {summary(self.group, self.old)}"
        before, after = summary(self.group, self.old), summary(self.group, self.new)
        if before == after:  # what differs is not in the summary: say which fields
            after += f" (changed: {', '.join(_changed_fields(self.old, self.new))})"
        return f"~ {self.name}: {before} -> {after}"

    def to_json(self) -> dict[str, Any]:
        def side(pin):
            return None if pin is None else {"summary": summary(self.group, pin), "pin": msgspec.to_builtins(pin)}
        return {"group": self.group, "name": self.name, "change": self.change,
                "old": side(self.old), "new": side(self.new)}


def _changed_fields(old: Any, new: Any) -> list[str]:
    a, b = _flat(msgspec.to_builtins(old)), _flat(msgspec.to_builtins(new))
    return sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k)) or ["none"]


def _flat(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(_flat(v, f"{prefix}.{k}" if prefix else k))
        return out
    return {prefix: value}


def pin_changes(old: Lock | None, new: Lock | None) -> list[PinChange]:
    """The pins added, removed or changed from ``old`` to ``new``, by group then name."""
    before, after = pins_of(old), pins_of(new)
    changes: list[PinChange] = []
    for group, _, _ in GROUPS:
        a, b = before[group], after[group]
        for name in sorted(set(a) | set(b)):
            if name not in a:
                changes.append(PinChange(group, name, "added", new=b[name]))
            elif name not in b:
                changes.append(PinChange(group, name, "removed", old=a[name]))
            elif a[name] != b[name]:
                changes.append(PinChange(group, name, "changed", old=a[name], new=b[name]))
    return changes


def diff_lines(changes: list[PinChange]) -> Iterator[str]:
    """The changes, grouped under a title per group, one line per pin."""
    titles = {group: title for group, title, _ in GROUPS}
    current = None
    for change in changes:
        if change.group != current:
            current = change.group
            yield f"{titles[current]}:"
        yield f"  {change.line()}"
    counts = {kind: sum(1 for c in changes if c.change == kind) for kind in ("added", "removed", "changed")}
    if changes:
        yield (f"{len(changes)} pin{'s' if len(changes) != 1 else ''} changed: " +
               ", ".join(f"{n} {kind}" for kind, n in counts.items() if n))


def textconv_lines(lock: Lock) -> Iterator[str]:
    """The lock as text for ``git diff``: a head line, then one line per pin, by group."""
    yield f"anklume.lock version {lock.version}, infra_hash {lock.infra_hash[:19]}"
    for group, _, _ in GROUPS:
        for name, pin in sorted(pins_of(lock)[group].items()):
            yield f"{label(group, name)}: {summary(group, pin)}"

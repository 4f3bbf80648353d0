"""GPU inventory: Incus's ``/1.0/resources`` joined with nvidia-smi, as pure parsers.

Incus knows each card's PCI address, vendor/product ids and driver, but has no VRAM size
and often no UUID (protocols.md §4.1); nvidia-smi has both.  The two are joined by PCI
address, normalised to Incus's form ``dddd:bb:dd.f`` (lower case).

Only real GPUs are kept: emulated display adapters (virtio-gpu, QXL, Bochs, Cirrus,
VMware SVGA, simpledrm) are dropped by driver and by PCI vendor id; so are cards without
a PCI address, which Incus cannot pass through by ``pci``.

:mod:`anklume.resolve.inventory` reads these from the host.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable, Mapping
from typing import Annotated, Literal

import msgspec

from anklume import jsonsafe
from anklume.errors import SourceError
from anklume.lock.schema import (MAX_DRIVER_FILES, MAX_VRAM_MIB, GpuDriverFile, GpuUuid, MemberName, PciAddress,
                                 PciId, Text, Version, VramMib)

EMULATED_DRIVERS = frozenset(
    {"virtio_gpu", "virtio-gpu", "virtio-pci", "qxl", "bochs", "bochs-drm", "cirrus", "vmwgfx", "simpledrm"}
)
#: PCI vendors of emulated adapters: Red Hat virtio, Red Hat QEMU, QEMU (Bochs), VMware.
EMULATED_VENDORS = frozenset({"1af4", "1b36", "1234", "15ad"})

#: The nvidia-smi columns anklume asks for, in this order (the order of headerless CSV; a
#: headerless CSV of the first five, recorded before driver_version was asked, is read too).
SMI_FIELDS = ("index", "uuid", "name", "pci.bus_id", "memory.total", "driver_version")
_SMI_MIN_FIELDS = 5

_PCI = re.compile(r"(?:([0-9a-fA-F]{1,8}):)?([0-9a-fA-F]{2}):([0-9a-fA-F]{2})\.([0-7])")
_NOT_AVAILABLE = {"", "n/a", "[n/a]", "[not supported]", "[unknown error]"}

#: memory.total of nvidia-smi: a number of MiB (ASCII digits: ``str.isdigit`` takes '²' too).
_MIB = re.compile(r"[0-9]{1,12}")


class GpuCard(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One physical GPU of the host; fields are None where no source told."""

    pci: PciAddress  # "0000:00:06.0": a slot, not a card (uuid says which card)
    vendor_id: PciId  # "10de"
    product_id: PciId  # "2335"
    vendor: Text | None = None  # "NVIDIA Corporation"
    product: Text | None = None  # "GK208B [GeForce GT 730]" (pci.ids name)
    driver: Text | None = None  # "nvidia"
    model: Text | None = None  # "NVIDIA H200"
    uuid: GpuUuid | None = None  # "GPU-7439f9f0-..."
    vram_mib: VramMib | None = None  # at most MAX_VRAM_MIB (16 TiB)
    # the driver (anklume.resolve.driver): its version (Incus's, then nvidia-smi's), the CUDA
    # version it supports, and how it would reach a container: "runtime" (nvidia.runtime),
    # "files" (driver_files mounted read-only) or None (the card only)
    driver_version: Version | None = None  # "580.159.04"
    cuda_version: Version | None = None  # "13.0"
    driver_mode: Literal["runtime", "files"] | None = None
    driver_files: Annotated[list[GpuDriverFile], msgspec.Meta(max_length=MAX_DRIVER_FILES)] = []


class SmiGpu(msgspec.Struct, frozen=True, kw_only=True):
    """One row of ``nvidia-smi --query-gpu=index,uuid,name,pci.bus_id,memory.total,driver_version``."""

    pci: str
    uuid: str | None = None
    name: str | None = None
    vram_mib: int | None = None
    driver_version: str | None = None


def normalize_pci(address: str) -> str:
    """Incus's form of a PCI address: ``00000000:00:06.0`` or ``00:06.0`` -> ``0000:00:06.0``."""
    match = _PCI.fullmatch(address.strip())
    if match is None:
        raise ValueError(f"{address!r} is not a PCI address like 0000:00:06.0")
    domain, bus, device, function = match.groups()
    return f"{int(domain or '0', 16):04x}:{bus}:{device}.{function}".lower()


# -- Incus resources -------------------------------------------------------------------------


class _NvidiaInfo(msgspec.Struct):
    model: str | None = None
    uuid: str | None = None


class _ResourceCard(msgspec.Struct):
    pci_address: str = ""
    vendor_id: str = ""
    product_id: str = ""
    vendor: str | None = None
    product: str | None = None
    driver: str | None = None
    driver_version: str | None = None
    nvidia: _NvidiaInfo | None = None


def parse_resources(doc: Mapping, *, source: str = "Incus resources") -> list[GpuCard]:
    """The real GPUs in an Incus resources document, sorted by PCI address.

    Accepts the API response (``{"type": "sync", "metadata": {...}}``), its metadata (what
    ``incus query /1.0/resources`` prints) or just ``{"gpu": {...}}``.
    """
    if isinstance(doc.get("metadata"), Mapping):
        doc = doc["metadata"]
    gpu = doc.get("gpu")
    if not isinstance(gpu, Mapping):
        raise SourceError(f"{source}: no `gpu` section (is it /1.0/resources?)")
    try:
        raw = msgspec.convert(gpu.get("cards") or [], list[_ResourceCard])
    except msgspec.ValidationError as err:
        raise SourceError(f"{source}: malformed gpu.cards: {err}") from None
    cards = [_card(entry, source) for entry in raw if entry.pci_address and not _is_emulated(entry)]
    return sorted(cards, key=lambda card: card.pci)


def _is_emulated(entry: _ResourceCard) -> bool:
    return entry.driver in EMULATED_DRIVERS or entry.vendor_id.lower() in EMULATED_VENDORS


def _card(entry: _ResourceCard, source: str) -> GpuCard:
    nvidia = entry.nvidia or _NvidiaInfo()
    fields = {
        "pci": entry.pci_address,
        "vendor_id": entry.vendor_id.lower(),
        "product_id": entry.product_id.lower(),
        "vendor": entry.vendor,
        "product": entry.product,
        "driver": entry.driver,
        "model": nvidia.model,
        "uuid": nvidia.uuid,
        "driver_version": entry.driver_version or None,
    }
    try:
        fields["pci"] = normalize_pci(entry.pci_address)
        return msgspec.convert(fields, GpuCard)
    except (ValueError, msgspec.ValidationError) as err:
        raise SourceError(f"{source}: GPU at {entry.pci_address}: {err}") from None


# -- nvidia-smi ------------------------------------------------------------------------------


def parse_nvidia_smi_csv(text: str, *, source: str = "nvidia-smi") -> list[SmiGpu]:
    """Rows of ``nvidia-smi --query-gpu=... --format=csv[,noheader][,nounits]``.

    With a header, columns are found by name (``memory.total [MiB]`` included) and may come
    in any order, with extra columns; without one, the columns are :data:`SMI_FIELDS` (the
    first five at least).
    """
    rows = [row for row in csv.reader(text.splitlines(), skipinitialspace=True) if row]
    if not rows:
        return []
    if rows[0][0].strip().isdigit():
        width = max(_SMI_MIN_FIELDS, min(len(rows[0]), len(SMI_FIELDS)))
        columns = {name: i for i, name in enumerate(SMI_FIELDS[:width])}
    else:
        header, rows = rows[0], rows[1:]
        columns = {cell.split("[", 1)[0].strip(): i for i, cell in enumerate(header)}
        if "pci.bus_id" not in columns:
            raise SourceError(f"{source}: the CSV header has no pci.bus_id column")
    return [_smi_row(row, columns, source) for row in rows]


def _smi_row(row: list[str], columns: dict[str, int], source: str) -> SmiGpu:
    if len(row) <= max(columns.values()):
        expected = max(columns.values()) + 1
        raise SourceError(f"{source}: row {row!r} has {len(row)} columns, expected {expected}")

    def cell(name: str) -> str | None:
        value = row[columns[name]].strip() if name in columns else ""
        return None if value.lower() in _NOT_AVAILABLE else value

    try:
        pci = normalize_pci(cell("pci.bus_id") or "")
    except ValueError as err:
        raise SourceError(f"{source}: {err}") from None
    memory = cell("memory.total")
    vram = memory.removesuffix("MiB").strip() if memory else None
    if vram is not None and (not _MIB.fullmatch(vram) or int(vram) > MAX_VRAM_MIB):
        raise SourceError(f"{source}: memory.total {memory!r} is not a number of MiB "
                          f"(at most {MAX_VRAM_MIB}, 16 TiB)")
    return SmiGpu(pci=pci, uuid=cell("uuid"), name=cell("name"), vram_mib=int(vram) if vram else None,
                  driver_version=cell("driver_version"))


def join_inventory(cards: Iterable[GpuCard], smi: Iterable[SmiGpu]) -> list[GpuCard]:
    """Cards with UUID, VRAM and model taken from the nvidia-smi row at the same PCI address.

    nvidia-smi rows without a matching card are ignored: only Incus can pass a card through.
    """
    by_pci = {row.pci: row for row in smi}
    joined = []
    for card in cards:
        row = by_pci.get(card.pci)
        if row is not None:
            fields = msgspec.structs.asdict(card) | {
                "uuid": row.uuid or card.uuid, "model": row.name or card.model, "vram_mib": row.vram_mib,
                "driver_version": row.driver_version or card.driver_version}
            try:  # what nvidia-smi says is checked like what Incus says
                card = msgspec.convert(fields, GpuCard)
            except msgspec.ValidationError as err:
                raise SourceError(f"nvidia-smi: GPU at {card.pci}: {err}") from None
        joined.append(card)
    return sorted(joined, key=lambda card: card.pci)


# -- anklume's own inventory files -------------------------------------------------------------


def encode_inventory(cards: Iterable[GpuCard]) -> bytes:
    """Deterministic JSON: a list sorted by PCI address, sorted keys, 2-space indent, final LF."""
    ordered = sorted(cards, key=lambda card: card.pci)
    return msgspec.json.format(msgspec.json.encode(ordered, order="sorted"), indent=2) + b"\n"


def parse_inventory_file(data: bytes, *, source: str = "GPU inventory") -> list[GpuCard]:
    """Cards from a file: anklume's inventory (a JSON list, see :func:`encode_inventory`)
    or an Incus resources document (a JSON object, see :func:`parse_resources`)."""
    try:
        doc = jsonsafe.decode(data)
    except msgspec.DecodeError as err:
        raise SourceError(f"{source}: not JSON: {err}") from None
    if isinstance(doc, dict):
        return parse_resources(doc, source=source)
    try:
        cards = msgspec.convert(doc, list[GpuCard])
    except msgspec.ValidationError as err:
        raise SourceError(
            f"{source}: neither an anklume inventory nor Incus resources: {err}",
            "expected a list of GPU cards or the output of `incus query /1.0/resources`",
        ) from None
    return sorted(cards, key=lambda card: card.pci)


def encode_inventory_map(inventories: Mapping[str, Iterable[GpuCard]]) -> bytes:
    """A cluster's inventories (``anklume gpus --json`` on a cluster): an object member -> the
    member's list of cards (as :func:`encode_inventory`), members sorted."""
    doc = {member: sorted(cards, key=lambda card: card.pci) for member, cards in sorted(inventories.items())}
    return msgspec.json.format(msgspec.json.encode(doc, order="sorted"), indent=2) + b"\n"


def parse_inventory_map(data: bytes, *, source: str = "GPU inventory") -> dict[str, list[GpuCard]] | None:
    """A cluster's inventories from a file written by :func:`encode_inventory_map`; None when the
    file is a single server's (a list of cards, or Incus resources)."""
    try:
        doc = jsonsafe.decode(data)
    except msgspec.DecodeError as err:
        raise SourceError(f"{source}: not JSON: {err}") from None
    if not isinstance(doc, dict) or not doc or not all(isinstance(v, list) for v in doc.values()):
        return None
    try:
        cards = msgspec.convert(doc, dict[MemberName, list[GpuCard]])
    except msgspec.ValidationError as err:
        raise SourceError(f"{source}: not an inventory per cluster member: {err}",
                          "expected the output of `anklume gpus --json` on a cluster") from None
    return {member: sorted(c, key=lambda card: card.pci) for member, c in sorted(cards.items())}


def with_driver(cards: Iterable[GpuCard], *, cuda_version: str | None, mode: str | None,
                files: Iterable[GpuDriverFile] = ()) -> list[GpuCard]:
    """The NVIDIA cards with what the host's driver gives a container (the same for every card:
    one driver serves them all); the others unchanged."""
    files = list(files) if mode == "files" else []
    out = []
    for card in cards:
        if card.vendor_id == "10de":
            try:
                card = msgspec.convert(msgspec.structs.asdict(card) | {
                    "cuda_version": cuda_version, "driver_mode": mode,
                    "driver_files": [msgspec.structs.asdict(f) for f in files]}, GpuCard)
            except msgspec.ValidationError as err:
                raise SourceError(f"the host's NVIDIA driver: GPU at {card.pci}: {err}") from None
        out.append(card)
    return out

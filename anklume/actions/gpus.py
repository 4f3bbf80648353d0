"""``anklume gpus``: the host's GPU inventory, with the driver and what a GPU container would get
(:mod:`anklume.resolve.driver`)."""

from __future__ import annotations

import os
import sys

from rich.console import Console
from rich.table import Table

from anklume.backends.incus.reader import IncusReader, MemberNotReady
from anklume.lock.placement import ONLINE
from anklume.resolve.cluster import parse_cluster, parse_members
from anklume.resolve.gpus import GpuCard, encode_inventory, encode_inventory_map
from anklume.resolve.inventory import fetch_inventory, is_local, member_inventory
from anklume.sources import effective_sources, validated_source


def do_gpus(*, as_json: bool, endpoint: str | None) -> int:
    """``--incus``, else ``ANKLUME_INCUS``, else the local socket; each checked before use.

    On a cluster, the GPUs of each member (``/1.0/resources?target=``; nvidia-smi and the
    driver's files only for the member that answers on a local socket); JSON: an object member ->
    its inventory (what ``lock --gpu-inventory FILE`` reads for a cluster).  A member that is
    down is named on stderr and left out."""
    if endpoint:
        endpoint = validated_source("incus", endpoint, "--incus")
    else:
        endpoint = effective_sources({}, os.environ).incus
    out = Console(highlight=False, soft_wrap=True, markup=False, emoji=False)
    err = Console(stderr=True, highlight=False, soft_wrap=True, markup=False, emoji=False)
    reader = IncusReader(endpoint)
    server = parse_cluster(reader.cluster(), source=f"Incus at {reader.endpoint}: /1.0/cluster")
    if server is None:
        cards = fetch_inventory(endpoint)
        if as_json:
            sys.stdout.buffer.write(encode_inventory(cards))
            return 0
        _print(out, {None: cards})
        return 0
    inventories: dict[str, list[GpuCard]] = {}
    members = parse_members(reader.cluster_members(), source=f"Incus at {reader.endpoint}: /1.0/cluster/members")
    for name, member in members.items():
        try:
            if member.status != ONLINE:
                raise MemberNotReady(f"member {name} is {member.status}")
            inventories[name] = member_inventory(reader, name, local=is_local(reader.endpoint) and name == server)
        except MemberNotReady:
            err.print(f"member {name}: {member.status if member.status != ONLINE else 'not ready'}: "
                      "its GPUs cannot be read now")
    if as_json:
        sys.stdout.buffer.write(encode_inventory_map(inventories))
        return 0
    _print(out, inventories)
    return 0


def _print(out: Console, inventories: dict) -> None:
    """One table; with a ``member`` column on a cluster (``inventories`` keyed by member)."""
    cluster = None not in inventories
    cards = [(member, card) for member, cs in inventories.items() for card in cs]
    if not cards:
        where = f" on the {len(inventories)} member(s) read" if cluster else ""
        out.print(f"no GPU found{where} (emulated display adapters are not counted)")
        return
    table = Table(*(["member"] if cluster else []), "PCI", "vendor:product", "model", "UUID", "VRAM", "driver",
                  "a container gets")
    nvidia = any(card.vendor_id == "10de" for _, card in cards)
    for member, card in cards:
        driver = card.driver_version or ""
        if driver and card.cuda_version:
            driver += f" (CUDA {card.cuda_version})"
        table.add_row(*([member] if cluster else []), card.pci, f"{card.vendor_id}:{card.product_id}",
                      card.model or "", card.uuid or "", f"{card.vram_mib} MiB" if card.vram_mib else "", driver,
                      container_mode(card))
    out.print(table)
    if nvidia:
        out.print("a VM gets the card only (its guest needs its own driver)")


def container_mode(card: GpuCard) -> str:
    """Which way the driver would reach a container given this card (a VM gets the card only)."""
    if card.driver_mode == "runtime":
        return "card + nvidia.runtime"
    if card.driver_mode == "files":
        return f"card + {len(card.driver_files)} driver files (read-only)"
    if card.vendor_id == "10de":
        return "card only (no nvidia-smi, or no driver library found)"
    return "card only"

"""``anklume gpus``: the host's GPU inventory, with the driver and what a GPU container would get
(:mod:`anklume.resolve.driver`)."""

from __future__ import annotations

import os
import sys

from rich.console import Console
from rich.table import Table

from anklume.resolve.gpus import GpuCard, encode_inventory
from anklume.resolve.inventory import fetch_inventory
from anklume.sources import effective_sources, validated_source


def do_gpus(*, as_json: bool, endpoint: str | None) -> int:
    """``--incus``, else ``ANKLUME_INCUS``, else the local socket; each checked before use."""
    if endpoint:
        endpoint = validated_source("incus", endpoint, "--incus")
    else:
        endpoint = effective_sources({}, os.environ).incus
    cards = fetch_inventory(endpoint)
    if as_json:
        sys.stdout.buffer.write(encode_inventory(cards))
        return 0
    out = Console(highlight=False, soft_wrap=True, markup=False, emoji=False)
    if not cards:
        out.print("no GPU found (emulated display adapters are not counted)")
        return 0
    table = Table("PCI", "vendor:product", "model", "UUID", "VRAM", "driver", "a container gets")
    nvidia = any(card.vendor_id == "10de" for card in cards)
    for card in cards:
        driver = card.driver_version or ""
        if driver and card.cuda_version:
            driver += f" (CUDA {card.cuda_version})"
        table.add_row(card.pci, f"{card.vendor_id}:{card.product_id}", card.model or "",
                      card.uuid or "", f"{card.vram_mib} MiB" if card.vram_mib else "", driver, container_mode(card))
    out.print(table)
    if nvidia:
        out.print("a VM gets the card only (its guest needs its own driver)")
    return 0


def container_mode(card: GpuCard) -> str:
    """Which way the driver would reach a container given this card (a VM gets the card only)."""
    if card.driver_mode == "runtime":
        return "card + nvidia.runtime"
    if card.driver_mode == "files":
        return f"card + {len(card.driver_files)} driver files (read-only)"
    if card.vendor_id == "10de":
        return "card only (no nvidia-smi, or no driver library found)"
    return "card only"

"""``anklume gpus``: the host's GPU inventory."""

from __future__ import annotations

import os
import sys

from rich.console import Console
from rich.table import Table

from anklume.resolve.gpus import encode_inventory
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
    table = Table("PCI", "vendor:product", "model", "UUID", "VRAM")
    for card in cards:
        table.add_row(card.pci, f"{card.vendor_id}:{card.product_id}", card.model or "",
                      card.uuid or "", f"{card.vram_mib} MiB" if card.vram_mib else "")
    out.print(table)
    return 0

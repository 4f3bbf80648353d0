"""GPU assignment (docs/lock.md#gpu-assignment): stable, minimal, as documented."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from anklume.errors import ResolveError
from anklume.lock.gpu import assign_gpus


@dataclass(frozen=True)
class Card:
    pci: str
    vendor_id: str = "10de"
    product_id: str = "2335"
    model: str | None = "NVIDIA H200"
    uuid: str | None = None
    vram_mib: int | None = None


A, B, C = "0000:01:00.0", "0000:02:00.0", "0000:03:00.0"


def slots(pins):
    return {m: p.locked.pci for m, p in pins.items()}


def test_machines_by_name_gpus_by_pci_whatever_the_input_order():
    pins = assign_gpus(["zeta", "alpha"], "exclusive", [Card(B), Card(A)], {}, set())
    assert slots(pins) == {"alpha": A, "zeta": B}


def test_a_new_machine_leaves_the_others_where_they_are():
    old = assign_gpus(["zeta"], "exclusive", [Card(A), Card(B)], {}, set())
    assert slots(old) == {"zeta": A}
    pins = assign_gpus(["alpha", "zeta"], "exclusive", [Card(A), Card(B)], old, {"alpha", "zeta"})
    assert slots(pins) == {"alpha": B, "zeta": A}


def test_a_kept_pin_is_byte_identical_even_when_the_card_in_its_slot_changed():
    old = assign_gpus(["zeta"], "exclusive", [Card(A, uuid="GPU-1", vram_mib=1000)], {}, set())
    cards = [Card(A, uuid="GPU-2", vram_mib=None), Card(B)]
    pins = assign_gpus(["alpha", "zeta"], "exclusive", cards, old, {"alpha", "zeta"})
    assert pins["zeta"] == old["zeta"]


def test_update_re_reads_the_card():
    old = assign_gpus(["zeta"], "exclusive", [Card(A, uuid="GPU-1")], {}, set())
    pins = assign_gpus(["zeta"], "exclusive", [Card(A, uuid="GPU-2")], old, set())
    assert pins["zeta"].locked.uuid == "GPU-2"


def test_a_slot_that_left_the_inventory_is_reassigned():
    old = assign_gpus(["zeta"], "exclusive", [Card(A)], {}, set())
    pins = assign_gpus(["zeta"], "exclusive", [Card(B)], old, {"zeta"})
    assert slots(pins) == {"zeta": B}


def test_a_policy_change_reassigns():
    old = assign_gpus(["a", "b"], "shared", [Card(A), Card(B)], {}, set())
    pins = assign_gpus(["a", "b"], "exclusive", [Card(A), Card(B)], old, {"a", "b"})
    assert {p.original.policy for p in pins.values()} == {"exclusive"}


def test_shared_fills_the_least_used_gpu_lowest_address_first():
    pins = assign_gpus(["a", "b", "c"], "shared", [Card(B), Card(A)], {}, set())
    assert slots(pins) == {"a": A, "b": B, "c": A}


@pytest.mark.parametrize(("cards", "words"), [
    ([Card(A)], "GPU policy is 'exclusive' but 3 instances have GPU access: a, b, c."),
    ([Card(A), Card(B)], "and the host has 2 GPUs"),
    ([], "3 machines ask for a GPU (a, b, c) but the host has none"),
])
def test_too_few_gpus(cards, words):
    with pytest.raises(ResolveError) as err:
        assign_gpus(["c", "a", "b"], "exclusive", cards, {}, set())
    assert words in err.value.message


def test_exclusive_with_enough_gpus_gives_each_machine_its_own():
    pins = assign_gpus(["a", "b", "c"], "exclusive", [Card(C), Card(A), Card(B)], {}, set())
    assert sorted(slots(pins).values()) == [A, B, C]

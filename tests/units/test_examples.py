"""Every example with a committed lock plans into units (the real loader, the real locks)."""

from __future__ import annotations

from pathlib import Path

import pytest

from anklume.lock.codec import decode_lock
from anklume.model.load import load_infra
from anklume.units.build import build_units

REPO = Path(__file__).resolve().parents[2]
LOCKS = sorted(p for p in (REPO / "lockfiles").glob("*.lock") if (REPO / "examples" / p.stem / "infra.yml").exists())


def graph_of(lock_path: Path):
    infra_file = REPO / "examples" / lock_path.stem / "infra.yml"
    infra = load_infra(infra_file.read_bytes(), str(infra_file))
    lock = decode_lock(lock_path.read_bytes(), str(lock_path))
    return infra, lock, build_units(infra, lock)


@pytest.mark.parametrize("lock_path", LOCKS, ids=[p.stem for p in LOCKS])
def test_example_plans(lock_path):
    infra, lock, g = graph_of(lock_path)
    again = build_units(infra, lock)
    assert [(u.uid, u.key) for u in g] == [(u.uid, u.key) for u in again]
    instances = [u for u in g if u.kind == "instance"]
    assert len(instances) == sum(len(d.machines or {}) for d in infra.domains.values())
    for inst in instances:
        fp = inst.spec["image"]["fingerprint"]
        assert fp in {p.locked.fingerprint for p in lock.images.values()}
        for dep in inst.after:
            assert dep in g.units
    for machine, pin in lock.gpus.items():
        assert g[f"instance:{machine}"].spec["devices"]["gpu"] == {
            "type": "gpu", "gputype": "physical", "pci": pin.locked.pci}


def test_examples_exist():
    assert len(LOCKS) >= 3

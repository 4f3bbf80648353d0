"""Build an Infra (through the real loader) and a Lock for unit and build tests."""

from __future__ import annotations

from typing import Any

import msgspec
import yaml

from anklume.lock.codec import infra_hash
from anklume.model.needs import image_key, is_gpu_machine, iter_machines
from anklume.lock.schema import LOCK_VERSION, GpuDriver, GpuLocked, GpuOriginal, GpuPin, ImageLocked, ImageOriginal, ImagePin, Lock
from anklume.model.schema import Infra

FP_A = "a" * 64
FP_B = "b" * 64


def make_infra(doc: dict[str, Any]) -> Infra:
    """The parsed model (msgspec's own conversion: these tests are about units, not loading)."""
    return msgspec.convert(yaml.safe_load(yaml.safe_dump(doc, sort_keys=False)), type=Infra)


def make_lock(infra: Infra, fingerprints: dict[str, str] | None = None, *, default_fp: str = FP_A,
              server: str | None = None, gpus: dict[str, GpuLocked] | None = None,
              drivers: dict[str, GpuDriver] | None = None) -> Lock:
    """Pin every image the infra uses (``fingerprints`` by image key, else ``default_fp``), and a
    GPU for each GPU machine (``gpus``, ``drivers`` by machine)."""
    images: dict[str, ImagePin] = {}
    gpu_pins: dict[str, GpuPin] = {}
    for _d, domain, mname, machine in iter_machines(infra):
        key = image_key(infra, machine)
        remote, _, alias = key.split(" ")[0].partition(":")
        images[key] = ImagePin(
            original=ImageOriginal(remote=remote, alias=alias, architecture="x86_64",
                                   type="virtual-machine" if machine.type == "vm" else "container"),
            locked=ImageLocked(fingerprint=(fingerprints or {}).get(key, default_fp),
                               server=server if remote == "images" else None))
        if is_gpu_machine(domain, machine):
            locked = (gpus or {}).get(mname) or GpuLocked(pci="0000:01:00.0", vendor_id="10de", product_id="2335")
            gpu_pins[mname] = GpuPin(original=GpuOriginal(machine=mname, policy="exclusive"), locked=locked,
                                     driver=(drivers or {}).get(mname))
    return Lock(version=LOCK_VERSION, infra_hash=infra_hash(infra), images=images, gpus=gpu_pins)


def with_fingerprint(lock: Lock, key: str, fp: str) -> Lock:
    pin = lock.images[key]
    images = dict(lock.images)
    images[key] = msgspec.structs.replace(pin, locked=msgspec.structs.replace(pin.locked, fingerprint=fp))
    return msgspec.structs.replace(lock, images=images)


def two_domains(base: str = "10.100", *, a: str = "alpha", b: str = "beta", image: str = "local:busybox",
                extra: dict | None = None) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "project_name": "t",
        "global": {"base_subnet": base, "default_os_image": image},
        "domains": {
            a: {"subnet_id": 11, "description": "first", "ephemeral": True, "machines": {
                f"{a}-web": {"ip": f"{base}.11.10", "config": {"limits.cpu": 1}},
                f"{a}-db": {"ip": f"{base}.11.11", "ephemeral": False},
            }},
            b: {"subnet_id": 12, "ephemeral": True, "machines": {
                f"{b}-app": {"ip": f"{base}.12.10"},
            }},
        },
    }
    if extra:
        doc["domains"].update(extra)
    return doc

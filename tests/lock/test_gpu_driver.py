"""The driver in a GPU pin: made from the inventory, left out for VMs, checked when read, and
absent from locks written before it was pinned (those read, and write back byte for byte)."""

from __future__ import annotations

import json

import msgspec
import pytest

from anklume.errors import LockFormatError
from anklume.lock.assemble import Update, describe_changes, lock_infra
from anklume.lock.codec import decode_lock, encode_lock, lock_problem
from anklume.lock.gpu import assign_gpus, driver_of
from anklume.lock.schema import (LOCK_VERSION, GpuDriver, GpuDriverFile, GpuLocked, GpuOriginal, GpuPin, ImageLocked,
                                 Lock)
from anklume.model.load import load_infra
from anklume.resolve.gpus import GpuCard, encode_inventory, parse_inventory_file
from tests.support.lockfiles import LOCKFILES

LIB = "/usr/lib/x86_64-linux-gnu"
VERSION = "580.159.04"


def driver_file(name: str, real: str | None = None, digest: str = "0" * 64) -> GpuDriverFile:
    real = real or f"{name.split('.so')[0]}.so.{VERSION}"
    return GpuDriverFile(target=f"{LIB}/{name}", source=f"{LIB}/{real}", sha256=digest, size=7)


FILES = [driver_file("libcuda.so.1"), driver_file("libnvidia-ml.so.1"),
         GpuDriverFile(target="/usr/bin/nvidia-smi", source="/usr/bin/nvidia-smi", sha256="1" * 64, size=9)]


def card(**kw) -> GpuCard:
    return GpuCard(pci="0000:00:06.0", vendor_id="10de", product_id="2335", model="NVIDIA H200",
                   uuid="GPU-9e1c631b-fafe-f96d-935d-1ff4b8a5bf54", vram_mib=143771, **kw)


def test_a_new_pin_records_the_driver_of_its_card():
    h200 = card(driver_version=VERSION, cuda_version="13.0", driver_mode="files", driver_files=FILES)
    pins = assign_gpus(["llm"], "exclusive", [h200], {}, set())
    assert pins["llm"].driver == GpuDriver(mode="files", version=VERSION, cuda="13.0", files=FILES)
    runtime = card(driver_version=VERSION, driver_mode="runtime")
    assert assign_gpus(["llm"], "exclusive", [runtime], {}, set())["llm"].driver == GpuDriver(mode="runtime",
                                                                                             version=VERSION)


def test_a_vm_gets_the_card_only():
    h200 = card(driver_version=VERSION, driver_mode="files", driver_files=FILES)
    pins = assign_gpus(["llm", "vm"], "shared", [h200], {}, set(), card_only={"vm"})
    assert pins["llm"].driver is not None and pins["vm"].driver is None


@pytest.mark.parametrize("kw", [
    {},  # Incus's resources alone: no version, no mode
    {"driver_version": VERSION},  # a version but no way to bring the driver in
    {"driver_version": VERSION, "driver_mode": "files"},  # files mode without files
    {"driver_mode": "runtime"},  # no version
])
def test_no_driver_pinned_without_a_version_and_a_mode(kw):
    assert driver_of(card(**kw)) is None


def test_only_nvidia_cards_get_a_driver():
    amd = GpuCard(pci="0000:03:00.0", vendor_id="1002", product_id="744c", driver_version="6.8.0",
                  driver_mode="files", driver_files=FILES)
    assert driver_of(amd) is None


def test_the_inventory_file_carries_the_driver_to_another_host():
    """`anklume gpus --json` on the GPU host, then `anklume lock --gpu-inventory` elsewhere."""
    h200 = card(driver_version=VERSION, cuda_version="13.0", driver_mode="files", driver_files=FILES)
    [again] = parse_inventory_file(encode_inventory([h200]))
    assert again == h200 and driver_of(again) == driver_of(h200)


# -- reading and writing ---------------------------------------------------------------------------


def pinned_lock(driver: GpuDriver | None) -> Lock:
    pin = GpuPin(original=GpuOriginal(machine="llm", policy="exclusive"),
                 locked=GpuLocked(pci="0000:00:06.0", vendor_id="10de", product_id="2335"), driver=driver)
    return Lock(version=LOCK_VERSION, infra_hash="blake3:" + "0" * 64, gpus={"llm": pin})


def test_a_lock_written_before_drivers_were_pinned_reads_and_writes_back_byte_for_byte():
    for name in ("gpu-workstation", "llm-supervisor"):
        data = (LOCKFILES / f"{name}.lock").read_bytes()
        lock = decode_lock(data)
        assert all(pin.driver is None for pin in lock.gpus.values())
        assert encode_lock(lock) == data


def test_a_pinned_driver_round_trips():
    lock = pinned_lock(GpuDriver(mode="files", version=VERSION, cuda="13.0", files=FILES))
    data = encode_lock(lock)
    assert decode_lock(data) == lock
    driver = json.loads(data)["gpus"]["llm"]["driver"]
    assert driver["mode"] == "files" and driver["files"][0] == {
        "sha256": "0" * 64, "size": 7, "source": f"{LIB}/libcuda.so.{VERSION}", "target": f"{LIB}/libcuda.so.1"}
    runtime = encode_lock(pinned_lock(GpuDriver(mode="runtime", version=VERSION)))
    assert json.loads(runtime)["gpus"]["llm"]["driver"] == {"mode": "runtime", "version": VERSION}


def edited(driver: dict) -> bytes:
    doc = json.loads(encode_lock(pinned_lock(GpuDriver(mode="files", version=VERSION, files=FILES))))
    doc["gpus"]["llm"]["driver"] = driver
    return json.dumps(doc).encode()


def base_driver(**changes) -> dict:
    doc = msgspec.to_builtins(GpuDriver(mode="files", version=VERSION, files=FILES))
    return doc | changes


def with_file(**changes) -> dict:
    files = msgspec.to_builtins(FILES)
    files[0] |= changes
    return base_driver(files=files)


@pytest.mark.parametrize(("driver", "words"), [
    (base_driver(mode="files", files=[]), "gpus.llm.driver.files: mode 'files' mounts no file"),
    (base_driver(mode="runtime"), "mode 'runtime' mounts no file of its own"),
    (base_driver(mode="cdi"), "gpus.llm.driver.mode: invalid enum value 'cdi'"),
    (base_driver(version="580; reboot"), "gpus.llm.driver.version: expected a version"),
    (with_file(source="/etc/shadow", target="/usr/lib/x86_64-linux-gnu/libcuda.so.1"),
     "gpus.llm.driver.files[0].source: '/etc/shadow' is not a file of libcuda.so"),
    (with_file(target="/etc/shadow"), "gpus.llm.driver.files[0].target: '/etc/shadow' is not a driver library"),
    (with_file(target="/root/libcuda.so.1"), "is not a driver library or program in"),
    (with_file(target=f"{LIB}/../../etc/libcuda.so.1"), "an absolute path without '..'"),
    (with_file(source="relative/libcuda.so.1"), "an absolute path without '..'"),
    (with_file(sha256="abc"), "64 lower-case hex digits"),
    (with_file(size=-1), "gpus.llm.driver.files[0].size"),
    (with_file(size=2**33), "gpus.llm.driver.files[0].size"),
    (base_driver(files=msgspec.to_builtins(FILES) + msgspec.to_builtins(FILES[:1])), "is mounted twice"),
    (base_driver(surprise=1), "gpus.llm.driver: object contains unknown field surprise"),
])
def test_a_driver_edited_into_something_else_is_refused(driver, words):
    with pytest.raises(LockFormatError) as err:
        decode_lock(edited(driver), file="anklume.lock")
    assert words in err.value.message


def test_the_lock_never_writes_a_driver_it_would_refuse():
    bad = GpuDriver(mode="files", version=VERSION,
                    files=[GpuDriverFile(target="/etc/shadow", source="/etc/shadow", sha256="0" * 64, size=1)])
    assert "is not a driver library or program" in lock_problem(pinned_lock(bad))


# -- through lock_infra ----------------------------------------------------------------------------

GPU_INFRA = """\
project_name: p
global:
  gpu_policy: shared
domains:
  lab:
    subnet_id: 1
    machines:
      llm: {gpu: true}
      vm1: {gpu: true, type: vm}
"""


class H200Host:
    """A scripted resolver: images pinned to zeros, the H200 with its driver in files mode."""

    def image(self, original):
        return ImageLocked(fingerprint="0" * 64)

    def cluster(self):
        return None

    def gpu_inventory(self, member=None):
        return [card(driver_version=VERSION, cuda_version="13.0", driver_mode="files", driver_files=FILES)]


def test_lock_infra_pins_the_driver_of_a_container_not_of_a_vm():
    infra = load_infra(GPU_INFRA.encode())
    lock = lock_infra(infra, None, H200Host())
    assert lock.gpus["llm"].driver == GpuDriver(mode="files", version=VERSION, cuda="13.0", files=FILES)
    assert lock.gpus["vm1"].driver is None


def test_a_kept_pin_without_driver_stays_so_until_update_gpus():
    """An old lock's pin is kept byte for byte; `--update gpus` re-reads the card and its driver."""
    infra = load_infra(GPU_INFRA.encode())
    new = lock_infra(infra, None, H200Host())
    old = msgspec.structs.replace(new, gpus={m: msgspec.structs.replace(p, driver=None) for m, p in new.gpus.items()})
    kept = lock_infra(infra, old, H200Host())
    assert kept.gpus == old.gpus
    updated = lock_infra(infra, old, H200Host(), Update(names=frozenset({"gpus"})))
    assert updated.gpus["llm"].driver is not None
    assert describe_changes(old, updated) == [
        "~ gpu llm: 0000:00:06.0 NVIDIA H200 -> 0000:00:06.0 NVIDIA H200 (driver 580.159.04, files)"]

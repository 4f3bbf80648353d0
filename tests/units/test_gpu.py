"""What a GPU container gets from its pin's driver (anklume.units.gpu)."""

from __future__ import annotations

import pytest

from anklume.lock.schema import GpuDriver, GpuDriverFile, GpuLocked
from anklume.units.build import build_units
from tests.units.infra import make_infra, make_lock

LIB = "/usr/lib/x86_64-linux-gnu"
VERSION = "580.159.04"
UUID = "GPU-9e1c631b-fafe-f96d-935d-1ff4b8a5bf54"
FILES = [GpuDriverFile(target=f"{LIB}/libcuda.so.1", source=f"{LIB}/libcuda.so.{VERSION}", sha256="a" * 64, size=10),
         GpuDriverFile(target=f"{LIB}/libnvidia-ml.so.1", source=f"{LIB}/libnvidia-ml.so.{VERSION}",
                       sha256="b" * 64, size=20),
         GpuDriverFile(target="/usr/bin/nvidia-smi", source="/usr/bin/nvidia-smi", sha256="c" * 64, size=30)]
FILES_DRIVER = GpuDriver(mode="files", version=VERSION, cuda="13.0", files=FILES)
RUNTIME_DRIVER = GpuDriver(mode="runtime", version=VERSION, cuda="13.0")
H200_PIN = GpuLocked(pci="0000:00:06.0", vendor_id="10de", product_id="2335", model="NVIDIA H200", uuid=UUID,
                     vram_mib=143771)


def doc(vm: bool = False) -> dict:
    return {
        "project_name": "gpu",
        "global": {"base_subnet": "10.120", "default_os_image": "images:debian/13"},
        "domains": {"ai": {"subnet_id": 3, "ephemeral": True, "machines": {
            "llm": {"gpu": True, "roles": ["base_system"], **({"type": "vm"} if vm else {})},
            "web": {"roles": ["base_system"]},
        }}},
    }


def graph(driver: GpuDriver | None, *, vm: bool = False, inside: bool = False):
    infra = make_infra(doc(vm))
    lock = make_lock(infra, gpus={"llm": H200_PIN}, drivers={"llm": driver} if driver else None)
    inputs = {"role_digests": {"base_system": "d" * 64}, "vars_digests": {"llm": "e" * 64, "web": "f" * 64}}
    return build_units(infra, lock, inputs if inside else None), lock


# -- what the container gets ------------------------------------------------------------------------


def test_files_mode_mounts_each_file_read_only_where_debian_finds_it():
    g, _ = graph(FILES_DRIVER)
    devices = g["instance:llm"].spec["devices"]
    assert devices["gpu"] == {"type": "gpu", "gputype": "physical", "pci": "0000:00:06.0"}
    assert devices["nvidia-libcuda-so-1"] == {"type": "disk", "source": f"{LIB}/libcuda.so.{VERSION}",
                                              "path": f"{LIB}/libcuda.so.1", "readonly": "true"}
    assert devices["nvidia-nvidia-smi"]["path"] == "/usr/bin/nvidia-smi"
    assert len(devices) == 1 + len(FILES)
    assert "nvidia.runtime" not in g["instance:llm"].spec["config"]


def test_runtime_mode_asks_incus_for_nvidia_runtime():
    g, _ = graph(RUNTIME_DRIVER)
    inst = g["instance:llm"].spec
    assert inst["config"]["nvidia.runtime"] == "true"
    assert set(inst["devices"]) == {"gpu"}


@pytest.mark.parametrize("driver", [None, FILES_DRIVER])
def test_a_vm_and_a_pin_without_driver_get_the_card_only(driver):
    g, _ = graph(driver, vm=driver is not None)
    inst = g["instance:llm"].spec
    assert set(inst["devices"]) == {"gpu"} and "nvidia.runtime" not in inst["config"]


def test_the_driver_is_in_the_instance_key():
    keys = {graph(d)[0]["instance:llm"].key for d in (None, FILES_DRIVER, RUNTIME_DRIVER)}
    assert len(keys) == 3
    assert graph(None)[0]["instance:web"].key == graph(FILES_DRIVER)[0]["instance:web"].key

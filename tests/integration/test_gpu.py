"""GPUs against the real private incusd, on this GPU-less host.

- The preflight: a lock that pins a GPU makes `build` refuse the GPU instance before any write to
  it, while the rest of the infra applies; exit 1; the message names the slot, the UUID and the fix.
- The driver's files: small stand-in files in a temporary host directory (a test double of the
  host's NVIDIA driver, found by the real discovery through test doubles of `ldconfig` and
  `nvidia-smi`) reach a container at the pinned paths, read-only, and `verify --live` catches one
  changed on the host.  This daemon has no GPU, so the container gets exactly the devices the pin
  makes for a GPU container *less the card*: the driver's devices are declared on a plain machine
  (built with a lock that pins no GPU, so the preflight does not refuse it), and `verify --live`
  is given the lock that pins the GPU and its driver.
"""

from __future__ import annotations

import json
import os

import msgspec
import pytest

from anklume.lock.schema import GpuDriver, GpuLocked, GpuOriginal, GpuPin
from anklume.resolve.inventory import discover_files
from anklume.units.gpu import driver_devices
from tests.support.recorded import LDCONFIG_LINKS, LDCONFIG_P
from tests.units.infra import make_infra, make_lock

UUID = "GPU-9e1c631b-fafe-f96d-935d-1ff4b8a5bf54"
VERSION = "580.159.04"
H200 = GpuLocked(pci="0000:00:06.0", vendor_id="10de", product_id="2335", model="NVIDIA H200", uuid=UUID,
                 vram_mib=143771)


def two_machines(env, *, gpu_devices: dict | None = None) -> dict:
    d = env.dom(0)
    gpu = {"ip": f"10.100.{env.sid}.10", "gpu": True} if gpu_devices is None else {
        "ip": f"10.100.{env.sid}.10", "devices": gpu_devices}
    return {
        "project_name": "t",
        "global": {"base_subnet": "10.100", "default_os_image": "local:busybox"},
        "domains": {d: {"subnet_id": env.sid, "ephemeral": True, "machines": {
            f"{d}-gpu": gpu,
            f"{d}-web": {"ip": f"10.100.{env.sid}.11"},
        }}},
    }


def test_preflight_refuses_the_gpu_instance_and_builds_the_rest(env):
    d = env.dom(0)
    infra = make_infra(two_machines(env))
    lock = make_lock(infra, default_fp=env.fp, gpus={f"{d}-gpu": H200},
                     drivers={f"{d}-gpu": GpuDriver(mode="runtime", version=VERSION, cuda="13.0")})

    assert env.build(infra, lock, plan_only=True) == 1
    plan = env.out.getvalue()
    assert f"instance:{d}-gpu" in plan and "blocked: GPU preflight" in plan
    assert "refused: GPU of machine" in plan and "anklume lock --update gpus" in plan

    assert env.build(infra, lock) == 1
    out = env.out.getvalue()
    refusal = [line for line in out.splitlines() if line.startswith("refused:")]
    assert refusal == [f"refused: GPU of machine {d}-gpu: the lock pins slot 0000:00:06.0 with NVIDIA H200 "
                       f"(10de:2335), UUID {UUID}; this host has no GPU in slot 0000:00:06.0 (it has no GPU at all)"]
    assert "`anklume lock --update gpus` re-pins the GPUs for that host" in out
    # nothing of the GPU instance was written; everything else was
    names = {i["name"] for i in env.query(f"/1.0/instances?project={d}&recursion=1")}
    assert names == {f"{d}-web"}
    assert env.instance(f"{d}-web", d)["status"] == "Running"
    assert env.query(f"/1.0/projects/{d}")["config"]["user.anklume.managed"] == "true"

    # the next build says the same, and still writes nothing of it
    assert env.build(infra, lock) == 1
    assert "nothing else to do" in env.out.getvalue() and "refused: GPU of machine" in env.out.getvalue()
    assert {i["name"] for i in env.query(f"/1.0/instances?project={d}&recursion=1")} == {f"{d}-web"}


@pytest.fixture
def stand_in_driver(tmp_path, monkeypatch):
    """The host's NVIDIA driver, as a test double: the synthesised linker cache's files as small
    stand-ins under tmp_path (with the same links), an `ldconfig` printing that cache with its paths
    moved there, and an `nvidia-smi` script answering the pinned card and driver."""
    root = tmp_path / "driver-host"
    for path, real in json.loads(LDCONFIG_LINKS.read_text()).items():
        src, dst = root / path.lstrip("/"), root / real.lstrip("/")
        dst.parent.mkdir(parents=True, exist_ok=True)
        if not dst.exists():
            dst.write_bytes(f"stand-in for {real}\n".encode())
        src.parent.mkdir(parents=True, exist_ok=True)
        if src != dst and not src.is_symlink():
            src.symlink_to(dst)
    bindir = tmp_path / "bin"
    bindir.mkdir()
    smi = bindir / "nvidia-smi"
    smi.write_text(f'#!/bin/sh\necho "{UUID}, {VERSION}"\n')
    cache = tmp_path / "ldconfig-p.txt"
    cache.write_text(LDCONFIG_P.read_text().replace(" => /lib/", f" => {root}/lib/"))
    ldconfig = bindir / "ldconfig"
    ldconfig.write_text(f'#!/bin/sh\n[ "$1" = -p ] && cat "{cache}"\n')
    for p in (smi, ldconfig):
        p.chmod(0o755)
    for p in [tmp_path, *tmp_path.rglob("*")]:  # the container's root is not the host's
        if p.is_dir() and not p.is_symlink():
            p.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}")
    return root


def test_driver_files_reach_the_container_read_only_and_verify_catches_a_changed_one(env, stand_in_driver):
    d = env.dom(0)
    files = discover_files(VERSION, "x86_64")
    assert len(files) == 14 and all(str(stand_in_driver) in f.source or f.target == "/usr/bin/nvidia-smi"
                                    for f in files)
    driver = GpuDriver(mode="files", version=VERSION, cuda="13.0", files=files)
    infra = make_infra(two_machines(env, gpu_devices=driver_devices(driver)))
    built = make_lock(infra, default_fp=env.fp)
    assert env.build(infra, built) == 0, env.out.getvalue()

    inst = f"{d}-gpu"
    for f in files:  # each at its pinned path, with the host file's bytes
        got = env.cat(inst, d, f.target)  # retried: Incus may lose an exec's output right after a start
        with open(f.source) as src:
            assert got == src.read()
    libcuda = "/usr/lib/x86_64-linux-gnu/libcuda.so.1"
    wrote = env.incus.incus("exec", inst, "--project", d, "--", "sh", "-c", f"exec 2>&1; echo x > {libcuda}",
                            check=False)
    assert "Read-only file system" in wrote
    assert env.incus.incus("exec", inst, "--project", d, "--", "nvidia-smi").strip() == f"{UUID}, {VERSION}"

    # verify --live with the lock that pins the GPU and its driver: this daemon has no card at the
    # slot (the one finding expected here), nvidia-smi answers, every file has its pinned sha256
    pin = GpuPin(original=GpuOriginal(machine=inst, policy="exclusive"), locked=H200, driver=driver)
    pinned = msgspec.structs.replace(built, gpus={inst: pin})
    rc, found = env.verify(infra, pinned)
    assert rc == 1 and [(f["object"], f["field"]) for f in found] == [(f"gpu:{inst}", "pci")], found

    # the host's libcuda changes under the mount (written in place, so the mount shows it; a driver
    # upgrade installs new files under new names instead, which the build's preflight refuses)
    cuda = next(f for f in files if f.target == libcuda)
    with open(cuda.source, "r+b") as host_file:
        host_file.write(b"CHANGED")
    rc, found = env.verify(infra, pinned)
    changed = [f for f in found if f["field"] == libcuda]
    assert rc == 1 and len(changed) == 1
    assert changed[0]["object"] == f"gpu:{inst}" and changed[0]["expected"] == f"sha256 {cuda.sha256}"
    assert changed[0]["actual"].startswith("sha256 ") and changed[0]["actual"] != f"sha256 {cuda.sha256}"
    # libcuda.so is the same host file, mounted under its other name
    assert {f["field"] for f in found} == {"pci", libcuda, "/usr/lib/x86_64-linux-gnu/libcuda.so"}

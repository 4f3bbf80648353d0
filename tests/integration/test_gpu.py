"""GPUs against the real private incusd, on this GPU-less host.

- The preflight: a lock that pins a GPU makes `build` refuse the GPU instance before any write to
  it, while the rest of the infra applies; exit 1; the message names the slot, the UUID and the fix.
"""

from __future__ import annotations

from anklume.lock.schema import GpuDriver, GpuLocked
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

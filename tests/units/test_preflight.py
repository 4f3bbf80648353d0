"""build's GPU preflight: the lock's GPUs against the host (anklume.units.preflight), on the
recorded H200 inventory."""

from __future__ import annotations

import json

import msgspec

from anklume.resolve.gpus import GpuCard, join_inventory, parse_nvidia_smi_csv, parse_resources
from anklume.units.plan import Change, Plan
from anklume.units.preflight import HostGpus, gpu_refusals, mark_refused, refused_units, without_refused
from tests.support.recorded import H200_RESOURCES, H200_SMI_CSV
from tests.units.test_gpu import FILES, FILES_DRIVER, RUNTIME_DRIVER, UUID, graph

#: The card of the other recorded H200 host: the same slot, another card (fixtures/gpu/README).
OTHER_UUID = "GPU-7439f9f0-ee9f-5ce6-deeb-28da35ecad39"
LIB = "/usr/lib/x86_64-linux-gnu"
VERSION = "580.159.04"


def h200_cards(**changes) -> list[GpuCard]:
    cards = join_inventory(parse_resources(json.loads(H200_RESOURCES.read_bytes())),
                           parse_nvidia_smi_csv(H200_SMI_CSV.read_text()))
    return [msgspec.structs.replace(c, **changes) for c in cards]


def host(cards=None, *, local=True, cli=False, files=None, smi_error=None) -> HostGpus:
    files = {f.source: (f.size, f.sha256) for f in FILES} if files is None else files
    return HostGpus(cards=h200_cards() if cards is None else cards, local=local, container_cli=cli, files=files,
                    smi_error=smi_error)


def refusals(driver, h, **kw):
    g, lock = graph(driver, **kw)
    return [(r.what, r.render()) for r in gpu_refusals(lock, g, h)]


def test_the_recorded_h200_host_satisfies_its_own_pin():
    assert refusals(FILES_DRIVER, host()) == []
    assert refusals(RUNTIME_DRIVER, host(cli=True)) == []
    assert refusals(None, host()) == []


def test_a_host_without_gpu_is_refused_with_the_slot_and_uuid():
    [(what, text)] = refusals(FILES_DRIVER, host(cards=[]))
    assert what == "slot"
    assert text == (f"GPU of machine llm: the lock pins slot 0000:00:06.0 with NVIDIA H200 (10de:2335), UUID {UUID}; "
                    "this host has no GPU in slot 0000:00:06.0 (it has no GPU at all)")


def test_another_slot_lists_the_hosts_gpus():
    [(what, text)] = refusals(None, host(cards=h200_cards(pci="0000:41:00.0")))
    assert what == "slot" and "(its GPUs: 0000:41:00.0 (NVIDIA H200))" in text


def test_another_card_in_the_slot():
    [(what, text)] = refusals(FILES_DRIVER, host(cards=h200_cards(uuid=OTHER_UUID)))
    assert what == "card" and text.endswith(f"this host has NVIDIA H200 (10de:2335), UUID {OTHER_UUID} in that slot")
    [(what, _)] = refusals(FILES_DRIVER, host(cards=h200_cards(product_id="2330", model="NVIDIA H100")))
    assert what == "card"


def test_a_host_card_without_uuid_is_compared_by_product():
    assert refusals(FILES_DRIVER, host(cards=h200_cards(uuid=None))) == []


def test_another_driver_version():
    [(what, text)] = refusals(FILES_DRIVER, host(cards=h200_cards(driver_version="590.44.01")))
    assert what == "driver" and text.endswith(f"the lock pins NVIDIA driver {VERSION}; this host has driver 590.44.01")


def test_changed_or_missing_driver_files():
    files = {FILES[0].source: (10, "f" * 64), FILES[1].source: None, FILES[2].source: (30, "c" * 64)}
    [(what, text)] = refusals(FILES_DRIVER, host(files=files))
    assert what == "driver files"
    assert f"2 of them changed: {LIB}/libcuda.so.{VERSION} (sha256 ffffffffffff..., not aaaaaaaaaaaa...)" in text
    assert f"{LIB}/libnvidia-ml.so.{VERSION} (missing)" in text


def test_runtime_without_nvidia_container_cli():
    [(what, text)] = refusals(RUNTIME_DRIVER, host(cli=False))
    assert what == "driver" and "no nvidia-container-cli on its PATH" in text


def test_a_broken_driver_refuses_the_gpu_container():
    [(what, text)] = refusals(FILES_DRIVER, host(smi_error="nvidia-smi failed (exit 9): NVIDIA-SMI has failed"))
    assert what == "driver" and "NVIDIA-SMI has failed" in text


def test_a_remote_server_is_checked_by_its_resources_only():
    """Its files and programs are not this machine's: the card and the driver version are checked."""
    assert refusals(FILES_DRIVER, host(local=False, files={})) == []
    assert refusals(RUNTIME_DRIVER, host(local=False)) == []
    [(what, _)] = refusals(FILES_DRIVER, host(local=False, cards=h200_cards(driver_version="1.0")))
    assert what == "driver"


def test_a_vm_is_checked_for_its_card_only():
    g, lock = graph(None, vm=True)
    lock = msgspec.structs.replace(lock, gpus={"llm": msgspec.structs.replace(lock.gpus["llm"], driver=FILES_DRIVER)})
    assert gpu_refusals(lock, g, host(files={}, cards=h200_cards(driver_version="1.0"))) == []
    assert [r.what for r in gpu_refusals(lock, g, host(cards=[]))] == ["slot"]


# -- what is refused, in the plan ------------------------------------------------------------------


def test_the_gpu_instance_and_what_is_placed_in_it_are_refused_the_rest_is_not():
    g, lock = graph(FILES_DRIVER, inside=True)
    refused = refused_units(g, gpu_refusals(lock, g, host(cards=[])))
    assert set(refused) == {"instance:llm", "role:llm/base_system"}
    assert refused["instance:llm"].startswith("GPU preflight: GPU of machine llm: the lock pins slot 0000:00:06.0")
    assert refused["role:llm/base_system"] == "GPU preflight: instance llm is refused"
    plan = Plan([Change(action="create", uid=u.uid, key=u.key) for u in g] +
                [Change(action="unchanged", uid="instance:old", key="k")])
    marked = mark_refused(plan, refused)
    assert {c.uid for c in marked.changes if c.blocked} == {"instance:llm", "role:llm/base_system"}
    runnable = without_refused(marked, refused)
    assert {c.uid for c in runnable.pending} == {u.uid for u in g} - set(refused)
    assert "instance:web" in {c.uid for c in runnable.pending}


def test_an_unchanged_refused_unit_stays_unchanged():
    g, lock = graph(FILES_DRIVER)
    refused = refused_units(g, gpu_refusals(lock, g, host(cards=[])))
    plan = Plan([Change(action="unchanged", uid="instance:llm", key="k")])
    assert mark_refused(plan, refused) == plan and without_refused(plan, refused).changes == []

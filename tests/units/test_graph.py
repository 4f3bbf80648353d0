"""Infra + Lock -> units: what each unit applies, its key, and the DAG."""

from __future__ import annotations

import random

import msgspec
import pytest

from anklume.errors import StaleLock
from anklume.lock.schema import GpuLocked
from anklume.units.build import build_units
from anklume.units.graph import GraphError, build_graph, topological
from anklume.units.key import KEY_SCHEME, unit_key
from anklume.units.unit import Unit
from tests.units.infra import FP_A, FP_B, make_infra, make_lock, two_domains, with_fingerprint

GPU_DOC = {
    "project_name": "gpu",
    "global": {"base_subnet": "10.120", "default_os_image": "images:debian/13"},
    "domains": {
        "ai": {
            "subnet_id": 3, "description": "AI tools",
            "profiles": {"nvidia-compute": {"description": "GPU",
                                            "devices": {"gpu": {"type": "gpu", "gputype": "physical"}},
                                            "config": {"nvidia.runtime": True}}},
            "machines": {
                "llm": {"ip": "10.120.3.10", "profiles": ["default", "nvidia-compute"], "gpu": True,
                        "config": {"security.nesting": True, "limits.memory": "8GiB", "limits.cpu": 4},
                        "devices": {"tmp": {"type": "disk", "source": "/srv", "path": "/srv"}},
                        "storage_volumes": {"ollama-models": {"size": "20GiB", "path": "/root/.ollama"}}},
                "ui": {"ephemeral": True},
            },
        },
    },
}


def graph_of(doc, **kw):
    infra = make_infra(doc)
    return build_units(infra, make_lock(infra, **kw))


def test_units_and_order():
    g = graph_of(GPU_DOC)
    assert [u.uid for u in g] == [
        "project:ai", "acl:ai", "network:ai", "profile:ai/default", "profile:ai/nvidia-compute",
        "volume:ai/ollama-models",
        "instance:llm", "instance:ui"]
    assert g["instance:llm"].after == ("project:ai", "network:ai", "profile:ai/default", "profile:ai/nvidia-compute",
                                       "volume:ai/ollama-models")


def test_project_network_default_profile():
    g = graph_of(GPU_DOC)
    assert g["project:ai"].spec == {"description": "AI tools", "config": {
        "features.images": "true", "features.profiles": "true", "features.storage.volumes": "true",
        "features.networks": "false"}}
    net = g["network:ai"]
    assert (net.object, net.project) == ("net-ai", "default")
    assert net.spec["config"] == {"ipv4.address": "10.120.3.254/24", "ipv4.nat": "true", "ipv6.address": "none",
                                  "security.acls": "acl-ai", "security.acls.default.ingress.action": "drop",
                                  "security.acls.default.egress.action": "allow"}
    assert "acl:ai" in net.after
    prof = g["profile:ai/default"]
    assert (prof.object, prof.project) == ("default", "ai")
    assert prof.spec["devices"] == {"eth0": {"type": "nic", "network": "net-ai", "name": "eth0"},
                                    "root": {"type": "disk", "pool": "default", "path": "/"}}


def test_declared_profile_keeps_devices_and_config():
    prof = graph_of(GPU_DOC)["profile:ai/nvidia-compute"].spec
    assert prof == {"description": "GPU", "config": {"nvidia.runtime": "true"},
                    "devices": {"gpu": {"type": "gpu", "gputype": "physical"}}}


def test_instance_spec():
    g = graph_of(GPU_DOC, default_fp=FP_A, server="https://images.linuxcontainers.org",
                 gpus={"llm": GpuLocked(pci="0000:41:00.0", vendor_id="10de", product_id="2335")})
    inst = g["instance:llm"]
    assert inst.spec["image"] == {"fingerprint": FP_A, "server": "https://images.linuxcontainers.org",
                                  "remote": "images"}
    assert inst.spec["type"] == "container"
    assert inst.spec["profiles"] == ["default", "nvidia-compute"]
    assert inst.spec["config"] == {"security.nesting": "true", "limits.memory": "8GiB", "limits.cpu": "4",
                                   "security.protection.delete": "true"}
    assert inst.spec["devices"] == {
        "tmp": {"type": "disk", "source": "/srv", "path": "/srv"},
        "eth0": {"type": "nic", "network": "net-ai", "name": "eth0", "ipv4.address": "10.120.3.10"},
        "ollama-models": {"type": "disk", "pool": "default", "source": "ollama-models", "path": "/root/.ollama"},
        "gpu": {"type": "gpu", "gputype": "physical", "pci": "0000:41:00.0"},
    }
    assert inst.protected
    assert g["volume:ai/ollama-models"].spec == {"pool": "default", "config": {"size": "20GiB"}}


def test_protection_inherits_machine_then_domain():
    doc = two_domains()  # alpha: ephemeral domain; alpha-db: ephemeral false; beta: ephemeral domain
    g = graph_of(doc)
    db = g["instance:alpha-db"]
    assert db.protected and db.spec["config"]["security.protection.delete"] == "true"
    assert not g["instance:alpha-web"].protected
    assert "security.protection.delete" not in g["instance:alpha-web"].spec["config"]
    doc["domains"]["beta"]["ephemeral"] = False
    assert graph_of(doc)["instance:beta-app"].protected


def test_vm_and_missing_pins():
    doc = two_domains()
    doc["domains"]["beta"]["machines"]["beta-app"]["type"] = "vm"
    infra = make_infra(doc)
    lock = make_lock(infra)
    assert build_units(infra, lock)["instance:beta-app"].spec["type"] == "virtual-machine"
    images = {k: v for k, v in lock.images.items() if "virtual-machine" not in k}
    with pytest.raises(StaleLock, match="not pinned"):
        build_units(infra, msgspec.structs.replace(lock, images=images))
    with pytest.raises(StaleLock, match="GPU"):
        gi = make_infra(GPU_DOC)
        build_units(gi, msgspec.structs.replace(make_lock(gi), gpus={}))


def test_undeclared_profile_is_an_error():
    doc = two_domains()
    doc["domains"]["beta"]["machines"]["beta-app"]["profiles"] = ["default", "nope"]
    with pytest.raises(GraphError, match="profile beta/nope"):
        graph_of(doc)


# -- keys -------------------------------------------------------------------------------------


def keys(g):
    return {u.uid: u.key for u in g}


def test_keys_are_deterministic_and_ordered_independently():
    doc = two_domains()
    a = keys(graph_of(doc))
    # same model, keys of every mapping shuffled
    shuffled = dict(doc)
    shuffled["domains"] = dict(reversed(list(doc["domains"].items())))
    b = keys(graph_of(shuffled))
    assert a == b
    assert all(k.startswith("blake3:") and len(k) == 71 for k in a.values())


def test_one_config_change_changes_one_key():
    doc = two_domains()
    before = keys(graph_of(doc))
    doc["domains"]["alpha"]["machines"]["alpha-web"]["config"]["limits.cpu"] = 2
    after = keys(graph_of(doc))
    assert {u for u in before if before[u] != after[u]} == {"instance:alpha-web"}


def test_image_pin_change_changes_only_that_instance_and_its_identity():
    infra = make_infra(two_domains())
    lock = make_lock(infra)
    g1 = build_units(infra, lock)
    g2 = build_units(infra, with_fingerprint(lock, "local:busybox", FP_B))
    changed = {u.uid for u in g1 if u.key != g2[u.uid].key}
    assert changed == {"instance:alpha-web", "instance:alpha-db", "instance:beta-app"}
    assert g2["instance:alpha-web"].identity["fingerprint"] == FP_B


def test_dependency_changes_that_do_not_reapply():
    """Profile, bridge and volume changes are applied to those objects; Incus propagates them."""
    doc = GPU_DOC
    g1 = graph_of(doc)
    import copy
    d2 = copy.deepcopy(doc)
    d2["domains"]["ai"]["profiles"]["nvidia-compute"]["config"]["nvidia.runtime"] = False
    d2["domains"]["ai"]["subnet_id"] = 4
    d2["domains"]["ai"]["machines"]["llm"]["ip"] = "10.120.4.10"
    d2["domains"]["ai"]["machines"]["llm"]["storage_volumes"]["ollama-models"]["size"] = "30GiB"
    g2 = graph_of(d2)
    changed = {u.uid for u in g1 if u.key != g2[u.uid].key}
    # llm changes for its own ip only; ui (same profiles? no: default only) does not change at all
    assert changed == {"network:ai", "profile:ai/nvidia-compute", "volume:ai/ollama-models", "instance:llm"}
    assert g1["instance:ui"].key == g2["instance:ui"].key


def test_key_deps_force_reapply_downstream():
    base = Unit(kind="instance", name="m", project="d", object="m", spec={"image": "x"})
    role = Unit(kind="profile", name="d/role", project="d", object="role", spec={"files": "y"},
                key_deps=("instance:m",), after=("instance:m",))
    g1 = build_graph([base, role])
    g2 = build_graph([msgspec.structs.replace(base, spec={"image": "z"}), role])
    assert g1["profile:d/role"].key != g2["profile:d/role"].key
    deps = {"instance:m": g1["instance:m"].key}
    assert g1["profile:d/role"].key == unit_key("profile", "d/role", {"files": "y"}, deps)


def test_scheme_constant_is_in_the_key():
    assert KEY_SCHEME.startswith(b"anklume-unit-")
    assert unit_key("a", "b", {}) != unit_key("a", "c", {}) != unit_key("x", "b", {})


def test_cycle_names_the_whole_path():
    a = Unit(kind="project", name="a", project="default", object="a", spec={}, after=("project:c",))
    b = Unit(kind="project", name="b", project="default", object="b", spec={}, after=("project:a",))
    c = Unit(kind="project", name="c", project="default", object="c", spec={}, after=("project:b",))
    with pytest.raises(GraphError, match=r"project:a -> project:c -> project:b -> project:a"):
        topological([a, b, c])


def test_topological_respects_dependencies_whatever_the_input_order():
    g = graph_of(GPU_DOC)
    units = list(g)
    rng = random.Random(7)
    for _ in range(5):
        rng.shuffle(units)
        order = [u.uid for u in topological(units)]
        for u in units:
            for dep in u.after:
                assert order.index(dep) < order.index(u.uid)

"""Without a lock, the tree is the original generator's (AnKLuMe v1 at b859608), byte for byte.

- golden: the sha256 of the 14 files it wrote for examples/pro-workstation (anklume-v1.md 2b);
- snapshots: every file of every v1 example (one snapshot per file, as hexdoc does).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from anklume.render.managed import MANAGED_NOTICE, V1_NOTICE
from anklume.render.tree import render_tree
from anklume.render.write import apply_tree, diff_tree

from .conftest import V1_EXAMPLES, load_example, load_text

#: ``sha256sum`` of the files the original wrote for examples/pro-workstation (anklume-v1.md 2b).
PRO_WORKSTATION_SHA256 = {
    "group_vars/admin.yml": "726e2e0aa3a7e42171569a0f290d52c790a19e5021a904f1fc18280fa125ab7f",
    "group_vars/all.yml": "100c2b27486d3ec11ac06de7d962ecfe3ed55ee93a04d56a115bdec3c20467bc",
    "group_vars/homelab.yml": "3f51a57ee09b9ab0517f8d89b248b42056cc14edcdbbde4fb186f2b4a619b947",
    "group_vars/perso.yml": "cca7a1d221341b30528c8a409ff067d3596494a9708c4a68c3724c31793a19a8",
    "group_vars/pro.yml": "9f0cdda33ee16f1250bbf4fee0df2a8d08ff00cbc24c73152bc758e7e2ff613b",
    "host_vars/pw-admin.yml": "80e069b043f6b2e776d518f5df2511813f661f1834762bcdc143771ebad47edf",
    "host_vars/pw-dev.yml": "f1759d72aa808d42ae806be04a69ae25d9ed19634243dc441f323c589888d1ad",
    "host_vars/pw-llm.yml": "e3e8c9ea4ae6e6cd2f584e174dca4a8c6e4b37dad6ddc5df9737199bcb3d6ea8",
    "host_vars/pw-perso.yml": "0d4d284295bb77cac6c2b1d3c614fd6f17de7ca6cb2461f2f16e271bc1f2b348",
    "host_vars/pw-webui.yml": "fed31adfab2fa81c3fa15a8cc37c7b519df6ee18c14fa75b56adbf801eac08bb",
    "inventory/admin.yml": "f08fe59d4d4ab569b330a10a4867c84b626d222db23487ef5d330e142295b4a6",
    "inventory/homelab.yml": "367c475e17c09f3fe465d18bbd4116e25825eedc2fabbb19b21522084cec8268",
    "inventory/perso.yml": "cb99c5f4194927fc2c9ae9736d1041212a3c9708ade38112aa0a6d63bf874d4e",
    "inventory/pro.yml": "191098e62d0db089482d72f22928fe4f29451700f7eeb2bc16ed1c1a5a9d4484",
}


def build_v1(name: str, root: Path) -> dict[str, bytes]:
    """Render ``name`` without a lock into the empty folder ``root``; relative path -> bytes."""
    apply_tree(diff_tree(root, render_tree(load_example(name), None)))
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_pro_workstation_is_byte_identical_to_the_original(tmp_path):
    files = build_v1("pro-workstation", tmp_path)
    assert sorted(files) == sorted(PRO_WORKSTATION_SHA256)
    notice, v1_notice = MANAGED_NOTICE.encode(), V1_NOTICE.encode()
    for rel, data in files.items():
        assert data.count(notice) == 1
        as_v1 = data.replace(notice, v1_notice)
        assert hashlib.sha256(as_v1).hexdigest() == PRO_WORKSTATION_SHA256[rel], rel


def test_file_order_is_the_originals():
    tree = render_tree(load_example("pro-workstation"), None)
    assert list(tree)[:4] == ["group_vars/all.yml", "inventory/admin.yml", "group_vars/admin.yml",
                              "host_vars/pw-admin.yml"]


def test_defaults_and_omissions():
    """No default image, no connection/user, no IP, no machines, profiles not emitted when empty."""
    infra = load_text("""
project_name: p
global: {}
domains:
  empty: {subnet_id: 1, profiles: {}}
  lab:
    subnet_id: 2
    ephemeral: true
    machines:
      m1: {}
      m2: {ephemeral: false, gpu: false, profiles: [], type: vm, os_image: "images:alpine/3.20"}
""")
    tree = render_tree(infra, None)
    assert tree["group_vars/all.yml"] == "project_name: p\nbase_subnet: '10.100'\n"
    assert tree["inventory/empty.yml"] == "all:\n  children:\n    empty:\n      hosts:\n"
    assert tree["inventory/lab.yml"] == "all:\n  children:\n    lab:\n      hosts:\n        m1:\n        m2:\n"
    assert "incus_profiles" not in tree["group_vars/empty.yml"]
    assert tree["host_vars/m1.yml"] == (
        "instance_name: m1\ninstance_type: lxc\ninstance_description: ''\ninstance_domain: lab\n"
        "instance_ephemeral: true\n")
    assert tree["host_vars/m2.yml"] == (
        "instance_name: m2\ninstance_type: vm\ninstance_description: ''\ninstance_domain: lab\n"
        "instance_ephemeral: false\ninstance_os_image: images:alpine/3.20\ninstance_gpu: false\n"
        "instance_profiles: []\n")


def test_machine_keys_in_the_originals_order():
    infra = load_text("""
project_name: p
global: {default_os_image: "images:debian/13"}
domains:
  d:
    subnet_id: 0
    profiles: {gpu: {devices: {gpu: {type: gpu}}}}
    machines:
      m:
        roles: [base_system]
        storage_volumes: {data: {path: /srv, pool: default, size: 10GiB}}
        devices: {shared: {type: disk, source: /opt, path: /opt}}
        config: {limits.cpu: 2, security.nesting: "true"}
        profiles: [default, gpu]
        gpu: true
        ip: 10.100.0.5
        ephemeral: true
        description: "Café — GPU"
        type: lxc
""")
    body = render_tree(infra, None)["host_vars/m.yml"]
    keys = [line.split(":")[0] for line in body.splitlines() if not line.startswith(" ")]
    assert keys == ["instance_name", "instance_type", "instance_description", "instance_domain",
                    "instance_ephemeral", "instance_os_image", "instance_ip", "instance_gpu", "instance_profiles",
                    "instance_config", "instance_devices", "instance_storage_volumes", "instance_roles"]
    assert "instance_description: Café — GPU\n" in body
    assert "  limits.cpu: 2\n  security.nesting: 'true'\n" in body


def test_a_domain_named_all_is_refused_at_load():
    """It would overwrite group_vars/all.yml; the model refuses it before any render."""
    from anklume.errors import InvalidInfra
    with pytest.raises(InvalidInfra, match="1 problem") as err:
        load_text("project_name: p\nglobal: {}\ndomains: {all: {subnet_id: 1}}\n")
    assert err.value.problems[0].path == "domains.all"


# -- snapshots: one per file (ids have '/' replaced: syrupy strips it) -------------------------


def _example_files() -> list[tuple[str, str]]:
    return [(name, rel) for name in V1_EXAMPLES for rel in render_tree(load_example(name), None)]


@pytest.fixture(scope="module")
def v1_trees(tmp_path_factory) -> dict[str, dict[str, bytes]]:
    return {name: build_v1(name, tmp_path_factory.mktemp(name)) for name in V1_EXAMPLES}


@pytest.mark.parametrize("name", V1_EXAMPLES)
def test_v1_example_file_list(name, v1_trees, snapshot):
    assert sorted(v1_trees[name]) == snapshot


@pytest.mark.parametrize(("name", "rel"), _example_files(),
                         ids=[f"{n}__{r.replace('/', '__')}" for n, r in _example_files()])
def test_v1_example_file(name, rel, v1_trees, file_snapshot):
    assert v1_trees[name][rel] == file_snapshot

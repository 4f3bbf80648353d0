"""``anklume lock`` on a cluster, end to end through the CLI: examples/gpu-workstation with
targets, the loopback mirror of the recorded data, and an Incus API test double serving a real
3-member cluster's recorded answers (tests/fixtures/cluster); the H200's recorded inventory is
given per member (``--gpu-inventory m2=FILE``)."""

from __future__ import annotations

import pytest

from anklume.lock.codec import decode_lock
from tests.resolve.loopback import FakeIncus
from tests.support.cluster_recorded import cluster_routes
from tests.support.lockfiles import H200_INVENTORY, H200_SMI, LOCKFILES

GPU_M2 = ("--gpu-inventory", f"m2={H200_INVENTORY}", "--nvidia-smi", f"m2={H200_SMI}")


@pytest.fixture
def cluster(tmp_path):
    incus = FakeIncus(tmp_path / "incus.socket", cluster_routes())
    yield incus
    incus.stop()


@pytest.fixture
def targeted(project):
    """The example with its `pro` domain on m3."""
    infra = project.root / "infra.yml"
    infra.write_text(infra.read_text().replace('    subnet_id: 2\n', '    subnet_id: 2\n    target: m3\n'))
    return project


def placement(project) -> dict[str, tuple[str, str]]:
    lock = decode_lock(project.lock_bytes)
    return {m: (p.locked.member, p.locked.reason) for m, p in lock.cluster.placement.items()}


def test_lock_places_every_machine_and_says_why(targeted, cluster):
    result = targeted("lock", "--incus", cluster.socket, *GPU_M2)
    assert result.exit_code == 0, result.output
    assert placement(targeted) == {
        "gw-admin": ("m1", "spread: least loaded (1 of 2 threads, 0.0 of 24.0 GiB declared)"),
        "gw-dev": ("m3", "target of domain pro"),
        "gw-llm": ("m2", "GPU 0000:00:06.0 (NVIDIA H200) free on m2"),
        "gw-perso": ("m1", "spread: least loaded (2 of 2 threads, 0.0 of 24.0 GiB declared)"),
        "gw-webui": ("m2", "spread: least loaded (2 of 2 threads, 0.0 of 24.0 GiB declared)"),
    }
    lock = decode_lock(targeted.lock_bytes)
    assert lock.gpus["gw-llm"].member == "m2" and lock.gpus["gw-llm"].locked.vram_mib == 143771
    assert "+ placement gw-dev: m3 (target of domain pro)" in result.output
    assert "5 machine(s) placed on 3 cluster member(s)" in result.output
    assert cluster.requests == ["/1.0", "/1.0/cluster", "/1.0/cluster/members?recursion=1",
                                "/1.0/resources?target=m1", "/1.0/resources?target=m2", "/1.0/resources?target=m3"]


def test_relock_asks_nothing_even_with_the_endpoint_named(targeted, cluster):
    assert targeted("lock", "--incus", cluster.socket, *GPU_M2).exit_code == 0
    data = targeted.lock_bytes
    cluster.requests.clear()
    result = targeted("lock", "--incus", cluster.socket)
    assert result.exit_code == 0 and "up to date" in result.output
    assert cluster.requests == [] and targeted.lock_bytes == data
    cluster.stop()
    assert targeted("lock", "--check").exit_code == 0  # offline


def test_a_new_machine_moves_no_other(targeted, cluster):
    assert targeted("lock", "--incus", cluster.socket, *GPU_M2).exit_code == 0
    before = placement(targeted)
    infra = targeted.root / "infra.yml"
    infra.write_text(infra.read_text().replace("      gw-perso:\n", '      gw-new:\n        ip: "10.100.1.12"\n'
                                                                    "      gw-perso:\n"))
    result = targeted("lock", env={"ANKLUME_INCUS": cluster.socket})
    assert result.exit_code == 0, result.output
    after = placement(targeted)
    assert {m: after[m] for m in before} == before
    assert result.output.count("placement") == 1 and "+ placement gw-new: m3" not in result.output


def test_update_one_machine_re_places_it_only(targeted, cluster):
    assert targeted("lock", "--incus", cluster.socket, *GPU_M2).exit_code == 0
    before = placement(targeted)
    infra = targeted.root / "infra.yml"
    infra.write_text(infra.read_text().replace("target: m3", "target: m1"))
    result = targeted("lock", "--incus", cluster.socket, "--update", "gw-perso")
    assert result.exit_code == 0, result.output
    after = placement(targeted)
    assert after["gw-dev"] == ("m1", "target of domain pro")
    assert after["gw-admin"] == before["gw-admin"] and after["gw-llm"] == before["gw-llm"]
    assert "~ placement gw-dev: m3 -> m1 (target of domain pro)" in result.output
    result = targeted("lock", "--update", "gw-nope")
    assert result.exit_code == 1 and "no pin named gw-nope" in result.output and "gw-perso" in result.output


def test_offline_names_the_machine_to_place(targeted, cluster):
    assert targeted("lock", "--incus", cluster.socket, *GPU_M2).exit_code == 0
    data = targeted.lock_bytes
    infra = targeted.root / "infra.yml"
    infra.write_text(infra.read_text().replace("      gw-perso:\n", '      gw-new:\n        ip: "10.100.1.12"\n'
                                                                    "      gw-perso:\n"))
    result = targeted("lock", "--offline")
    assert result.exit_code == 1
    assert "infra.yml: placing gw-new in the cluster: its members' facts are needed" in result.output
    assert targeted.lock_bytes == data


@pytest.mark.parametrize(("edit", "words"), [
    (("target: m3", "target: m9"), "infra.yml: domains.pro.target: 'm9' is not a member of the cluster "
                                   "(its members: m1, m2, m3)"),
    (("target: m3", "target: -bad"), "invalid cluster member name '-bad'"),
])
def test_a_bad_member_is_a_clean_error_and_writes_nothing(targeted, cluster, edit, words):
    infra = targeted.root / "infra.yml"
    infra.write_text(infra.read_text().replace(*edit))
    result = targeted("lock", "--incus", cluster.socket, *GPU_M2)
    assert result.exit_code == 1 and words in result.output and "Traceback" not in result.output
    assert not (targeted.root / "anklume.lock").exists()


def test_targets_on_a_single_server(targeted, tmp_path):
    single = FakeIncus(tmp_path / "single.socket", {"/1.0/cluster": {"enabled": False, "server_name": ""}})
    try:
        result = targeted("lock", "--incus", single.socket)
    finally:
        single.stop()
    assert result.exit_code == 1
    assert "domains.pro.target: names the cluster member 'm3' but the Incus server is not part of a cluster" \
        in result.output


def test_a_single_server_lock_keeps_its_bytes_when_an_endpoint_is_named(project, tmp_path):
    single = FakeIncus(tmp_path / "single.socket", {"/1.0/cluster": {"enabled": False, "server_name": ""}})
    try:
        result = project("lock", "--incus", single.socket, "--gpu-inventory", str(H200_INVENTORY),
                         "--nvidia-smi", str(H200_SMI))
    finally:
        single.stop()
    assert result.exit_code == 0, result.output
    assert project.lock_bytes == (LOCKFILES / "gpu-workstation.lock").read_bytes()


def test_a_missing_member_file_is_a_usage_error(targeted, cluster):
    result = targeted("lock", "--incus", cluster.socket, "--gpu-inventory", "m2=/no/such/file")
    assert result.exit_code == 3 and "/no/such/file: no such file" in result.output


@pytest.mark.parametrize(("args", "words"), [
    (("--gpu-inventory", f"m2={H200_INVENTORY}", "--gpu-inventory", f"m2={H200_INVENTORY}"),
     "--gpu-inventory: member m2 is given twice"),
    (("--gpu-inventory", str(H200_INVENTORY), "--gpu-inventory", str(H200_INVENTORY)),
     "--gpu-inventory: two files for a single server"),
    (("--gpu-inventory", f"m9={H200_INVENTORY}"), "'m9' is not a member of the cluster"),
    (("--nvidia-smi", str(H200_SMI), "--gpu-inventory", f"m2={H200_INVENTORY}"), "in a cluster, say whose"),
])
def test_bad_recorded_files_are_clean_errors(targeted, cluster, args, words):
    result = targeted("lock", "--incus", cluster.socket, *args)
    assert result.exit_code == 1, result.output
    assert words in result.output and "Traceback" not in result.output
    assert not (targeted.root / "anklume.lock").exists()


def test_member_file_forms(tmp_path, monkeypatch):
    from anklume.actions.lock import recorded_files

    monkeypatch.chdir(tmp_path)
    (tmp_path / "m2=odd.json").write_text("[]")
    (tmp_path / "x.json").write_text("[]")
    got = recorded_files(["m2=odd.json", "m3=x.json"], ["m3=x.json"])
    assert got.inventory == tmp_path.joinpath("m2=odd.json").relative_to(tmp_path)  # an existing file is a file
    assert got.member_inventories == {"m3": tmp_path.joinpath("x.json").relative_to(tmp_path)}
    assert list(got.member_smi) == ["m3"] and got.smi is None and got.names_members

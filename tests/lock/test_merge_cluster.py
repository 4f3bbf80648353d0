"""Merging two branches' cluster locks (anklume/lock/merge.py): placements are pins named by
their machine, members are the union (facts never conflict), and `lock --diff` / the diff
driver show both.  Locks are made with a resolver test double serving a real cluster's recorded
answers (tests/support/cluster_recorded.py)."""

from __future__ import annotations

import msgspec
import pytest
from click.testing import CliRunner

from anklume.cli import main
from anklume.lock.assemble import Update, lock_infra
from anklume.lock.codec import encode_lock
from anklume.lock.merge import merge_locks
from anklume.lock.show import pin_changes, textconv_lines
from anklume.model.load import load_infra
from tests.support.cluster_recorded import RecordedCluster, recorded_facts

BASE = """\
project_name: p
global: {}
domains:
  pro:
    subnet_id: 1
    machines:
      web: {target: m2}
      db: {}
"""


def infra(extra: str = ""):
    return load_infra((BASE + extra).encode())


class NoIncus(RecordedCluster):
    def cluster(self):
        raise AssertionError("asked Incus about the cluster")


@pytest.fixture
def base():
    return lock_infra(infra(), None, RecordedCluster())


def test_machines_added_on_each_side_come_from_their_side_without_asking(base):
    ours = lock_infra(infra("      x: {}\n"), base, RecordedCluster())
    theirs = lock_infra(infra("      y: {}\n"), base, RecordedCluster())
    merged_infra = infra("      x: {}\n      y: {}\n")
    merged = merge_locks(merged_infra, ours, theirs, base)
    assert merged.conflicts == [] and merged.unresolved == []
    sources = {p.name: p.source for p in merged.picks if p.group == "placement"}
    assert sources == {"db": "both", "web": "both", "x": "ours", "y": "theirs"}
    new = lock_infra(merged_infra, merged.lock, NoIncus())
    assert new.cluster.placement["x"] == ours.cluster.placement["x"]
    assert new.cluster.placement["y"] == theirs.cluster.placement["y"]


def test_one_machine_placed_differently_on_both_sides_is_a_conflict(base):
    ours = lock_infra(infra("      z: {}\n"), base, RecordedCluster())
    busy = recorded_facts(offline=["m3"])  # on their side m3 was down when z was placed
    theirs = lock_infra(infra("      z: {}\n"), base, RecordedCluster(facts=busy))
    assert ours.cluster.placement["z"].locked.member != theirs.cluster.placement["z"].locked.member
    merged = merge_locks(infra("      z: {}\n"), ours, theirs, base)
    assert [c.line() for c in merged.conflicts] == [
        "placement z: ours m3 (spread: least loaded (1 of 2 threads, 0.0 of 24.0 GiB declared)), "
        "theirs m1 (spread: least loaded (2 of 2 threads, 0.0 of 24.0 GiB declared))"]
    assert merged.conflicts[0].names == ("z",)
    kept = merge_locks(infra("      z: {}\n"), ours, theirs, base, keep_theirs=frozenset({"z"}))
    assert kept.conflicts == [] and kept.lock.cluster.placement["z"] == theirs.cluster.placement["z"]
    # members: m3, down on their side, kept the facts the base lock records: nothing to merge
    assert theirs.cluster.members == ours.cluster.members == base.cluster.members
    assert not any(p.group == "members" for p in kept.picks)
    again = merge_locks(infra("      z: {}\n"), ours, theirs, base, update=Update(names=frozenset({"z"})))
    assert again.conflicts == [] and "placement z" in again.unresolved


def test_a_member_read_online_on_one_side_only_wins():
    down = recorded_facts(offline=["m3"])
    base = lock_infra(infra(), None, RecordedCluster(facts=down))  # locked while m3 was down
    assert base.cluster.members["m3"].cpu_threads is None
    ours = lock_infra(infra("      z: {}\n"), base, RecordedCluster())  # m3 back: its facts recorded
    theirs = lock_infra(infra("      y: {}\n"), base, RecordedCluster(facts=down))
    assert theirs.cluster.members["m3"] == base.cluster.members["m3"]
    merged = merge_locks(infra("      y: {}\n      z: {}\n"), ours, theirs, base)
    assert merged.lock.cluster.members["m3"] == ours.cluster.members["m3"]
    assert any(p.group == "members" and p.source == "ours (read online on that side)" for p in merged.picks)


def test_member_facts_changed_on_one_side_only_are_taken(base):
    fresh = recorded_facts(gpu_members=["m3"])  # m3 re-read with other facts
    theirs = lock_infra(infra("      y: {}\n"), base, RecordedCluster(facts=fresh))
    merged = merge_locks(infra("      y: {}\n"), base, theirs, base)
    assert merged.lock.cluster.members["m3"].cpu_threads == 16
    assert ("members", "m3", "theirs (changed on that side only)") in {(p.group, p.name, p.source)
                                                                      for p in merged.picks}


def test_a_gpu_pin_from_the_other_side_than_its_placement_is_re_placed():
    text = BASE.replace("db: {}", "db: {gpu: true}")
    gpu_infra = load_infra(text.encode())
    ours = lock_infra(gpu_infra, None, RecordedCluster(gpu_members=["m1", "m3"]))
    theirs = lock_infra(gpu_infra, None, RecordedCluster(gpu_members=["m3"]))
    assert (ours.gpus["db"].member, theirs.gpus["db"].member) == ("m1", "m3")
    merged = merge_locks(gpu_infra, ours, theirs, None, keep_ours=frozenset({"db"}))
    assert merged.conflicts == [] and merged.lock.gpus["db"].member == "m1"
    mixed = msgspec.structs.replace(theirs, cluster=ours.cluster)  # a hand-made lock: pin and placement disagree
    merged = merge_locks(gpu_infra, mixed, mixed, None)
    assert "db" not in merged.lock.gpus and "gpu db" in merged.unresolved


def test_single_server_sides_have_no_cluster_section():
    plain = load_infra(BASE.replace("{target: m2}", "{}").encode())
    lock = lock_infra(plain, None, NoIncus())
    assert merge_locks(plain, lock, lock).lock.cluster is None


def test_placement_dropped_when_infra_asks_for_another_member(base):
    merged = merge_locks(load_infra(BASE.replace("target: m2", "target: m3").encode()), base, base, base)
    assert [(p.group, p.name, p.why) for p in merged.dropped] == [
        ("placement", "web", "infra.yml asks for another one now")]
    assert "placement web" in merged.unresolved


def test_show_lines_of_a_cluster_lock(base):
    ours = lock_infra(infra("      z: {}\n"), base, RecordedCluster(gpu_members=["m3"]))
    lines = [c.line() for c in pin_changes(base, ours)]
    assert lines == ["~ m3: x86_64, 2 threads, 24.0 GiB -> x86_64, 16 threads, 128.0 GiB",
                     "+ z: m3 (spread: least loaded (1 of 16 threads, 0.0 of 128.0 GiB declared))"]
    assert list(textconv_lines(base))[1:] == [
        "image images:debian/13: local 000000000000",
        "member m1: x86_64, 2 threads, 24.0 GiB",
        "member m2: x86_64, 2 threads, 24.0 GiB",
        "member m3: x86_64, 2 threads, 24.0 GiB",
        "placement db: m1 (spread: least loaded (1 of 2 threads, 0.0 of 24.0 GiB declared))",
        "placement web: m2 (target of machine web)"]


def test_lock_merges_a_conflicted_cluster_lock_through_the_cli(tmp_path, base):
    """Conflict markers written by hand around both sides: `anklume lock` merges them offline."""
    ours = lock_infra(infra("      x: {}\n"), base, RecordedCluster())
    theirs = lock_infra(infra("      y: {}\n"), base, RecordedCluster())
    (tmp_path / "infra.yml").write_text(BASE + "      x: {}\n      y: {}\n")
    (tmp_path / "anklume.lock").write_bytes(b"<<<<<<< ours\n" + encode_lock(ours) + b"=======\n" + encode_lock(theirs)
                                            + b">>>>>>> theirs\n")
    result = CliRunner().invoke(main, ["lock", "-f", str(tmp_path / "infra.yml"), "--offline"],
                                env={"ANKLUME_CACHE_DIR": str(tmp_path / "cache")})
    assert result.exit_code == 0, result.output
    assert "ours    placement x: " in result.output and "theirs  placement y: " in result.output
    result = CliRunner().invoke(main, ["lock", "-f", str(tmp_path / "infra.yml"), "--diff", str(tmp_path / "old"),
                                       "--json"])
    assert result.exit_code == 1  # no such file: --diff reads a file or a revision


def test_lock_diff_of_two_cluster_locks(tmp_path, base, snapshot):
    """A machine added and one re-targeted, a member re-read: the pins `lock --diff` prints."""
    new = lock_infra(load_infra((BASE.replace("target: m2", "target: m3") + "      z: {}\n").encode()), base,
                     RecordedCluster(gpu_members=["m1"]))
    (tmp_path / "anklume.lock").write_bytes(encode_lock(new))
    (tmp_path / "old.lock").write_bytes(encode_lock(base))
    result = CliRunner().invoke(main, ["lock", "-f", str(tmp_path / "infra.yml"), "--diff", str(tmp_path / "old.lock")])
    assert result.exit_code == 0, result.output
    assert result.output.replace(str(tmp_path), "TMP") == snapshot

"""``lock_infra`` on a cluster: when Incus is asked at all, what the lock records, ``--update``,
``--offline``, the describe lines.  The resolver is a test double serving a real cluster's
recorded answers (tests/support/cluster_recorded.py)."""

from __future__ import annotations

import pytest

from anklume.errors import OfflineMiss, ResolveError
from anklume.lock.assemble import Update, describe_changes, known_pin_names, lock_infra
from anklume.lock.codec import decode_lock, encode_lock
from anklume.lock.schema import LOCK_VERSION, Lock
from anklume.model.load import load_infra
from tests.support.cluster_recorded import RecordedCluster, h200_cards

INFRA = """\
project_name: p
global: {}
domains:
  pro:
    subnet_id: 1
    machines:
      web: {target: m2}
      db: {}
      cache: {}
"""


def infra(text: str = INFRA):
    return load_infra(text.encode())


class NoIncus(RecordedCluster):
    """Fails the test if the cluster or a member's GPUs are asked for."""

    def cluster(self):
        raise AssertionError("asked Incus about the cluster")

    def gpu_inventory(self, member=None):
        if member is not None:
            raise AssertionError("asked a member's GPUs")
        return []


class Offline(RecordedCluster):
    def cluster(self):
        raise OfflineMiss("its members' facts are needed and --offline forbids asking Incus",
                          "run `anklume lock` without --offline")


def test_an_infra_without_targets_never_asks_and_has_no_cluster_section():
    lock = lock_infra(infra(INFRA.replace("{target: m2}", "{}")), None, NoIncus())
    assert lock.cluster is None and b'"cluster"' not in encode_lock(lock)


def test_an_explicit_endpoint_asks_and_a_single_server_keeps_todays_lock():
    plain = infra(INFRA.replace("{target: m2}", "{}"))
    single = RecordedCluster(clustered=False)
    lock = lock_infra(plain, None, single, detect_cluster=True)
    assert single.asked == ["cluster"] and lock.cluster is None
    assert encode_lock(lock) == encode_lock(lock_infra(plain, None, NoIncus()))


def test_targets_place_every_machine_and_the_lock_reads_back():
    resolver = RecordedCluster()
    lock = lock_infra(infra(), None, resolver)
    assert resolver.asked == ["cluster"]
    placement = {m: (p.locked.member, p.locked.reason) for m, p in lock.cluster.placement.items()}
    assert placement == {"cache": ("m1", "spread: least loaded (1 of 2 threads, 0.0 of 24.0 GiB declared)"),
                         "db": ("m3", "spread: least loaded (1 of 2 threads, 0.0 of 24.0 GiB declared)"),
                         "web": ("m2", "target of machine web")}
    assert sorted(lock.cluster.members) == ["m1", "m2", "m3"]
    assert lock.cluster.members["m1"].cpu_threads == 2 and lock.cluster.members["m1"].memory_bytes == 24 * 2**30
    data = encode_lock(lock)
    assert decode_lock(data) == lock


def test_an_unchanged_infra_keeps_the_section_byte_for_byte_without_asking():
    old = lock_infra(infra(), None, RecordedCluster())
    again = lock_infra(infra(), old, NoIncus())
    assert encode_lock(again) == encode_lock(old)
    # a machine removed: its placement goes, the others and the members stay, still without asking
    fewer = lock_infra(infra(INFRA.replace("      cache: {}\n", "")), old, NoIncus())
    assert fewer.cluster.members == old.cluster.members
    assert fewer.cluster.placement == {k: v for k, v in old.cluster.placement.items() if k != "cache"}


def test_a_new_machine_asks_and_moves_nothing():
    old = lock_infra(infra(), None, RecordedCluster())
    resolver = RecordedCluster(gpu_members=["m1"])  # m1's facts changed since (the H200 host's)
    new = lock_infra(infra(INFRA + "      api: {}\n"), old, resolver)
    assert resolver.asked == ["cluster"]
    for machine, placed in old.cluster.placement.items():
        assert new.cluster.placement[machine] == placed
    assert new.cluster.placement["api"].locked.member == "m1"
    assert new.cluster.members["m1"].cpu_threads == 16  # the fresh facts are recorded
    assert describe_changes(old, new) == [
        "~ member m1: x86_64, 2 threads, 24.0 GiB -> x86_64, 16 threads, 128.0 GiB",
        "+ placement api: m1 (spread: least loaded (2 of 16 threads, 0.0 of 128.0 GiB declared))"]


def test_update_a_machine_re_places_it_only():
    old = lock_infra(infra(), None, RecordedCluster())
    assert "db" in known_pin_names(old, infra()) and "web" in known_pin_names(old, infra())
    changed = infra(INFRA.replace("web: {target: m2}", "web: {target: m3}"))
    new = lock_infra(changed, old, RecordedCluster(), Update(names=frozenset({"db"})))
    assert new.cluster.placement["cache"] == old.cluster.placement["cache"]
    assert describe_changes(old, new) == [
        "~ placement db: m3 -> m2 (spread: least loaded (1 of 2 threads, 0.0 of 24.0 GiB declared))",
        "~ placement web: m2 -> m3 (target of machine web)"]


def test_update_everything_re_reads_the_cluster():
    old = lock_infra(infra(), None, RecordedCluster())
    resolver = RecordedCluster()
    assert encode_lock(lock_infra(infra(), old, resolver, Update(all=True))) == encode_lock(old)
    assert resolver.asked == ["cluster"]


def test_offline_keeps_what_it_can_and_names_what_needs_the_cluster():
    old = lock_infra(infra(), None, RecordedCluster())
    assert encode_lock(lock_infra(infra(), old, Offline())) == encode_lock(old)
    with pytest.raises(OfflineMiss) as err:
        lock_infra(infra(INFRA + "      api: {}\n"), old, Offline())
    assert err.value.message == ("infra.yml: placing api in the cluster: its members' facts are needed "
                                 "and --offline forbids asking Incus")


def test_offline_places_a_new_machine_whose_target_the_lock_lists():
    old = lock_infra(infra(), None, RecordedCluster())
    resolver = Offline()
    new = lock_infra(infra(INFRA + "      api: {target: m3}\n"), old, resolver)
    assert resolver.asked == []
    assert new.cluster.members == old.cluster.members
    assert {m: p for m, p in new.cluster.placement.items() if m != "api"} == old.cluster.placement
    assert (new.cluster.placement["api"].locked.member, new.cluster.placement["api"].locked.reason) == \
        ("m3", "target of machine api")
    # the same placement as online, byte for byte
    assert encode_lock(new) == encode_lock(lock_infra(infra(INFRA + "      api: {target: m3}\n"), old,
                                                      RecordedCluster()))
    # a member the lock does not list may be new: that needs the cluster
    with pytest.raises(OfflineMiss) as err:
        lock_infra(infra(INFRA + "      api: {target: m4}\n"), old, Offline())
    assert err.value.message.startswith("infra.yml: placing api in the cluster: its members' facts are needed")


def test_offline_places_a_machine_that_follows_its_volume_to_a_fixed_member():
    text = INFRA.replace("web: {target: m2}", "web: {target: m2, storage_volumes: {data: {path: /srv}}}")
    old = lock_infra(infra(text), None, RecordedCluster())
    follower = text + "      api: {storage_volumes: {data: {path: /srv}}}\n"
    new = lock_infra(infra(follower), old, Offline())
    assert (new.cluster.placement["api"].locked.member, new.cluster.placement["api"].locked.reason) == \
        ("m2", "shares volume data with web")


def test_a_member_down_while_locking_keeps_the_facts_the_lock_records():
    old = lock_infra(infra(), None, RecordedCluster())
    resolver = RecordedCluster(offline=["m3"])
    new = lock_infra(infra(INFRA + "      api: {}\n"), old, resolver)
    assert resolver.asked == ["cluster"]
    assert new.cluster.members == old.cluster.members  # no churn from the outage
    assert new.cluster.placement["api"].locked.member != "m3"  # a member down takes no new machine
    assert describe_changes(old, new) == [
        "+ placement api: m1 (spread: least loaded (2 of 2 threads, 0.0 of 24.0 GiB declared))"]
    # a member the old lock does not know is recorded as read (architecture only)
    fresh = lock_infra(infra(), None, RecordedCluster(offline=["m3"]))
    assert fresh.cluster.members["m3"].cpu_threads is None


def test_targets_on_a_server_that_is_not_a_cluster():
    with pytest.raises(ResolveError) as err:
        lock_infra(infra(), None, RecordedCluster(clustered=False))
    assert err.value.message == ("infra.yml: domains.pro.machines.web.target: names the cluster member 'm2' but the "
                                 "Incus server is not part of a cluster")


def test_a_cluster_lock_on_a_server_no_longer_clustered_becomes_a_single_server_lock():
    text = INFRA.replace("{target: m2}", "{gpu: true}")
    old = lock_infra(infra(text), None, RecordedCluster(gpu_members=["m2"]), detect_cluster=True)
    assert old.gpus["web"].member == "m2"

    class Single(RecordedCluster):
        def gpu_inventory(self, member=None):
            assert member is None
            return h200_cards()

    new = lock_infra(infra(text), old, Single(clustered=False), Update(names=frozenset({"db"})))
    assert new.cluster is None and new.gpus["web"].member is None


def test_gpu_pins_in_a_cluster_name_their_member_and_vram_is_checked_per_member():
    text = INFRA.replace("web: {target: m2}", "web: {gpu: true}").replace("db: {}", "db: {gpu: true}")
    lock = lock_infra(infra(text), None, RecordedCluster(gpu_members=["m2", "m3"]), detect_cluster=True)
    assert {m: p.member for m, p in lock.gpus.items()} == {"db": "m2", "web": "m3"}
    # the same slot on two members is two cards: no sharing warning
    warnings = []
    lock_infra(infra(text), None, RecordedCluster(gpu_members=["m2", "m3"]), detect_cluster=True,
               warn=warnings.append)
    assert warnings == []
    assert [line for line in describe_changes(None, lock) if line.startswith("+ gpu")] == ["+ gpu db: 0000:00:06.0 NVIDIA H200 on m2",
                                                "+ gpu web: 0000:00:06.0 NVIDIA H200 on m3"]


def test_known_names_of_a_single_server_lock_have_no_machines():
    plain = infra(INFRA.replace("{target: m2}", "{}"))
    assert "db" not in known_pin_names(Lock(version=LOCK_VERSION, infra_hash=""), plain)

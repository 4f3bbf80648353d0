"""A cluster's answers: the recorded replies of a real 3-member Incus 6.0.4 cluster
(tests/fixtures/cluster) through the parsers, through IncusReader (real pylxd, over a unix socket,
to an Incus API test double serving the recordings) and through ``LiveResolver.cluster()``."""

from __future__ import annotations

import json

import pytest

from anklume.backends.incus.reader import IncusReader, MemberNotReady
from anklume.errors import AnklumeError, OfflineMiss, SourceError
from anklume.lock.placement import MemberFacts
from anklume.model.load import load_infra
from anklume.resolve.cluster import parse_cluster, parse_member_resources, parse_members
from anklume.resolve.gpus import encode_inventory, encode_inventory_map
from anklume.resolve.resolver import LiveResolver
from tests.resolve.loopback import Raw
from tests.support.cluster_recorded import CLUSTER, cluster_routes, h200_cards, load
from tests.support.recorded import H200_RESOURCES, H200_SMI_CSV

GIB = 2**30
INFRA = load_infra(b"project_name: p\nglobal: {}\ndomains: {}\n")


# -- the parsers, on the recordings -----------------------------------------------------------------


def test_the_recorded_cluster_is_enabled_and_answered_by_m1():
    assert parse_cluster(load("cluster.json")) == "m1"


def test_a_standalone_server_is_no_cluster():
    assert parse_cluster(load("standalone-cluster.response.json")["metadata"]) is None


def test_the_recorded_members():
    assert parse_members(load("members-online.json")) == {
        name: MemberFacts(architecture="x86_64", status="Online") for name in ("m1", "m2", "m3")}
    offline = parse_members(load("members-m3-offline.response.json")["metadata"])
    assert offline["m3"] == MemberFacts(architecture="x86_64", status="Offline")
    assert offline["m1"].status == "Online"


@pytest.mark.parametrize("member", ["m1", "m2", "m3"])
def test_the_recorded_resources_of_each_member(member):
    assert parse_member_resources(load(f"resources-{member}.json")) == (2, 24 * GIB)


def test_the_h200_hosts_resources():
    assert parse_member_resources(json.loads(H200_RESOURCES.read_bytes())) == (16, 128 * GIB)


@pytest.mark.parametrize(("doc", "words"), [
    ({"enabled": True, "server_name": "bad name"}, "server_name 'bad name'"),
    ({"enabled": "yes"}, "not an Incus cluster description"),
    ([], "not an Incus cluster description"),
])
def test_hostile_cluster_answers(doc, words):
    with pytest.raises(SourceError, match=words):
        parse_cluster(doc)


def _member(**change):
    entry = load("members-online.json")[0]
    entry.update(change)
    return entry


@pytest.mark.parametrize(("doc", "words"), [
    ({}, "expected a list of members"),
    ([], "0 members"),
    ([_member(server_name="../etc")], "member [0]"),
    ([_member(server_name="m\n1")], "member [0]"),
    ([_member(architecture="x86 64")], "architecture"),
    ([_member(status="On\x00line")], "status"),
    ([_member(), _member()], "'m1' is listed twice"),
    ([_member(server_name=None)], "server_name"),
    ([_member()] * 1025, "1025 members"),
])
def test_hostile_member_lists(doc, words):
    with pytest.raises(SourceError) as err:
        parse_members(doc)
    assert words in err.value.message


@pytest.mark.parametrize(("change", "words"), [
    ({"cpu": {"total": 0}}, "cpu.total"),
    ({"cpu": {"total": 2**40}}, "cpu.total"),
    ({"memory": {"total": 2**61}}, "memory.total"),
    ({"memory": {"total": "24GiB"}}, "memory.total"),
    ({"cpu": None}, "cpu"),
])
def test_hostile_resources(change, words):
    doc = load("resources-m1.json") | change
    with pytest.raises(SourceError, match=words):
        parse_member_resources(doc)


# -- IncusReader against the recordings ---------------------------------------------------------------


def test_the_reader_asks_what_the_cluster_answers(fake_incus):
    incus = fake_incus(cluster_routes())
    reader = IncusReader(incus.socket)
    assert reader.cluster() == load("cluster.json")
    assert reader.cluster_members() == load("members-online.json")
    assert reader.resources(target="m2") == load("resources-m2.json")
    assert incus.requests[-3:] == ["/1.0/cluster", "/1.0/cluster/members?recursion=1", "/1.0/resources?target=m2"]


def test_a_member_that_is_down_is_not_ready_and_an_unknown_one_is_named(fake_incus):
    routes = cluster_routes(m3_offline=True) | {
        "/1.0/resources?target=m9": Raw(load("resources-unknown-member.response.json"))}
    reader = IncusReader(fake_incus(routes).socket)
    with pytest.raises(MemberNotReady) as err:
        reader.resources(target="m3")
    assert "member m3 cannot answer GET /1.0/resources?target=m3: Server isn't ready yet" in err.value.message
    with pytest.raises(SourceError, match="no cluster member named 'm9'"):
        reader.resources(target="m9")


def test_a_standalone_server_refuses_the_members_list(fake_incus):
    reader = IncusReader(fake_incus({"/1.0/cluster/members": Raw(load("standalone-members.response.json"))}).socket)
    with pytest.raises(SourceError, match="refused GET /1.0/cluster/members\\?recursion=1: Server is not clustered"):
        reader.cluster_members()


# -- LiveResolver.cluster() --------------------------------------------------------------------------


def test_live_resolver_reads_the_recorded_cluster(fake_incus, tmp_path):
    incus = fake_incus(cluster_routes())
    resolver = LiveResolver(INFRA, {}, incus=incus.socket, cache_dir=tmp_path)
    facts = resolver.cluster()
    assert facts.server_name == "m1"
    assert facts.members == {name: MemberFacts(architecture="x86_64", status="Online", cpu_threads=2,
                                               memory_bytes=24 * GIB) for name in ("m1", "m2", "m3")}
    before = len(incus.requests)
    assert resolver.gpu_inventory("m2") == []  # the resources read with the facts: not asked again
    assert len(incus.requests) == before


def test_live_resolver_records_a_member_that_is_down_with_its_architecture_only(fake_incus, tmp_path):
    resolver = LiveResolver(INFRA, {}, incus=fake_incus(cluster_routes(m3_offline=True)).socket, cache_dir=tmp_path)
    facts = resolver.cluster()
    assert facts.members["m3"] == MemberFacts(architecture="x86_64", status="Offline")
    assert facts.recorded()["m3"].cpu_threads is None


def test_a_member_listed_online_that_is_not_ready(fake_incus, tmp_path):
    routes = cluster_routes() | {"/1.0/resources?target=m2": Raw(load("resources-m3-offline.response.json"))}
    facts = LiveResolver(INFRA, {}, incus=fake_incus(routes).socket, cache_dir=tmp_path).cluster()
    assert facts.members["m2"] == MemberFacts(architecture="x86_64", status="Online but not ready")


def test_a_standalone_server_is_none(fake_incus, tmp_path):
    routes = {"/1.0/cluster": load("standalone-cluster.response.json")["metadata"]}
    assert LiveResolver(INFRA, {}, incus=fake_incus(routes).socket, cache_dir=tmp_path).cluster() is None


def test_offline_never_asks(tmp_path):
    with pytest.raises(OfflineMiss, match="--offline forbids asking Incus"):
        LiveResolver(INFRA, {}, offline=True, incus=str(tmp_path / "none.socket"), cache_dir=tmp_path).cluster()


def test_gpus_per_member_served_in_place_of_resources_target(fake_incus, tmp_path):
    """The H200 host's recorded resources answered for m2: the API has no UUID and no VRAM."""
    resolver = LiveResolver(INFRA, {}, incus=fake_incus(cluster_routes(gpu_members=["m2"])).socket,
                            cache_dir=tmp_path)
    facts = resolver.cluster()
    assert facts.members["m2"].cpu_threads == 16
    [card] = resolver.gpu_inventory("m2")
    assert card.model == "NVIDIA H200" and card.uuid is None and card.vram_mib is None
    assert resolver.gpu_inventory("m1") == []


def test_recorded_nvidia_smi_per_member(fake_incus, tmp_path):
    resolver = LiveResolver(INFRA, {}, incus=fake_incus(cluster_routes(gpu_members=["m2"])).socket,
                            cache_dir=tmp_path, member_smi={"m2": H200_SMI_CSV})
    resolver.cluster()
    assert resolver.gpu_inventory("m2") == h200_cards()


def test_recorded_inventories_per_member_and_as_one_map(fake_incus, tmp_path):
    one = tmp_path / "m3.json"
    one.write_bytes(encode_inventory(h200_cards()))
    routes = cluster_routes()
    resolver = LiveResolver(INFRA, {}, incus=fake_incus(routes).socket, cache_dir=tmp_path,
                            member_inventories={"m3": one})
    resolver.cluster()
    assert resolver.gpu_inventory("m3") == h200_cards() and resolver.gpu_inventory("m1") == []
    whole = tmp_path / "cluster.json"
    whole.write_bytes(encode_inventory_map({"m2": h200_cards(), "m1": [], "m3": []}))
    resolver = LiveResolver(INFRA, {}, incus=fake_incus(routes).socket, cache_dir=tmp_path, gpu_inventory=whole)
    resolver.cluster()
    assert resolver.gpu_inventory("m2") == h200_cards()


def test_recorded_files_that_do_not_fit_the_cluster(fake_incus, tmp_path):
    plain = tmp_path / "plain.json"
    plain.write_bytes(encode_inventory(h200_cards()))
    socket = fake_incus(cluster_routes()).socket
    with pytest.raises(AnklumeError, match="'m9' is not a member of the cluster"):
        LiveResolver(INFRA, {}, incus=socket, cache_dir=tmp_path, member_inventories={"m9": plain}).cluster()
    resolver = LiveResolver(INFRA, {}, incus=socket, cache_dir=tmp_path, gpu_inventory=plain)
    resolver.cluster()
    with pytest.raises(AnklumeError, match="in a cluster, say whose GPUs it lists") as err:
        resolver.gpu_inventory("m1")
    assert "--gpu-inventory m1=FILE" in err.value.hint
    resolver = LiveResolver(INFRA, {}, incus=socket, cache_dir=tmp_path, nvidia_smi=H200_SMI_CSV)
    resolver.cluster()
    with pytest.raises(AnklumeError, match="--nvidia-smi .*: in a cluster, say whose"):
        resolver.gpu_inventory("m2")
    single = LiveResolver(INFRA, {}, cache_dir=tmp_path, member_inventories={"m1": plain})
    with pytest.raises(AnklumeError, match="the lock is for a single Incus server"):
        single.gpu_inventory()


def test_fixture_files_are_what_the_provenance_note_lists():
    listed = (CLUSTER / "PROVENANCE.txt").read_text()
    for path in CLUSTER.iterdir():
        assert path.name == "PROVENANCE.txt" or path.name in listed, path.name

"""A real Incus cluster's recorded answers (tests/fixtures/cluster, see its PROVENANCE.txt), and
the GPU inventories the unit tests serve per member in its place.

- ``cluster_routes(...)``: routes for the Incus API test double (tests/resolve/loopback.py) that
  answer /1.0/cluster, /1.0/cluster/members?recursion=1 and /1.0/resources?target=<member> with
  the recordings;
- ``h200_in_place_of_resources``: the recorded H200 host's /1.0/resources, served in place of a
  member's /1.0/resources?target=<member> (the members of one host all see the same hardware,
  and it has no GPU: per-member GPU inventories cannot be recorded there);
- ``RecordedCluster``: a resolver test double (``anklume.lock.assemble.Resolver``) whose
  ``cluster()`` is the recorded cluster's facts (parsed by anklume's own parsers) and whose
  ``gpu_inventory(member)`` is the recorded H200 inventory for the members named ``gpu_members``
  (no GPU for the others).
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from anklume.lock.placement import ClusterFacts, MemberFacts
from anklume.lock.schema import ImageLocked
from anklume.resolve.cluster import parse_cluster, parse_members, with_resources
from anklume.resolve.gpus import GpuCard, join_inventory, parse_nvidia_smi_csv, parse_resources
from tests.support.recorded import FIXTURES, H200_RESOURCES, H200_SMI_CSV

CLUSTER = FIXTURES / "cluster"
MEMBERS = ("m1", "m2", "m3")


def load(name: str):
    return json.loads((CLUSTER / name).read_bytes())


def h200_in_place_of_resources() -> dict:
    """The H200 host's recorded /1.0/resources (metadata): 16 threads, 128 GiB, one H200."""
    doc = json.loads(H200_RESOURCES.read_bytes())
    return doc.get("metadata", doc)


def h200_cards() -> list[GpuCard]:
    """The H200 host's inventory: Incus's resources joined with its recorded nvidia-smi."""
    return join_inventory(parse_resources(h200_in_place_of_resources()),
                          parse_nvidia_smi_csv(H200_SMI_CSV.read_text()))


def cluster_routes(*, gpu_members: Iterable[str] = (), m3_offline: bool = False) -> dict:
    """Routes for ``FakeIncus``: the recorded cluster; ``gpu_members`` answer the H200 host's
    resources in place of theirs; ``m3_offline``: the recording made with m3 stopped."""
    from tests.resolve.loopback import Raw

    routes: dict[str, object] = {"/1.0/cluster": load("cluster.json")}
    if m3_offline:
        routes["/1.0/cluster/members"] = load("members-m3-offline.response.json")["metadata"]
        routes["/1.0/resources?target=m3"] = Raw(load("resources-m3-offline.response.json"))
    else:
        routes["/1.0/cluster/members"] = load("members-online.json")
    for member in MEMBERS:
        if m3_offline and member == "m3":
            continue
        routes[f"/1.0/resources?target={member}"] = (h200_in_place_of_resources() if member in gpu_members
                                                     else load(f"resources-{member}.json"))
    return routes


def recorded_facts(*, offline: Iterable[str] = (), gpu_members: Iterable[str] = ()) -> ClusterFacts:
    """The recorded cluster's facts, parsed as ``LiveResolver.cluster`` parses them: members in
    ``offline`` as the recording with m3 stopped shows a stopped member (architecture only);
    ``gpu_members`` with the H200 host's threads and memory (its resources served in their place)."""
    offline, gpu_members = set(offline), set(gpu_members)
    server = parse_cluster(load("cluster.json"))
    assert server is not None
    listed = parse_members(load("members-online.json"))
    stopped = parse_members(load("members-m3-offline.response.json")["metadata"])["m3"]
    facts: dict[str, MemberFacts] = {}
    for name, member in listed.items():
        if name in offline:
            facts[name] = with_resources(MemberFacts(architecture=member.architecture, status=stopped.status),
                                         None, source=name)
            continue
        resources = h200_in_place_of_resources() if name in gpu_members else load(f"resources-{name}.json")
        facts[name] = with_resources(member, resources, source=name)
    return ClusterFacts(server_name=server, members=facts)


class RecordedCluster:
    """A resolver test double: images pinned to zeros, the recorded cluster, the H200 on
    ``gpu_members``; counts what is asked (``asked``)."""

    def __init__(self, *, offline: Iterable[str] = (), gpu_members: Iterable[str] = (), facts: ClusterFacts | None = None,
                 clustered: bool = True):
        self.facts = facts or recorded_facts(offline=offline, gpu_members=gpu_members)
        self.gpu_members = set(gpu_members)
        self.clustered = clustered
        self.asked: list[str] = []

    def image(self, original):
        return ImageLocked(fingerprint="0" * 64)

    def cluster(self) -> ClusterFacts | None:
        self.asked.append("cluster")
        return self.facts if self.clustered else None

    def gpu_inventory(self, member: str | None = None) -> list[GpuCard]:
        self.asked.append(f"gpus {member}")
        return h200_cards() if member in self.gpu_members else []


def cluster_example(root) -> None:
    """examples/gpu-workstation in ``root`` made a cluster's: its `pro` domain on member m3, and a
    fresh lock: the committed lockfiles/gpu-workstation.lock's pins, placed (anklume's own
    placement) on the recorded cluster with the H200 on m2.  No network, no daemon."""
    import msgspec

    from anklume.lock.assemble import Update
    from anklume.lock.codec import decode_lock, encode_lock, infra_hash
    from anklume.lock.placement import place
    from anklume.model.load import load_infra
    from tests.support.lockfiles import EXAMPLES, LOCKFILES

    text = (EXAMPLES / "gpu-workstation" / "infra.yml").read_text()
    text = text.replace("    subnet_id: 2\n", "    subnet_id: 2\n    target: m3\n")
    (root / "infra.yml").write_text(text)
    infra = load_infra(text.encode())
    lock = decode_lock((LOCKFILES / "gpu-workstation.lock").read_bytes())
    placed = place(infra, None, {}, recorded_facts(gpu_members=["m2"]), Update(),
                   lambda member: h200_cards() if member == "m2" else [], lock.models)
    lock = msgspec.structs.replace(lock, infra_hash=infra_hash(infra), gpus=placed.gpus, cluster=placed.cluster)
    (root / "anklume.lock").write_bytes(encode_lock(lock))

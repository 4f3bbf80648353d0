"""Placement's promises, over generated clusters and infras (anklume/lock/placement.py):

- the same infra and the same facts give the same placement bytes, whatever order the members
  and the cards came in;
- adding a machine to a locked infra never changes an existing placement (nor GPU pin);
- every machine is placed on a member of the cluster, an explicit target is honoured, a GPU pin
  is on its machine's member, and the lock with that section passes the lock's own checks.

GPU cards are the recorded H200 (tests/fixtures/gpu) in one or two slots per member.
"""

from __future__ import annotations

import json
import random

import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from anklume.errors import ResolveError
from anklume.lock.assemble import Update
from anklume.lock.codec import lock_problem
from anklume.lock.placement import ClusterFacts, MemberFacts, place
from anklume.lock.schema import LOCK_VERSION, Lock
from anklume.model.load import load_infra
from tests.support.cluster_recorded import h200_cards
from tests.support.hyp import examples

SETTINGS = settings(max_examples=examples(300), deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow])
GIB = 2**30
SLOTS = ("0000:00:06.0", "0000:41:00.0")
MEMBER_NAMES = ("m1", "m2", "m3", "node-a", "gpu.lan", "z9")
MACHINE_NAMES = tuple(f"vm{i}" for i in range(14)) + ("web", "db", "llm", "alpha")


@st.composite
def clusters(draw):
    names = draw(st.lists(st.sampled_from(MEMBER_NAMES), min_size=1, max_size=5, unique=True))
    members = {}
    cards = {}
    for name in names:
        status = draw(st.sampled_from(["Online"] * 4 + ["Offline", "Evacuated"]))
        arch = draw(st.sampled_from(["x86_64"] * 5 + ["aarch64"]))
        known = status == "Online"
        members[name] = MemberFacts(architecture=arch, status=status,
                                    cpu_threads=draw(st.integers(1, 64)) if known else None,
                                    memory_bytes=draw(st.integers(1, 256)) * GIB if known else None)
        h200 = h200_cards()[0]
        cards[name] = [msgspec.structs.replace(h200, pci=slot)
                       for slot in draw(st.lists(st.sampled_from(SLOTS), max_size=2, unique=True))]
    return ClusterFacts(server_name=names[0], members=members), cards


@st.composite
def machine_bodies(draw, members):
    body: dict = {}
    if draw(st.integers(0, 5)) == 0:
        body["target"] = draw(st.sampled_from(members))
    config = {}
    if draw(st.booleans()):
        config["limits.cpu"] = draw(st.sampled_from(["1", "2", "4", "8", "0-3", "1,3", 2]))
    if draw(st.booleans()):
        config["limits.memory"] = draw(st.sampled_from(["512MiB", "1GiB", "2GB", "8GiB", "10%", "50%", 1073741824]))
    if config:
        body["config"] = config
    if draw(st.integers(0, 6)) == 0:
        body["storage_volumes"] = {draw(st.sampled_from(["data", "logs"])): {"path": "/srv"}}
    if draw(st.integers(0, 5)) == 0:
        body["gpu"] = True
    return body


@st.composite
def infras(draw, facts, min_machines=1):
    members = sorted(facts.members)
    names = draw(st.lists(st.sampled_from(MACHINE_NAMES), min_size=min_machines, max_size=10, unique=True))
    machines = {name: draw(machine_bodies(members)) for name in names}
    policy = draw(st.sampled_from(["exclusive", "shared"]))
    return {"project_name": "p", "global": {"gpu_policy": policy},
            "domains": {"pro": {"subnet_id": 1, "machines": machines}}}


def load(doc: dict):
    return load_infra(json.dumps(doc).encode())


def run(doc, facts, cards, old=None, old_gpus=None, update=Update()):
    return place(load(doc), old, old_gpus or {}, facts, update, lambda member: cards[member], {})


def outcome(doc, facts, cards) -> bytes | str:
    try:
        placed = run(doc, facts, cards)
    except ResolveError as err:
        return err.message
    return msgspec.json.encode(placed.cluster, order="sorted") + msgspec.json.encode(placed.gpus, order="sorted")


@SETTINGS
@given(data=st.data(), seed=st.integers(0, 2**32 - 1))
def test_the_same_facts_in_any_order_give_the_same_bytes(data, seed):
    facts, cards = data.draw(clusters())
    doc = data.draw(infras(facts))
    rng = random.Random(seed)
    members = list(facts.members.items())
    rng.shuffle(members)
    shuffled = ClusterFacts(server_name=facts.server_name, members=dict(members))
    shuffled_cards = {m: rng.sample(c, len(c)) for m, c in cards.items()}
    assert outcome(doc, facts, cards) == outcome(doc, shuffled, shuffled_cards)


@SETTINGS
@given(data=st.data())
def test_adding_a_machine_never_moves_another(data):
    facts, cards = data.draw(clusters())
    doc = data.draw(infras(facts))
    try:
        first = run(doc, facts, cards)
    except ResolveError:
        return
    members = sorted(facts.members)
    name = data.draw(st.sampled_from([n for n in MACHINE_NAMES if n not in doc["domains"]["pro"]["machines"]]))
    doc["domains"]["pro"]["machines"][name] = data.draw(machine_bodies(members))
    try:
        second = run(doc, facts, cards, old=first.cluster, old_gpus=first.gpus)
    except ResolveError:
        return  # refused (no room, no free card, a target its volume group cannot honour): nothing moved
    for machine, placement in first.cluster.placement.items():
        assert second.cluster.placement[machine] == placement, machine
    for machine, pin in first.gpus.items():
        assert second.gpus[machine] == pin, machine


@SETTINGS
@given(data=st.data())
def test_every_machine_is_on_a_member_and_targets_are_honoured(data):
    facts, cards = data.draw(clusters())
    doc = data.draw(infras(facts))
    try:
        placed = run(doc, facts, cards)
    except ResolveError as err:
        assert err.message.startswith("infra.yml: ")
        return
    machines = doc["domains"]["pro"]["machines"]
    assert set(placed.cluster.placement) == set(machines)
    for machine, placement in placed.cluster.placement.items():
        member = placement.locked.member
        assert member in facts.members and member in placed.cluster.members
        if "target" in machines[machine]:
            assert member == machines[machine]["target"] == placement.original.target
        if machines[machine].get("gpu"):
            assert placed.gpus[machine].member == member
    lock = Lock(version=LOCK_VERSION, infra_hash="blake3:" + "0" * 64, gpus=placed.gpus, cluster=placed.cluster)
    assert lock_problem(lock) is None

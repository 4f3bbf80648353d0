"""A build across a cluster, pure parts: the member in the units, the move, the members that are
down, and what verify --live reports (anklume.units.cluster, plan, findings)."""

from __future__ import annotations

import msgspec
import pytest

from anklume.errors import StaleLock
from anklume.lock.schema import Cluster, ClusterMember, Placement, PlacementLocked, PlacementOriginal
from anklume.units.build import build_units
from anklume.units.cluster import down_members, is_clustered, unavailable_units
from anklume.units.findings import live_findings
from anklume.units.plan import plan_changes
from anklume.units.unit import LiveObject
from tests.units.infra import make_infra, make_lock, two_domains
from tests.units.test_plan import actions, live_of

PLACES = {"alpha-web": "m1", "alpha-db": "m2", "beta-app": "m3"}


def clustered(places=PLACES, doc=None):
    infra = make_infra(doc or two_domains())
    lock = make_lock(infra)
    members = {m: ClusterMember(architecture="x86_64", cpu_threads=2, memory_bytes=2**34) for m in ("m1", "m2", "m3")}
    placement = {name: Placement(original=PlacementOriginal(), locked=PlacementLocked(member=m, reason="spread"))
                 for name, m in places.items()}
    lock = msgspec.structs.replace(lock, cluster=Cluster(members=members, placement=placement))
    return infra, lock, build_units(infra, lock)


def members(**status) -> dict[str, LiveObject]:
    return {f"member:{m}": LiveObject(kind="member", name=m, project="default", object=m,
                                      status=status.get(m, "Online"),
                                      description="No heartbeat for 21s" if status.get(m, "Online") != "Online"
                                      else "Fully operational")
            for m in ("m1", "m2", "m3")}


def placed(graph, **locations) -> dict[str, LiveObject]:
    """The live state after a build, each instance on its member (``locations`` overrides)."""
    out = live_of(graph)
    for uid, obj in list(out.items()):
        if obj.kind == "instance":
            where = locations.get(obj.name, graph[uid].spec["target"])
            out[uid] = msgspec.structs.replace(obj, location=where)
    return out


def test_the_member_is_in_the_instance_spec_and_only_in_a_cluster():
    _, _, g = clustered()
    assert {u.name: u.spec["target"] for u in g if u.kind == "instance"} == PLACES
    assert is_clustered(g)
    single = build_units(make_infra(two_domains()), make_lock(make_infra(two_domains())))
    assert not is_clustered(single)
    assert all("target" not in u.spec for u in single)
    # the member enters the key: a machine placed elsewhere is re-applied (moved)
    _, _, moved = clustered({**PLACES, "alpha-web": "m2"})
    assert moved["instance:alpha-web"].key != g["instance:alpha-web"].key
    assert moved["instance:alpha-db"].key == g["instance:alpha-db"].key


def test_a_cluster_lock_that_does_not_place_a_machine_is_stale():
    with pytest.raises(StaleLock, match="places machine beta-app on no cluster member"):
        clustered({"alpha-web": "m1", "alpha-db": "m2"})


def test_a_volume_lives_on_the_member_of_the_machines_that_mount_it():
    doc = two_domains()
    vol = {"data": {"path": "/srv/data"}}
    doc["domains"]["alpha"]["machines"]["alpha-web"]["storage_volumes"] = vol
    doc["domains"]["alpha"]["machines"]["alpha-db"]["storage_volumes"] = vol
    _, _, g = clustered({**PLACES, "alpha-db": "m1"}, doc)
    assert g["volume:alpha/data"].spec["target"] == "m1"
    with pytest.raises(StaleLock, match="mounted by machines the lock places on members m1 and m2"):
        clustered(PLACES, doc)


def test_a_built_cluster_is_unchanged_and_a_machine_elsewhere_is_moved():
    _, _, g = clustered()
    live = {**placed(g), **members()}
    assert actions(plan_changes(g, live)) == {}
    plan = plan_changes(g, {**placed(g, **{"beta-app": "m1"}), **members()})
    assert actions(plan) == {"instance:beta-app": "move"}
    change = next(c for c in plan.changes if c.action == "move")
    assert change.reasons[0].render() == "member: m1 -> m3 (the lock places it there)"
    assert change.blocked is None and plan.exit_code == 2
    assert plan.summary().startswith("1 to move,")


def test_a_protected_machine_moves_only_with_replace():
    _, _, g = clustered()
    live = {**placed(g, **{"alpha-db": "m3"}), **members()}  # alpha-db is protected (ephemeral: false)
    blocked = next(c for c in plan_changes(g, live).changes if c.uid == "instance:alpha-db")
    assert blocked.action == "move" and "pass --replace to move it" in blocked.blocked
    allowed = next(c for c in plan_changes(g, live, replace=True).changes if c.uid == "instance:alpha-db")
    assert allowed.action == "move" and allowed.blocked is None


def test_units_on_a_member_that_is_down_wait_for_it_and_the_others_do_not():
    _, _, g = clustered()
    live = {**placed(g), **members(m3="Offline")}
    waiting = unavailable_units(g, live)
    assert set(waiting) == {"instance:beta-app"}
    assert waiting["instance:beta-app"] == "cluster member m3 is Offline: No heartbeat for 21s"
    assert down_members(g, live) == {"m3": "cluster member m3 is Offline: No heartbeat for 21s"}
    assert unavailable_units(g, {**placed(g), **members()}) == {}


def test_a_member_gone_from_the_cluster_and_a_server_that_is_not_one():
    _, _, g = clustered()
    live = {uid: o for uid, o in {**placed(g), **members()}.items() if uid != "member:m2"}
    assert "is not in the cluster (its members: m1, m3)" in unavailable_units(g, live)["instance:alpha-db"]
    no_cluster = unavailable_units(g, placed(g), "/var/lib/incus/unix.socket")
    assert set(no_cluster) == {f"instance:{m}" for m in PLACES}
    assert "/var/lib/incus/unix.socket is not a cluster" in no_cluster["instance:alpha-web"]


def test_verify_reports_the_wrong_member_and_a_member_down():
    infra, lock, g = clustered()
    # (live_of leaves descriptions out: those findings are the same in both states)
    base = {f.render() for f in live_findings(g, {**placed(g), **members()}, lock, owner=infra.project_name)}
    assert not [f for f in base if "location" in f or "member" in f]
    found = live_findings(g, {**placed(g, **{"alpha-web": "m2"}), **members(m3="Offline")}, lock,
                          owner=infra.project_name)
    assert sorted({f.render() for f in found} - base) == [
        "instance:alpha-web: location: expected 'm1', found 'm2'",
        "member:m3: status: expected 'Online', found 'Offline'",
    ]


def test_an_instance_on_a_member_that_is_down_is_not_compared_but_waits():
    _, _, g = clustered()
    live = {**placed(g), **members(m3="Offline")}
    # what Incus lists for it meanwhile: no config, status Error
    live["instance:beta-app"] = LiveObject(kind="instance", name="beta-app", project="beta", object="beta-app",
                                           status="Error", location="m3")
    change = next(c for c in plan_changes(g, live).changes if c.uid == "instance:beta-app")
    assert change.action == "update"
    assert change.reasons[0].render() == "instance beta-app is on cluster member m3: its state cannot be read"
    assert change.blocked == "cluster member m3 is Offline: No heartbeat for 21s"
    assert actions(plan_changes(g, live)) == {"instance:beta-app": "update"}


# -- the GPU preflight, per member: recorded Incus resources of the H200 host served as member m2's,
# and a member without GPU, by a test double of the backend (one host cannot show two inventories)


class MemberResources:
    """Test double: ``resources(target)`` answers each member's recorded /1.0/resources."""

    endpoint = "https://m1.lab:8443"

    def __init__(self, by_member):
        self.by_member = by_member
        self.asked = []

    def server_name(self):
        return "m1"

    def resources(self, target=None):
        from anklume.backends.incus import IncusApiError

        self.asked.append(target)
        if self.by_member.get(target) is None:
            raise IncusApiError("Incus refused GET /1.0/resources: Server isn't ready yet")
        return self.by_member[target]


def gpu_cluster(member: str):
    import json

    from anklume.actions.build import gpu_preflight
    from tests.support.recorded import H200_RESOURCES
    from tests.units.test_gpu import H200_PIN, doc

    infra = make_infra(doc())
    lock = make_lock(infra, gpus={"llm": H200_PIN})
    lock = msgspec.structs.replace(lock, gpus={"llm": msgspec.structs.replace(lock.gpus["llm"], member=member)})
    placement = {m: Placement(original=PlacementOriginal(), locked=PlacementLocked(member=member if m == "llm" else "m1",
                                                                                   reason="x"))
                 for m in ("llm", "web")}
    lock = msgspec.structs.replace(lock, cluster=Cluster(
        members={m: ClusterMember(architecture="x86_64") for m in ("m1", "m2", "m3")}, placement=placement))
    h200 = json.loads(H200_RESOURCES.read_bytes())
    none = {**h200, "gpu": {"cards": [], "total": 0}}
    backend = MemberResources({"m1": none, "m2": h200, "m3": None})
    return gpu_preflight(lock, build_units(infra, lock), backend), backend


def test_the_gpu_preflight_reads_the_resources_of_the_pin_s_member():
    refusals, backend = gpu_cluster("m2")
    assert refusals == [] and backend.asked == ["m2"]
    refusals, backend = gpu_cluster("m1")
    assert backend.asked == ["m1"]
    assert [r.render() for r in refusals] == [
        "GPU of machine llm: the lock pins slot 0000:00:06.0 with NVIDIA H200 (10de:2335), UUID "
        "GPU-9e1c631b-fafe-f96d-935d-1ff4b8a5bf54; this host has no GPU in slot 0000:00:06.0 (it has no GPU at all)"]
    # a member that does not answer: no refusal here; the plan makes its units wait for it
    refusals, backend = gpu_cluster("m3")
    assert refusals == [] and backend.asked == ["m3"]


@pytest.mark.parametrize("said", [
    "Server isn't ready yet",  # right after a restart
    "Missing event connection with target cluster member",  # stopped, not yet seen offline
    "Unable to connect to: 192.0.2.3:8443 ([dial tcp 192.0.2.3:8443: connect: connection refused])",
])
def test_a_member_that_does_not_answer_when_re_read_makes_its_units_wait(said):
    """A member the listing calls Online may not answer the re-read under the lease (what Incus
    6.0.4 said, seen on the test cluster): its units wait for it; the build does not fail."""
    from anklume.backends.incus.client import IncusApiError
    from anklume.backends.incus.live import refresh

    class NotAnswering:  # test double of IncusClient: every GET answers what Incus said then
        def get(self, path, **params):
            raise IncusApiError(f"Incus refused GET /1.0/{path}?project={params.get('project')}: {said}")

    _, _, g = clustered()
    live = {**placed(g), **members()}
    after = refresh(NotAnswering(), live, [("instance:beta-app", "instance", "beta", "beta-app", None)])
    assert after["member:m3"].status == "Not answering"
    assert unavailable_units(g, after)["instance:beta-app"] == f"cluster member m3 is Not answering: {said}"
    assert set(unavailable_units(g, after)) == {"instance:beta-app"}



def test_any_other_refusal_on_re_read_is_still_an_error():
    from anklume.backends.incus.client import IncusApiError
    from anklume.backends.incus.live import refresh

    _, _, g = clustered()
    live = {**placed(g), **members()}

    class Refusing:  # test double of IncusClient
        def get(self, path, **params):
            raise IncusApiError("Incus refused GET: permission denied")

    with pytest.raises(IncusApiError, match="permission denied"):
        refresh(Refusing(), live, [("instance:beta-app", "instance", "beta", "beta-app", None)])


def test_a_bridge_to_make_while_a_member_is_down_waits_with_its_domain():
    from anklume.units.cluster import bridges_waiting

    _, _, g = clustered()
    down = {"m3": "cluster member m3 is Offline: No heartbeat for 21s"}
    waiting = bridges_waiting(g, ["network:alpha"], down)
    assert waiting["network:alpha"] == "cluster member m3 is Offline: No heartbeat for 21s (a bridge is made on " \
                                       "every member)"
    assert {"profile:alpha/default", "instance:alpha-web", "instance:alpha-db"} <= set(waiting)
    assert not any(uid.endswith("beta") or "beta-" in uid for uid in waiting)
    assert bridges_waiting(g, ["network:alpha"], {}) == {}

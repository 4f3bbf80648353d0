"""Units + live objects -> changes with reasons (pure)."""

from __future__ import annotations

import msgspec

from anklume.units.build import build_units
from anklume.units.plan import diff_specs, plan_changes
from anklume.units.unit import LiveObject
from anklume.units.unit import MANAGED_KEY, UNIT_KEY
from tests.units.infra import FP_A, FP_B, make_infra, make_lock, two_domains, with_fingerprint


def live_of(graph, *, status="Running", fingerprint=FP_A) -> dict[str, LiveObject]:
    """What Incus would show after a successful build of ``graph``."""
    out = {}
    for u in graph:
        config = {**u.spec.get("config", {}), MANAGED_KEY: "true", UNIT_KEY: u.key}
        extra = {}
        if u.kind == "instance":
            config["volatile.base_image"] = fingerprint
            extra = {"status": status, "type": u.spec["type"], "devices": u.spec["devices"],
                     "profiles": u.spec["profiles"]}
        elif u.kind == "profile":
            extra = {"devices": u.spec["devices"]}
        elif u.kind == "volume":
            extra = {"pool": u.spec["pool"]}
        out[u.uid] = LiveObject(kind=u.kind, name=u.name, project=u.project, object=u.object, config=config, **extra)
    return out


def setup(doc=None):
    infra = make_infra(doc or two_domains())
    lock = make_lock(infra)
    return infra, lock, build_units(infra, lock)


def actions(plan):
    return {c.uid: c.action for c in plan.changes if c.action != "unchanged"}


def test_empty_daemon_creates_everything():
    _, _, g = setup()
    plan = plan_changes(g, {})
    assert {c.action for c in plan.changes} == {"create"}
    assert plan.exit_code == 2 and len(plan.pending) == len(g)
    assert plan.changes[0].reasons[0].render() == "project alpha does not exist"


def test_built_daemon_is_unchanged():
    _, _, g = setup()
    plan = plan_changes(g, live_of(g))
    assert actions(plan) == {} and plan.exit_code == 0
    assert plan.summary() == f"{len(g)} unchanged"


def test_config_change_is_an_update_with_the_field_as_reason():
    _, _, g1 = setup()
    live = live_of(g1)
    doc = two_domains()
    doc["domains"]["alpha"]["machines"]["alpha-web"]["config"]["limits.cpu"] = 2
    _, _, g2 = setup(doc)
    specs = {u.key: u.spec for u in g1}
    plan = plan_changes(g2, live, specs=specs.get)
    assert actions(plan) == {"instance:alpha-web": "update"}
    (change,) = plan.pending
    assert [r.render() for r in change.reasons] == ["config.limits.cpu: '1' -> '2'"]
    # without the local store, the keys are named
    plan = plan_changes(g2, live)
    assert "applied spec not in the local store" in plan.pending[0].reasons[0].render()


def test_stopped_instance_is_started():
    _, _, g = setup()
    live = live_of(g)
    live["instance:beta-app"] = msgspec.structs.replace(live["instance:beta-app"], status="Stopped")
    plan = plan_changes(g, live)
    (change,) = plan.pending
    assert change.uid == "instance:beta-app" and change.start_only
    assert change.reasons[0].render() == "state: 'Stopped' -> 'Running'"


def test_new_image_pin_replaces_and_protection_blocks_without_replace():
    infra, lock, g1 = setup()
    live = live_of(g1)
    g2 = build_units(infra, with_fingerprint(lock, "local:busybox", FP_B))
    plan = plan_changes(g2, live)
    assert actions(plan) == {"instance:alpha-web": "replace", "instance:alpha-db": "replace",
                             "instance:beta-app": "replace"}
    by = {c.uid: c for c in plan.changes}
    assert by["instance:alpha-web"].reasons[0].render() == f"identity.fingerprint: '{FP_A}' -> '{FP_B}'"
    assert by["instance:alpha-web"].blocked is None
    assert "protected" in by["instance:alpha-db"].blocked and "--replace" in by["instance:alpha-db"].blocked
    plan = plan_changes(g2, live, replace=True)
    assert all(c.blocked is None for c in plan.changes)


def test_unmanaged_object_is_adopted():
    _, _, g = setup()
    live = live_of(g)
    prof = live["profile:alpha/default"]
    live["profile:alpha/default"] = msgspec.structs.replace(prof, config={})
    plan = plan_changes(g, live)
    assert actions(plan) == {"profile:alpha/default": "update"}
    assert "adopting" in plan.pending[0].reasons[0].render()


def test_unmanaged_instance_with_another_image_is_never_replaced_silently():
    _, _, g = setup()
    live = live_of(g, fingerprint="c" * 64)
    web = live["instance:alpha-web"]
    live["instance:alpha-web"] = msgspec.structs.replace(web, config={"volatile.base_image": "c" * 64})
    change = next(c for c in plan_changes(g, live).changes if c.uid == "instance:alpha-web")
    assert change.action == "replace" and "did not create it" in change.blocked
    change = next(c for c in plan_changes(g, live, replace=True).changes if c.uid == "instance:alpha-web")
    assert change.blocked is None


def test_orphans_need_prune_and_protected_ones_stay():
    _, _, g1 = setup()
    live = live_of(g1)
    doc = two_domains()
    del doc["domains"]["alpha"]["machines"]["alpha-web"]
    _, _, g2 = setup(doc)
    plan = plan_changes(g2, live)
    (orphan,) = [c for c in plan.changes if c.action == "delete"]
    assert orphan.uid == "instance:alpha-web" and "--prune" in orphan.blocked
    assert plan.exit_code == 0  # a kept orphan is reported, not pending
    plan = plan_changes(g2, live, prune=True)
    assert [c.uid for c in plan.pending] == ["instance:alpha-web"]

    # a whole domain removed: its protected instance stays, and with it the project, bridge, profile
    doc = two_domains()
    del doc["domains"]["alpha"]
    _, _, g3 = setup(doc)
    plan = plan_changes(g3, live, prune=True)
    deletes = {c.uid: c.blocked for c in plan.changes if c.action == "delete"}
    assert deletes["instance:alpha-web"] is None
    assert "protected" in deletes["instance:alpha-db"]
    for uid in ("project:alpha", "network:alpha", "profile:alpha/default"):
        assert "alpha-db" in deletes[uid]
    assert [c.uid for c in plan.pending] == ["instance:alpha-web"]


def test_unprotected_domain_is_deleted_in_order():
    doc = two_domains()
    _, _, g1 = setup(doc)
    live = live_of(g1)
    doc["domains"]["beta"]["machines"] = {}
    del doc["domains"]["beta"]
    _, _, g2 = setup(doc)
    plan = plan_changes(g2, live, prune=True)
    assert [c.uid for c in plan.pending] == ["instance:beta-app", "profile:beta/default", "network:beta",
                                             "project:beta"]


def test_diff_specs_nested():
    old = {"config": {"a": "1", "b": "2"}, "devices": {"eth0": {"x": "1"}}}
    new = {"config": {"a": "1", "c": "3"}, "devices": {}}
    assert [r.render() for r in diff_specs(old, new)] == [
        "config.b: '2' -> (none)", "config.c: (none) -> '3'", 'devices.eth0: {"x":"1"} -> (none)']


def test_another_infras_objects_are_neither_orphans_nor_taken_over():
    from anklume.units.unit import OWNER_KEY

    _, _, mine = setup()
    live = {uid: msgspec.structs.replace(o, config={**o.config, OWNER_KEY: "t"}) for uid, o in live_of(mine).items()}
    theirs_doc = two_domains(a="gamma", b="delta")
    _, _, theirs = setup(theirs_doc)
    for uid, o in live_of(theirs).items():
        live[uid] = msgspec.structs.replace(o, config={**o.config, OWNER_KEY: "other"})
    plan = plan_changes(mine, live, prune=True, owner="t")
    assert actions(plan) == {} and plan.exit_code == 0
    # without owners (objects written before owners were recorded) they would be orphans
    assert actions(plan_changes(mine, live, prune=True)) != {}
    # a unit whose object another infra wrote: blocked, never taken over
    clash = two_domains(a="gamma")
    _, _, g = setup(clash)
    plan = plan_changes(g, live, owner="t")
    blocked = {c.uid: c.blocked for c in plan.changes if c.blocked}
    assert "belongs to the anklume project 'other'" in blocked["project:gamma"]
    assert plan.exit_code == 2

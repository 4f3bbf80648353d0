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
        elif u.kind == "acl":
            extra = {"rules": {"ingress": u.spec["ingress"], "egress": u.spec["egress"]},
                     "used_by": [f"/1.0/networks/net-{u.name}"]}
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


def unmanage(live, uid):
    obj = live[uid]
    live[uid] = msgspec.structs.replace(obj, config={k: v for k, v in obj.config.items()
                                                     if not k.startswith("user.anklume.")})


def test_a_projects_default_profile_comes_with_it_anything_else_unmanaged_is_blocked():
    _, _, g = setup()
    live = live_of(g)
    unmanage(live, "profile:alpha/default")  # made by Incus with a project anklume created
    plan = plan_changes(g, live)
    assert actions(plan) == {"profile:alpha/default": "update"} and plan.pending[0].blocked is None
    assert "made by Incus with its project" in plan.pending[0].reasons[0].render()

    for uid in ("project:alpha", "network:alpha", "instance:alpha-web"):
        live = live_of(g)
        unmanage(live, uid)
        (change,) = plan_changes(g, live).pending
        assert change.uid == uid and change.action == "update"
        assert "anklume did not create it" in change.blocked and f"--adopt {uid}" in change.blocked
        (change,) = plan_changes(g, live, adopt={uid}).pending
        assert change.blocked is None and "adopted (--adopt)" in change.reasons[0].render()

    # a project made by hand: its default profile is not anklume's either, unless it is adopted too
    live = live_of(g)
    unmanage(live, "project:alpha")
    unmanage(live, "profile:alpha/default")
    blocked = {c.uid: c.blocked for c in plan_changes(g, live).pending}
    assert set(blocked) == {"project:alpha", "profile:alpha/default"} and all(blocked.values())
    assert all(c.blocked is None for c in plan_changes(g, live, adopt={"project:alpha"}).pending)


def test_unmanaged_instance_with_another_image_is_never_replaced_silently():
    _, _, g = setup()
    live = live_of(g, fingerprint="c" * 64)
    web = live["instance:alpha-web"]
    live["instance:alpha-web"] = msgspec.structs.replace(web, config={"volatile.base_image": "c" * 64})
    for replace in (False, True):
        change = next(c for c in plan_changes(g, live, replace=replace).changes if c.uid == "instance:alpha-web")
        assert change.action == "replace" and "did not create it" in change.blocked
    # adopted: rebuilt (its old root filesystem kept), never deleted, and only with --replace
    change = next(c for c in plan_changes(g, live, adopt={"instance:alpha-web"}).changes
                  if c.uid == "instance:alpha-web")
    assert change.rebuild and "--replace" in change.blocked and "adopted" in change.blocked
    change = next(c for c in plan_changes(g, live, replace=True, adopt={"instance:alpha-web"}).changes
                  if c.uid == "instance:alpha-web")
    assert change.action == "replace" and change.rebuild and change.blocked is None


def test_a_protected_instance_without_its_key_is_updated_in_place_never_re_created():
    _, _, g = setup()
    live = live_of(g)
    for uid in ("instance:alpha-db", "instance:alpha-web"):  # protected, unprotected
        obj = live[uid]
        live[uid] = msgspec.structs.replace(obj, config={k: v for k, v in obj.config.items() if k != UNIT_KEY})
    for replace in (False, True):
        by = {c.uid: c for c in plan_changes(g, live, replace=replace).pending}
        assert by["instance:alpha-db"].action == "update" and by["instance:alpha-db"].blocked is None
        assert "half-created" not in by["instance:alpha-db"].reasons[0].render()
        # an unprotected one without a key is an interrupted create: re-created
        assert by["instance:alpha-web"].action == "replace" and not by["instance:alpha-web"].rebuild
        assert "half-created" in by["instance:alpha-web"].reasons[0].render()
    # a new image: the protected one is rebuilt (with --replace), whatever its key
    infra, lock, _ = setup()
    g2 = build_units(infra, with_fingerprint(lock, "local:busybox", FP_B))
    by = {c.uid: c for c in plan_changes(g2, live, replace=True).pending}
    assert by["instance:alpha-db"].rebuild and by["instance:alpha-db"].blocked is None
    assert not by["instance:alpha-web"].rebuild
    # a fully built instance the unit protects is rebuilt even if its flag was removed by hand
    db = live["instance:alpha-db"]
    live["instance:alpha-db"] = msgspec.structs.replace(db, config={
        **{k: v for k, v in db.config.items() if k != "security.protection.delete"}, UNIT_KEY: "blake3:old"})
    assert next(c for c in plan_changes(g2, live, replace=True).pending if c.uid == "instance:alpha-db").rebuild


def test_a_protected_instance_that_changes_type_or_project_is_never_rebuilt():
    _, _, g = setup()
    live = live_of(g)
    db = live["instance:alpha-db"]
    live["instance:alpha-db"] = msgspec.structs.replace(db, type="virtual-machine",
                                                        config={**db.config, UNIT_KEY: "blake3:old"})
    change = next(c for c in plan_changes(g, live, replace=True).pending if c.uid == "instance:alpha-db")
    assert "changes type" in change.blocked

    # alpha-db moves to beta, alpha leaves infra.yml: nothing alpha-db still uses is deleted
    doc = two_domains()
    machine = doc["domains"]["alpha"]["machines"].pop("alpha-db")
    machine["ip"] = "10.100.12.11"
    machine["storage_volumes"] = {"data": {"path": "/data"}}
    doc["domains"]["beta"]["machines"]["alpha-db"] = machine
    del doc["domains"]["alpha"]
    _, _, g2 = setup(doc)
    live = live_of(g)
    db = live["instance:alpha-db"]
    live["instance:alpha-db"] = msgspec.structs.replace(db, devices={
        **db.devices, "data": {"type": "disk", "pool": "default", "source": "data", "path": "/data"}})
    live["volume:alpha/data"] = LiveObject(kind="volume", name="alpha/data", project="alpha", object="data",
                                           pool="default", config={MANAGED_KEY: "true", UNIT_KEY: "blake3:v"})
    for replace in (False, True):
        plan = plan_changes(g2, live, prune=True, replace=replace)
        by = {c.uid: c for c in plan.changes}
        move = by["instance:alpha-db"]
        assert move.action == "replace" and "moves from domain alpha to domain beta" in move.blocked
        assert ("incus storage volume move default/data default/data --project alpha --target-project beta"
                in move.blocked and "incus move alpha-db --project alpha --target-project beta" in move.blocked)
        for uid in ("volume:alpha/data", "profile:alpha/default", "network:alpha", "project:alpha"):
            assert by[uid].action == "delete" and "alpha-db still uses domain alpha" in by[uid].blocked, by[uid]
        assert by["instance:alpha-web"].blocked is None  # an unprotected orphan goes
        # its volume is not created empty in beta: the move by hand brings it
        assert by["volume:beta/data"].action == "create" and "waits for alpha-db to move" in by["volume:beta/data"].blocked


def test_an_unprotected_instance_moving_out_of_a_removed_domain_does_not_keep_it():
    doc = two_domains()
    machine = doc["domains"]["alpha"]["machines"].pop("alpha-web")
    machine["ip"] = "10.100.12.12"
    doc["domains"]["beta"]["machines"]["alpha-web"] = machine
    del doc["domains"]["alpha"]["machines"]["alpha-db"]
    del doc["domains"]["alpha"]
    _, _, g1 = setup()
    _, _, g2 = setup(doc)
    live = live_of(g1)
    del live["instance:alpha-db"]
    plan = plan_changes(g2, live, prune=True)
    by = {c.uid: c for c in plan.changes}
    assert by["instance:alpha-web"].action == "replace" and by["instance:alpha-web"].blocked is None
    assert all(by[uid].blocked is None for uid in ("profile:alpha/default", "network:alpha", "project:alpha"))


def test_a_volume_a_protected_instance_uses_is_never_replaced():
    doc = two_domains()
    doc["domains"]["alpha"]["machines"]["alpha-db"]["storage_volumes"] = {"data": {"path": "/data", "pool": "fast"}}
    _, _, g = setup(doc)
    live = live_of(g)
    vol = live["volume:alpha/data"]
    live["volume:alpha/data"] = msgspec.structs.replace(vol, pool="default", config={**vol.config, UNIT_KEY: "x"})
    change = next(c for c in plan_changes(g, live, replace=True).pending if c.uid == "volume:alpha/data")
    assert "protected instance(s) alpha-db use it" in change.blocked
    assert "incus storage volume move default/data fast/data --project alpha" in change.blocked


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
                                             "acl:beta", "project:beta"]


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
    assert "set project_name back to 'other'" in blocked["project:gamma"]
    assert plan.exit_code == 2
    # taken over explicitly
    plan = plan_changes(g, live, owner="t", adopt={"project:gamma"})
    change = next(c for c in plan.changes if c.uid == "project:gamma")
    assert change.blocked is None and "taken over" in change.reasons[0].render()


def test_an_object_without_owner_belongs_to_its_projects_owner():
    from anklume.units.unit import OWNER_KEY

    _, _, mine = setup()
    live = {uid: msgspec.structs.replace(o, config={**o.config, OWNER_KEY: "t"}) for uid, o in live_of(mine).items()}
    _, _, theirs = setup(two_domains(a="gamma", b="delta"))
    for uid, o in live_of(theirs).items():
        owner = {} if uid == "instance:gamma-web" else {OWNER_KEY: "other"}  # its owner mark removed by hand
        live[uid] = msgspec.structs.replace(o, config={**o.config, **owner})
    plan = plan_changes(mine, live, prune=True, owner="t")
    assert actions(plan) == {}

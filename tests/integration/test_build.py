"""`anklume build` against the real private incusd: create, no-op, update, replace, prune, errors."""

from __future__ import annotations

import json

import pytest

from anklume.project import BuildBusy, exclusive_build
from anklume.errors import AnklumeError
from anklume.units.build import build_units
from tests.integration.build_env import second_busybox
from tests.support.events import EventCounter




def test_first_build_creates_everything_and_second_writes_nothing(env):
    infra, lock = env.infra_lock(env.doc())
    d0, d1 = env.dom(0), env.dom(1)
    assert env.build(infra, lock, plan_only=True) == 2
    assert "to create" in env.out.getvalue()

    assert env.build(infra, lock) == 0, env.out.getvalue()
    graph = build_units(infra, lock)

    project = env.query(f"/1.0/projects/{d0}")
    assert project["description"] == "first domain"
    for k, v in {"features.images": "true", "features.profiles": "true", "features.storage.volumes": "true",
                 "features.networks": "false", "user.anklume.managed": "true"}.items():
        assert project["config"][k] == v
    assert project["config"]["user.anklume.key"] == graph[f"project:{d0}"].key

    net = env.query(f"/1.0/networks/net-{d0}")
    assert net["config"]["ipv4.address"] == f"10.100.{env.sid}.254/24"
    assert net["config"]["ipv4.nat"] == "true" and net["config"]["ipv6.address"] == "none"
    assert net["config"]["user.anklume.key"] == graph[f"network:{d0}"].key

    default = env.query(f"/1.0/profiles/default?project={d0}")
    assert default["devices"] == {"eth0": {"type": "nic", "network": f"net-{d0}", "name": "eth0"},
                                  "root": {"type": "disk", "pool": "default", "path": "/"}}
    extra = env.query(f"/1.0/profiles/extra?project={d0}")
    assert extra["config"]["user.note"] == "hello" and extra["config"]["boot.autostart.priority"] == "5"
    assert extra["devices"]["scratch"] == {"type": "disk", "source": "/tmp", "path": "/mnt/scratch"}

    vol = env.query(f"/1.0/storage-pools/default/volumes/custom/{d0}-data?project={d0}")
    assert vol["config"]["size"] == "64MiB"
    assert vol["config"]["user.anklume.key"] == graph[f"volume:{d0}/{d0}-data"].key

    web = env.instance(f"{d0}-web", d0)
    assert web["status"] == "Running"
    assert web["profiles"] == ["default", "extra"]
    assert web["config"]["limits.cpu"] == "1" and web["config"]["security.nesting"] == "true"
    assert web["config"]["volatile.base_image"] == env.fp
    assert web["config"]["user.anklume.key"] == graph[f"instance:{d0}-web"].key
    assert web["devices"]["eth0"]["ipv4.address"] == f"10.100.{env.sid}.10"
    assert "security.protection.delete" not in web["config"]
    db = env.instance(f"{d0}-db", d0)
    assert db["config"]["security.protection.delete"] == "true"
    assert db["devices"][f"{d0}-data"] == {"type": "disk", "pool": "default", "source": f"{d0}-data",
                                           "path": "/data"}
    assert env.instance(f"{d1}-app", d1)["status"] == "Running"
    # the applied specs are in the local store
    assert all(env.store.get(u.key) == u.spec for u in graph)

    with EventCounter(env.incus) as ev:
        assert env.build(infra, lock) == 0
    assert "nothing to do" in env.out.getvalue()
    assert ev.writes == 0, ev.actions()
    assert ev.api_writes == 0, ev.requests
    # a handful of listings, whatever the number of units.  Not counted: pylxd's handshake (GET
    # /1.0, once per thread that connects) and a bridge or ACL that another test left on the
    # shared daemon without its key mirror (read on its own: not this build's cost)
    def foreign(url: str) -> bool:
        name = url.split("?", 1)[0].rsplit("/", 1)[-1]
        return url.startswith(("/1.0/networks/", "/1.0/network-acls/")) and name[4:] not in (d0, d1)

    listings = [r for r in ev.requests if r.url != "/1.0" and not foreign(r.url)]
    assert len(listings) <= 6, [r.url for r in ev.requests]

    with EventCounter(env.incus) as ev:
        assert env.build(infra, lock, plan_only=True, as_json=True) == 0
    assert ev.writes == 0 and ev.api_writes == 0
    out = json.loads(env.out.getvalue())
    assert out["pending"] == 0 and out["summary"]["unchanged"] == len(graph)


def test_config_change_writes_only_that_instance(env):
    doc = env.doc()
    infra, lock = env.infra_lock(doc)
    assert env.build(infra, lock) == 0
    d0 = env.dom(0)
    doc["domains"][d0]["machines"][f"{d0}-web"]["config"]["limits.cpu"] = 2
    infra2, lock2 = env.infra_lock(doc)

    assert env.build(infra2, lock2, plan_only=True) == 2
    text = env.out.getvalue()
    assert f"instance:{d0}-web" in text and "config.limits.cpu: '1' -> '2'" in text

    with EventCounter(env.incus) as ev:
        assert env.build(infra2, lock2) == 0, env.out.getvalue()
    sources = [src for _, src in ev.actions()]
    # the instance, and the build lease taken and released on the default project
    assert set(sources) == {f"/1.0/instances/{d0}-web?project={d0}", "/1.0/projects/default"}, ev.actions()
    assert sources.count("/1.0/projects/default") == 2
    assert env.instance(f"{d0}-web", d0)["config"]["limits.cpu"] == "2"
    with EventCounter(env.incus) as ev:
        assert env.build(infra2, lock2) == 0
    assert ev.writes == 0


def test_image_pin_change_replaces_exactly_that_instance(env, tmp_path):
    fp2 = second_busybox(env.incus, tmp_path)
    doc = env.doc()
    d1 = env.dom(1)
    doc["domains"][d1]["machines"][f"{d1}-app"]["os_image"] = "local:busybox-v2"
    infra, lock = env.infra_lock(doc, {"local:busybox-v2": env.fp})
    assert env.build(infra, lock) == 0, env.out.getvalue()
    before = env.instance(f"{d1}-app", d1)
    assert before["config"]["volatile.base_image"] == env.fp

    infra, lock2 = env.infra_lock(doc, {"local:busybox-v2": fp2})
    assert env.build(infra, lock2, plan_only=True) == 2
    assert f"replace  instance:{d1}-app" in env.out.getvalue()
    assert f"identity.fingerprint: '{env.fp}' -> '{fp2}'" in env.out.getvalue()
    with EventCounter(env.incus) as ev:
        assert env.build(infra, lock2) == 0, env.out.getvalue()
    inst_events = {src for action, src in ev.actions() if action.startswith("instance")}
    assert inst_events == {f"/1.0/instances/{d1}-app?project={d1}"}, ev.actions()
    actions = [a for a, _ in ev.actions()]
    assert "instance-deleted" in actions and "instance-created" in actions
    after = env.instance(f"{d1}-app", d1)
    assert after["status"] == "Running" and after["config"]["volatile.base_image"] == fp2
    assert after["config"]["volatile.uuid"] != before["config"]["volatile.uuid"]  # a new instance
    with EventCounter(env.incus) as ev:
        assert env.build(infra, lock2) == 0
    assert ev.writes == 0


def test_protected_instance_is_replaced_only_with_replace_after_a_snapshot_kept_as_image(env, tmp_path):
    fp2 = second_busybox(env.incus, tmp_path, "v3")
    doc = env.doc()
    d0 = env.dom(0)
    doc["domains"][d0]["machines"][f"{d0}-db"]["os_image"] = "local:busybox-v3"
    infra, lock = env.infra_lock(doc, {"local:busybox-v3": env.fp})
    assert env.build(infra, lock) == 0, env.out.getvalue()
    env.incus.incus("exec", f"{d0}-db", "--project", d0, "--", "sh", "-c", "echo kept > /data/file")

    infra, lock2 = env.infra_lock(doc, {"local:busybox-v3": fp2})
    assert env.build(infra, lock2) == 1
    assert "protected" in env.out.getvalue() and "--replace" in env.out.getvalue()
    assert env.instance(f"{d0}-db", d0)["config"]["volatile.base_image"] == env.fp  # untouched

    assert env.build(infra, lock2, replace=True) == 0, env.out.getvalue()
    db = env.instance(f"{d0}-db", d0)
    assert db["status"] == "Running" and db["config"]["volatile.base_image"] == fp2
    # the old root filesystem was kept: snapshotted, published as an image of the project
    alias = env.query(f"/1.0/images/aliases/anklume-before-{d0}-db-{env.fp[:12]}?project={d0}")
    assert alias["target"] not in (env.fp, fp2)
    # the custom volume's data survived the rebuild
    out = env.incus.incus("exec", f"{d0}-db", "--project", d0, "--", "cat", "/data/file")
    assert out.strip() == "kept"
    with EventCounter(env.incus) as ev:
        assert env.build(infra, lock2) == 0
    assert ev.writes == 0


def test_removed_machine_is_reported_and_pruned_unless_protected(env):
    doc = env.doc()
    infra, lock = env.infra_lock(doc)
    assert env.build(infra, lock) == 0
    d0 = env.dom(0)
    web, db = f"{d0}-web", f"{d0}-db"
    machines = doc["domains"][d0]["machines"]
    del machines[web]
    del machines[db]
    infra2, lock2 = env.infra_lock(doc)

    assert env.build(infra2, lock2, plan_only=True) == 0  # kept orphans are reported, not pending
    text = env.out.getvalue()
    assert f"instance:{web}" in text and "--prune" in text
    with EventCounter(env.incus) as ev:
        assert env.build(infra2, lock2) == 0
    assert ev.writes == 0
    assert f"kept instance:{web}" in env.out.getvalue()

    assert env.build(infra2, lock2, prune=True) == 0, env.out.getvalue()
    names = {i["name"] for i in env.query(f"/1.0/instances?project={d0}&recursion=1")}
    assert names == {db}  # the protected one stays
    assert "protected" in env.out.getvalue()


def test_removed_domain_is_pruned_in_dependency_order(env):
    doc = env.doc()
    infra, lock = env.infra_lock(doc)
    assert env.build(infra, lock) == 0
    d1 = env.dom(1)
    del doc["domains"][d1]
    infra2, lock2 = env.infra_lock(doc)
    assert env.build(infra2, lock2, prune=True) == 0, env.out.getvalue()
    assert d1 not in {p["name"] for p in env.query("/1.0/projects?recursion=1")}
    assert f"net-{d1}" not in {n["name"] for n in env.query("/1.0/networks?recursion=1")}
    assert env.build(infra2, lock2, plan_only=True) == 0


def test_failed_unit_stops_dependents_not_other_domains(env):
    doc = env.doc()
    d0, d1 = env.dom(0), env.dom(1)
    doc["domains"][d0]["profiles"]["extra"]["devices"]["bad"] = {"type": "no-such-type"}
    infra, lock = env.infra_lock(doc)
    assert env.build(infra, lock) == 1
    text = env.out.getvalue()
    assert f"FAILED   create profile {d0}/extra" in text
    assert f"skipped  create instance {d0}-web: profile:{d0}/extra failed: Incus refused" in text
    assert env.instance(f"{d1}-app", d1)["status"] == "Running"
    assert env.instance(f"{d0}-db", d0)["status"] == "Running"  # does not use the profile
    # fixed: the next build applies exactly what was left
    del doc["domains"][d0]["profiles"]["extra"]["devices"]["bad"]
    infra, lock = env.infra_lock(doc)
    assert env.build(infra, lock, plan_only=True, as_json=True) == 2
    pending = {c["unit"] for c in json.loads(env.out.getvalue())["changes"] if c["action"] != "unchanged"}
    assert pending == {f"profile:{d0}/extra", f"instance:{d0}-web"}
    assert env.build(infra, lock) == 0


def test_unreachable_daemon_is_a_clear_error(env, tmp_path):
    infra, lock = env.infra_lock(env.doc())
    from anklume.actions.build import do_apply

    with pytest.raises(AnklumeError) as err:
        do_apply(env.project, infra, lock, plan_only=True, as_json=False, jobs=1, prune=False, replace=False,
                 endpoint=str(tmp_path / "no.socket"), specs=env.store)
    assert err.value.exit_code == 1
    assert "unreachable" in err.value.message and "no.socket" in err.value.message


def test_second_concurrent_build_stops_clearly(env):
    infra, lock = env.infra_lock(env.doc())
    with exclusive_build(env.project.root):
        with pytest.raises(BuildBusy, match="another anklume build is running"):
            env.build(infra, lock)
    # --plan reads only and does not take the lock
    with exclusive_build(env.project.root):
        assert env.build(infra, lock, plan_only=True) == 2


def test_lease_on_the_daemon_stops_a_second_controller(env):
    from anklume.backends.incus import LeaseHeld

    infra, lock = env.infra_lock(env.doc())
    env.incus.incus("project", "set", "default", "user.anklume.lease=other-host 4242 99999999999")
    try:
        with EventCounter(env.incus) as ev:
            with pytest.raises(LeaseHeld, match=r"another anklume build holds the lease .*host other-host, pid 4242"):
                env.build(infra, lock)
        assert ev.writes == 0  # nothing applied
        # a lease of a dead process of this host (or an expired one) is taken over
        env.incus.incus("project", "set", "default", "user.anklume.lease=" + __import__("socket").gethostname()
                        + " 999999 99999999999")
        assert env.build(infra, lock) == 0, env.out.getvalue()
    finally:
        env.incus.incus("project", "unset", "default", "user.anklume.lease")
    config = env.query("/1.0/projects/default")["config"]
    assert "user.anklume.lease" not in config  # released after the build


def test_profile_and_volume_changes_apply_in_place_without_touching_instances(env):
    """The documented key rule: a profile's or a volume's change re-applies that object only;
    Incus propagates a profile to its instances itself."""
    doc = env.doc()
    infra, lock = env.infra_lock(doc)
    assert env.build(infra, lock) == 0
    d0 = env.dom(0)
    doc["domains"][d0]["profiles"]["extra"]["config"]["user.note"] = "changed"
    doc["domains"][d0]["machines"][f"{d0}-db"]["storage_volumes"][f"{d0}-data"]["size"] = "128MiB"
    infra2, lock2 = env.infra_lock(doc)
    assert env.build(infra2, lock2, plan_only=True, as_json=True) == 2
    pending = {c["unit"]: c["reasons"] for c in json.loads(env.out.getvalue())["changes"]
               if c["action"] != "unchanged"}
    assert pending == {f"profile:{d0}/extra": ["config.user.note: 'hello' -> 'changed'"],
                       f"volume:{d0}/{d0}-data": ["config.size: '64MiB' -> '128MiB'"]}
    with EventCounter(env.incus) as ev:
        assert env.build(infra2, lock2) == 0, env.out.getvalue()
    written = {r.url.split("?")[0] for r in ev.requests if r.method != "GET"}
    assert written == {"/1.0/profiles/extra", f"/1.0/storage-pools/default/volumes/custom/{d0}-data",
                       "/1.0/projects/default"}, ev.requests  # (+ the build lease)
    web = env.instance(f"{d0}-web", d0)
    assert web["expanded_config"]["user.note"] == "changed"  # propagated by Incus
    vol = env.query(f"/1.0/storage-pools/default/volumes/custom/{d0}-data?project={d0}")
    assert vol["config"]["size"] == "128MiB"
    with EventCounter(env.incus) as ev:
        assert env.build(infra2, lock2) == 0
    assert ev.writes == 0


def test_bridge_key_mirror_fallbacks(env):
    """The plan reads bridges without Incus's slow listing, from the key mirrored on each domain's
    project; a missing mirror falls back to reading that bridge, and a bridge deleted by hand is
    seen gone whatever its mirror says."""
    from anklume.backends.incus.live import BRIDGE_MIRROR_KEY

    infra, lock = env.infra_lock(env.doc())
    d0, d1 = env.dom(0), env.dom(1)
    assert env.build(infra, lock) == 0, env.out.getvalue()
    graph = build_units(infra, lock)
    assert env.query(f"/1.0/projects/{d0}")["config"][BRIDGE_MIRROR_KEY] == graph[f"network:{d0}"].key

    env.incus.incus("project", "unset", d0, BRIDGE_MIRROR_KEY)
    assert env.build(infra, lock, plan_only=True) == 0, env.out.getvalue()

    # d1's bridge goes by hand (its instance and default profile first, or Incus refuses)
    env.incus.incus("delete", "--force", f"{d1}-app", "--project", d1)
    env.incus.incus("profile", "device", "remove", "default", "eth0", "--project", d1)
    env.incus.incus("network", "delete", f"net-{d1}")
    assert env.build(infra, lock, plan_only=True, as_json=True) == 2
    planned = {c["unit"]: c["action"] for c in json.loads(env.out.getvalue())["changes"]}
    assert planned[f"network:{d1}"] == "create" and planned[f"instance:{d1}-app"] == "create"
    assert env.build(infra, lock) == 0, env.out.getvalue()
    assert env.query(f"/1.0/projects/{d1}")["config"][BRIDGE_MIRROR_KEY] == graph[f"network:{d1}"].key
    assert env.build(infra, lock, plan_only=True) == 0, env.out.getvalue()


def test_two_infras_share_a_daemon_without_pruning_each_other(env):
    """Each object records the project_name of the infra.yml whose build wrote it: another infra's
    objects are not this one's orphans, even with --prune, and are never taken over."""
    infra_a, lock_a = env.infra_lock(env.doc())
    d2 = env.dom(2)
    doc_b = {"project_name": "other", "global": {"base_subnet": "10.100", "default_os_image": "local:busybox"},
             "domains": {d2: {"subnet_id": env.sid + 2, "ephemeral": True, "machines": {
                 f"{d2}-solo": {"ip": f"10.100.{env.sid + 2}.10"}}}}}
    infra_b, lock_b = env.infra_lock(doc_b)
    assert env.build(infra_a, lock_a) == 0, env.out.getvalue()
    assert env.build(infra_b, lock_b, prune=True) == 0, env.out.getvalue()
    assert "kept" not in env.out.getvalue() and "delete" not in env.out.getvalue()
    assert env.instance(f"{env.dom(0)}-web", env.dom(0))["status"] == "Running"
    assert env.query(f"/1.0/instances/{d2}-solo?project={d2}")["config"]["user.anklume.owner"] == "other"
    assert env.verify(infra_a, lock_a) == (0, [])
    assert env.verify(infra_b, lock_b) == (0, [])
    assert env.build(infra_a, lock_a, prune=True, plan_only=True) == 0, env.out.getvalue()

    # an infra that declares a domain the other one owns is stopped, not let in
    doc_c = {**doc_b, "project_name": "third"}
    infra_c, lock_c = env.infra_lock(doc_c)
    assert env.build(infra_c, lock_c) == 1
    assert "belongs to the anklume project 'other'" in env.out.getvalue()
    assert env.query(f"/1.0/instances/{d2}-solo?project={d2}")["config"]["user.anklume.owner"] == "other"


def test_instance_descriptions_are_applied_on_create_and_verify_is_clean(env):
    """A machine's description reaches its instance (Incus 6.0 keeps no description from the create
    request alone), and verify --live, which compares it, finds nothing after a fresh build."""
    doc = env.doc()
    d0 = env.dom(0)
    doc["domains"][d0]["machines"][f"{d0}-web"]["description"] = "Front end"
    infra, lock = env.infra_lock(doc)
    assert env.build(infra, lock) == 0, env.out.getvalue()
    assert env.instance(f"{d0}-web", d0)["description"] == "Front end"
    # what the units inside an instance record on it (a PATCH of its config) keeps it too
    from anklume.backends.incus import IncusBackend

    IncusBackend(env.incus.socket).record(d0, f"{d0}-web", {"user.anklume.unit.test.x": "k"})
    assert env.instance(f"{d0}-web", d0)["description"] == "Front end"
    env.incus.incus("config", "unset", f"{d0}-web", "user.anklume.unit.test.x", "--project", d0)
    rc, findings = env.verify(infra, lock)
    assert (rc, findings) == (0, [])
    with EventCounter(env.incus) as ev:
        assert env.build(infra, lock) == 0
    assert ev.writes == 0

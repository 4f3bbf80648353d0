"""Protected data is never lost, whatever state the daemon is in: `--replace`, `--prune` and
objects anklume did not create, against the real private incusd."""

from __future__ import annotations

import json

from tests.integration.build_env import second_busybox


def protected_doc(env, image: str = "local:busybox") -> dict:
    """d0: a protected machine `db` with a volume on /data; d1: an ephemeral `app`."""
    d0, d1 = env.dom(0), env.dom(1)
    return {
        "project_name": "t",
        "global": {"base_subnet": "10.100", "default_os_image": "local:busybox"},
        "domains": {
            d0: {"subnet_id": env.sid, "ephemeral": True, "machines": {
                f"{d0}-db": {"ip": f"10.100.{env.sid}.11", "ephemeral": False, "os_image": image,
                             "storage_volumes": {f"{d0}-data": {"size": "64MiB", "path": "/data"}}}}},
            d1: {"subnet_id": env.sid + 1, "ephemeral": True, "machines": {
                f"{d1}-app": {"ip": f"10.100.{env.sid + 1}.10"}}},
        },
    }


def write_marks(env, name: str, project: str) -> None:
    """A file in the root filesystem and one on the volume."""
    env.sh(name, project, "echo rootfs > /kept && echo volume > /data/file")


def test_replace_never_deletes_a_protected_instance_whose_key_was_removed(env, tmp_path):
    fp2 = second_busybox(env.incus, tmp_path, "key2")
    d0 = env.dom(0)
    db = f"{d0}-db"
    doc = protected_doc(env, "local:busybox-key")
    infra, lock = env.infra_lock(doc, {"local:busybox-key": env.fp})
    assert env.build(infra, lock) == 0, env.out.getvalue()
    write_marks(env, db, d0)
    uuid = env.instance(db, d0)["config"]["volatile.uuid"]

    # same image: a protected instance without its key was not left half-created by anklume
    # (protection is written with the key): its spec is applied in place, nothing is re-created
    for replace in (True, False):
        env.incus.incus("config", "unset", db, "user.anklume.key", "--project", d0)
        assert env.build(infra, lock, replace=replace) == 0, env.out.getvalue()
        assert "half-created" not in env.out.getvalue()
        inst = env.instance(db, d0)
        assert inst["config"]["volatile.uuid"] == uuid and inst["config"]["user.anklume.key"]
        assert env.cat(db, d0, "/kept").strip() == "rootfs"

    # a new image: rebuilt the documented way, old root filesystem kept as an image
    env.incus.incus("config", "unset", db, "user.anklume.key", "--project", d0)
    infra, lock2 = env.infra_lock(doc, {"local:busybox-key": fp2})
    assert env.build(infra, lock2) == 1
    assert "--replace" in env.out.getvalue() and env.instance(db, d0)["config"]["volatile.base_image"] == env.fp
    assert env.build(infra, lock2, replace=True) == 0, env.out.getvalue()
    inst = env.instance(db, d0)
    assert inst["config"]["volatile.uuid"] == uuid and inst["config"]["volatile.base_image"] == fp2
    assert f"anklume-before-{db}-{env.fp[:12]}" in env.backups(d0)
    assert env.cat(db, d0, "/data/file").strip() == "volume"
    assert env.build(infra, lock2, plan_only=True) == 0


def test_a_hand_made_instance_is_neither_adopted_nor_destroyed_without_adopt(env, tmp_path):
    fp2 = second_busybox(env.incus, tmp_path, "hand2")
    d0 = env.dom(0)
    hand = f"{d0}-hand"
    doc = protected_doc(env, "local:busybox-hand")
    infra, lock = env.infra_lock(doc, {"local:busybox-hand": env.fp})
    assert env.build(infra, lock) == 0, env.out.getvalue()
    env.incus.ensure_busybox_image(project=d0)
    env.incus.incus("launch", "busybox", hand, "--project", d0, "-c", "security.protection.delete=true")
    env.sh(hand, d0, "echo mine > /kept")
    before = env.instance(hand, d0)

    # the same image: not adopted silently
    doc["domains"][d0]["machines"][hand] = {"ephemeral": False, "os_image": "local:busybox-hand"}
    infra, lock = env.infra_lock(doc, {"local:busybox-hand": env.fp})
    assert env.build(infra, lock) == 1
    text = env.out.getvalue()
    assert "anklume did not create it" in text and f"--adopt instance:{hand}" in text, text
    assert env.instance(hand, d0)["config"] == before["config"]

    # another image: neither --replace nor anything else deletes it
    infra, lock2 = env.infra_lock(doc, {"local:busybox-hand": fp2})
    for replace in (False, True):
        assert env.build(infra, lock2, replace=replace) == 1
        assert f"--adopt instance:{hand}" in env.out.getvalue(), env.out.getvalue()
        inst = env.instance(hand, d0)
        assert inst["config"]["volatile.uuid"] == before["config"]["volatile.uuid"]
        assert env.cat(hand, d0, "/kept").strip() == "mine"

    # adopted explicitly, with --replace: rebuilt the documented way (the old rootfs kept)
    assert env.build(infra, lock2, adopt=(f"instance:{hand}",)) == 1
    assert "--replace" in env.out.getvalue()
    assert env.build(infra, lock2, replace=True, adopt=(f"instance:{hand}",)) == 0, env.out.getvalue()
    inst = env.instance(hand, d0)
    assert inst["config"]["volatile.uuid"] == before["config"]["volatile.uuid"]
    assert inst["config"]["volatile.base_image"] == fp2 and inst["config"]["user.anklume.managed"] == "true"
    assert f"anklume-before-{hand}-{env.fp[:12]}" in env.backups(d0)
    assert env.build(infra, lock2, plan_only=True) == 0, env.out.getvalue()


def test_an_interrupted_replace_is_resumed(env, tmp_path):
    """A replace killed after its snapshot exists (then after its image was published) resumes."""
    fp2 = second_busybox(env.incus, tmp_path, "resume2")
    d0 = env.dom(0)
    db = f"{d0}-db"
    doc = protected_doc(env, "local:busybox-resume")
    infra, lock = env.infra_lock(doc, {"local:busybox-resume": env.fp})
    assert env.build(infra, lock) == 0, env.out.getvalue()
    write_marks(env, db, d0)

    # killed right after the snapshot: the instance is stopped, the snapshot is there
    infra, lock2 = env.infra_lock(doc, {"local:busybox-resume": fp2})
    env.incus.incus("stop", "--force", db, "--project", d0)
    env.incus.incus("snapshot", "create", db, f"anklume-before-{env.fp[:12]}", "--project", d0)
    assert env.build(infra, lock2, replace=True) == 0, env.out.getvalue()
    inst = env.instance(db, d0)
    assert inst["status"] == "Running" and inst["config"]["volatile.base_image"] == fp2
    assert env.query(f"/1.0/instances/{db}/snapshots?project={d0}") == []
    assert set(env.backups(d0)) == {f"anklume-before-{db}-{env.fp[:12]}"}
    assert env.cat(db, d0, "/data/file").strip() == "volume"
    assert env.build(infra, lock2, plan_only=True) == 0

    # killed after the snapshot was published: the published image is reused, not made twice
    env.sh(db, d0, "echo second > /kept")
    env.incus.incus("stop", "--force", db, "--project", d0)
    snap = f"anklume-before-{fp2[:12]}"
    env.incus.incus("snapshot", "create", db, snap, "--project", d0)
    created = env.query(f"/1.0/instances/{db}/snapshots/{snap}?project={d0}")["created_at"]
    env.incus.incus("query", "--wait", "-X", "POST", "-d", json.dumps({
        "source": {"type": "snapshot", "name": f"{db}/{snap}"},
        "aliases": [{"name": f"anklume-before-{db}-{fp2[:12]}"}],
        "properties": {"anklume.snapshot": created}}), f"/1.0/images?project={d0}")
    images = len(env.images(d0))
    assert env.build(infra, lock, replace=True) == 0, env.out.getvalue()
    inst = env.instance(db, d0)
    assert inst["status"] == "Running" and inst["config"]["volatile.base_image"] == env.fp
    assert env.query(f"/1.0/instances/{db}/snapshots?project={d0}") == []
    assert len(env.images(d0)) == images  # no second copy of the old rootfs
    assert set(env.backups(d0)) == {f"anklume-before-{db}-{env.fp[:12]}", f"anklume-before-{db}-{fp2[:12]}"}


def test_replace_checks_what_the_rebuild_needs_before_stopping_anything(env, tmp_path):
    fp2 = second_busybox(env.incus, tmp_path, "check2")
    d0 = env.dom(0)
    db = f"{d0}-db"
    doc = protected_doc(env, "local:busybox-check")
    infra, lock = env.infra_lock(doc, {"local:busybox-check": env.fp})
    assert env.build(infra, lock) == 0, env.out.getvalue()
    images = len(env.images(d0))

    # the pinned image is not in the daemon
    infra, missing = env.infra_lock(doc, {"local:busybox-check": "0" * 64})
    for _ in range(2):
        assert env.build(infra, missing, replace=True) == 1
        assert "is not in this Incus server's image store" in env.out.getvalue(), env.out.getvalue()
        assert env.instance(db, d0)["status"] == "Running"
        assert len(env.images(d0)) == images and env.backups(d0) == {}

    # a snapshot of the user's: Incus cannot rebuild an instance that has snapshots
    env.incus.incus("stop", "--force", db, "--project", d0)  # (no freezer here for a live snapshot)
    env.incus.incus("snapshot", "create", db, "mine", "--project", d0)
    env.incus.incus("start", db, "--project", d0)
    infra, lock2 = env.infra_lock(doc, {"local:busybox-check": fp2})
    assert env.build(infra, lock2, replace=True) == 1
    assert "snapshot" in env.out.getvalue() and "mine" in env.out.getvalue(), env.out.getvalue()
    assert env.instance(db, d0)["status"] == "Running" and env.backups(d0) == {}
    env.incus.incus("snapshot", "delete", db, "mine", "--project", d0)
    assert env.build(infra, lock2, replace=True) == 0, env.out.getvalue()


def test_pruning_a_domain_keeps_its_backup_images(env, tmp_path):
    fp2 = second_busybox(env.incus, tmp_path, "prune2")
    d0 = env.dom(0)
    db = f"{d0}-db"
    doc = protected_doc(env, "local:busybox-prune")
    infra, lock = env.infra_lock(doc, {"local:busybox-prune": env.fp})
    assert env.build(infra, lock) == 0, env.out.getvalue()
    infra, lock = env.infra_lock(doc, {"local:busybox-prune": fp2})
    assert env.build(infra, lock, replace=True) == 0, env.out.getvalue()
    alias = f"anklume-before-{db}-{env.fp[:12]}"
    backup = env.backups(d0)[alias]
    # no longer protected, then its domain leaves infra.yml
    doc["domains"][d0]["machines"][db]["ephemeral"] = True
    infra, lock = env.infra_lock(doc, {"local:busybox-prune": fp2})
    assert env.build(infra, lock) == 0, env.out.getvalue()
    del doc["domains"][d0]
    infra, lock = env.infra_lock(doc)
    plan = env.plan(infra, lock, prune=True)
    assert "moved to project default" in " ".join(plan[f"project:{d0}"]["reasons"]), plan[f"project:{d0}"]
    try:
        assert env.build(infra, lock, prune=True) == 0, env.out.getvalue()
        assert d0 not in {p["name"] for p in env.query("/1.0/projects?recursion=1")}
        assert env.backups("default").get(alias) == backup
    finally:
        for fp in set(env.backups("default").values()):
            if fp == backup:
                env.incus.incus("image", "delete", fp)


def test_a_protected_machine_moved_to_another_domain_is_planned_as_a_move(env):
    d0, d1 = env.dom(0), env.dom(1)
    db, vol = f"{d0}-db", f"{d0}-data"
    doc = protected_doc(env)
    infra, lock = env.infra_lock(doc)
    assert env.build(infra, lock) == 0, env.out.getvalue()
    write_marks(env, db, d0)

    moved = json.loads(json.dumps(doc))
    machine = moved["domains"][d0]["machines"].pop(db)
    machine["ip"] = f"10.100.{env.sid + 1}.11"
    moved["domains"][d1]["machines"][db] = machine
    del moved["domains"][d0]
    infra2, lock2 = env.infra_lock(moved)
    for replace in (False, True):
        plan = env.plan(infra2, lock2, prune=True, replace=replace)
        change = plan[f"instance:{db}"]
        assert change["blocked"] and "moves from domain" in change["blocked"], change
        assert "incus move" in change["blocked"] and "storage volume move" in change["blocked"], change
        for uid in (f"volume:{d0}/{vol}", f"profile:{d0}/default", f"network:{d0}", f"project:{d0}"):
            assert plan[uid]["action"] == "delete" and plan[uid]["blocked"], plan[uid]
            assert db in plan[uid]["blocked"], plan[uid]
        # its volume is not made empty in the new domain: the move brings it
        assert plan[f"volume:{d1}/{vol}"]["action"] == "create" and plan[f"volume:{d1}/{vol}"]["blocked"]
    assert env.build(infra2, lock2, prune=True) == 1
    assert "still in use" not in env.out.getvalue(), env.out.getvalue()
    assert env.instance(db, d0)["status"] == "Running"
    assert env.query(f"/1.0/storage-pools/default/volumes/custom/{vol}?project={d0}")

    # what the message says to do, then a build converges
    env.incus.incus("stop", "--force", db, "--project", d0)
    env.incus.incus("storage", "volume", "move", f"default/{vol}", f"default/{vol}", "--project", d0,
                    "--target-project", d1)
    env.incus.incus("move", db, "--project", d0, "--target-project", d1)
    assert env.build(infra2, lock2, prune=True) == 0, env.out.getvalue()
    inst = env.instance(db, d1)
    assert inst["status"] == "Running" and inst["config"]["security.protection.delete"] == "true"
    assert env.cat(db, d1, "/kept", "/data/file").split() == ["rootfs", "volume"]
    assert d0 not in {p["name"] for p in env.query("/1.0/projects?recursion=1")}
    assert env.build(infra2, lock2, plan_only=True) == 0, env.out.getvalue()


def test_three_domains_are_pruned_in_one_build(env):
    """Incus 6.0 fails to delete bridges in parallel ("Failed to delete bridge children
    interfaces"): three domains leave in one build, which converges at once."""
    doms = [env.dom(i) for i in range(3)]
    doc = {"project_name": "t", "global": {"base_subnet": "10.100", "default_os_image": "local:busybox"},
           "domains": {d: {"subnet_id": env.sid + i, "ephemeral": True, "machines": {
               f"{d}-m": {"ip": f"10.100.{env.sid + i}.10"}}} for i, d in enumerate(doms)}}
    for _ in range(2):
        infra, lock = env.infra_lock(doc)
        assert env.build(infra, lock) == 0, env.out.getvalue()
        empty, elock = env.infra_lock({**doc, "domains": {}})
        assert env.build(empty, elock, prune=True) == 0, env.out.getvalue()
        nets = {n["name"] for n in env.query("/1.0/networks?recursion=1")}
        assert not {f"net-{d}" for d in doms} & nets
        assert env.build(empty, elock, prune=True, plan_only=True) == 0, env.out.getvalue()


def test_objects_anklume_did_not_create_are_never_adopted_silently(env):
    d0, d1 = env.dom(0), env.dom(1)
    env.incus.incus("network", "create", f"net-{d0}", f"ipv4.address=10.100.{env.sid + 2}.1/24",
                    "ipv4.nat=false", "ipv6.address=none")
    env.incus.create_project(d1)
    bridge = env.query(f"/1.0/networks/net-{d0}")["config"]
    profile = env.query(f"/1.0/profiles/default?project={d1}")
    doc = {"project_name": "t", "global": {"base_subnet": "10.100", "default_os_image": "local:busybox"},
           "domains": {d0: {"subnet_id": env.sid, "ephemeral": True, "machines": {}},
                       d1: {"subnet_id": env.sid + 1, "ephemeral": True, "machines": {}}}}
    infra, lock = env.infra_lock(doc)
    assert env.build(infra, lock) == 1
    text = env.out.getvalue()
    assert f"--adopt network:{d0}" in text and f"--adopt project:{d1}" in text, text
    assert env.query(f"/1.0/networks/net-{d0}")["config"] == bridge
    assert env.query(f"/1.0/profiles/default?project={d1}") == profile
    assert "user.anklume.managed" not in env.query(f"/1.0/projects/{d1}")["config"]

    assert env.build(infra, lock, adopt=(f"network:{d0}", d1)) == 0, env.out.getvalue()
    config = env.query(f"/1.0/networks/net-{d0}")["config"]
    assert config["ipv4.address"] == f"10.100.{env.sid}.254/24" and config["user.anklume.managed"] == "true"
    assert env.query(f"/1.0/projects/{d1}")["config"]["user.anklume.owner"] == "t"
    assert env.build(infra, lock, plan_only=True) == 0, env.out.getvalue()


def test_a_domain_named_default_never_takes_the_daemons_default_project(env):
    doc = {"project_name": "t", "global": {"base_subnet": "10.100", "default_os_image": "local:busybox"},
           "domains": {"default": {"subnet_id": env.sid, "ephemeral": True, "machines": {}}}}
    infra, lock = env.infra_lock(doc)
    plan = env.plan(infra, lock)
    for uid in ("project:default", "profile:default/default"):
        assert plan[uid]["blocked"] and "anklume did not create it" in plan[uid]["blocked"], plan[uid]
    from anklume.model.validate import validate_infra
    from anklume.model.convert import Context

    ctx = Context("infra.yml", {})
    validate_infra(infra, ctx)
    assert any(p.path == "domains.default" for p in ctx.problems), ctx.problems


def test_an_instance_whose_owner_was_removed_belongs_to_its_projects_owner(env):
    infra_a, lock_a = env.infra_lock(protected_doc(env))
    d2 = env.dom(2)
    doc_b = {"project_name": "other", "global": {"base_subnet": "10.100", "default_os_image": "local:busybox"},
             "domains": {d2: {"subnet_id": env.sid + 2, "ephemeral": True, "machines": {
                 f"{d2}-solo": {"ip": f"10.100.{env.sid + 2}.10"}}}}}
    infra_b, lock_b = env.infra_lock(doc_b)
    assert env.build(infra_a, lock_a) == 0, env.out.getvalue()
    assert env.build(infra_b, lock_b) == 0, env.out.getvalue()
    env.incus.incus("config", "unset", f"{d2}-solo", "user.anklume.owner", "--project", d2)
    plan = env.plan(infra_a, lock_a, prune=True)
    assert f"instance:{d2}-solo" not in plan, plan[f"instance:{d2}-solo"]
    assert env.build(infra_a, lock_a, prune=True) == 0, env.out.getvalue()
    assert env.instance(f"{d2}-solo", d2)["status"] == "Running"


def test_a_changed_project_name_is_named_as_such(env):
    doc = protected_doc(env)
    infra, lock = env.infra_lock(doc)
    assert env.build(infra, lock) == 0, env.out.getvalue()
    infra, lock = env.infra_lock({**doc, "project_name": "renamed"})
    assert env.build(infra, lock) == 1
    text = env.out.getvalue()
    assert "rename yours" not in text
    assert "project_name" in text and "'t'" in text and "--adopt" in text, text

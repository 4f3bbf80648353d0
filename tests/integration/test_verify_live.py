"""`verify --live` against the real private incusd: each drift made by hand is found."""

from __future__ import annotations

import json
from pathlib import Path

import msgspec
import pytest

from anklume.units.findings import gpu_findings
from anklume.lock.schema import GpuLocked, GpuOriginal, GpuPin
from anklume.resolve.gpus import parse_resources
from tests.integration.build_env import BuildEnv
from tests.support.events import EventCounter

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "gpu"


@pytest.fixture(scope="module")
def built(incus, tmp_path_factory):
    """One build shared by the drift tests (each test restores what it changed by a build)."""
    fp = incus.ensure_busybox_image()
    env = BuildEnv(incus, tmp_path_factory.mktemp("verify"), fp)
    infra, lock = env.infra_lock(env.doc())
    assert env.build(infra, lock) == 0, env.out.getvalue()
    try:
        yield env, infra, lock
    finally:
        env.cleanup()


def findings_of(env, infra, lock):
    with EventCounter(env.incus) as ev:
        rc, found = env.verify(infra, lock)
    assert ev.writes == 0 and ev.api_writes == 0  # verify never writes
    return rc, {(f["object"], f["field"]): (f["expected"], f["actual"]) for f in found}


def restore(env, infra, lock):
    """A build with --replace puts things back; verify is clean again."""
    env.build(infra, lock)
    rc, found = findings_of(env, infra, lock)
    assert rc == 0, found


def test_clean_after_build(built):
    env, infra, lock = built
    rc, found = findings_of(env, infra, lock)
    assert rc == 0 and found == {}
    env.verify(infra, lock)


def test_config_key_changed_by_hand(built):
    env, infra, lock = built
    d0 = env.dom(0)
    env.incus.incus("config", "set", f"{d0}-web", "limits.cpu=2", "--project", d0)
    rc, found = findings_of(env, infra, lock)
    assert rc == 1
    assert found == {(f"instance:{d0}-web", "config.limits.cpu"): ("1", "2")}
    # the plan does not see it (the recorded key is unchanged); a by-hand fix makes verify clean
    env.incus.incus("config", "set", f"{d0}-web", "limits.cpu=1", "--project", d0)
    assert findings_of(env, infra, lock)[0] == 0


def test_config_key_added_by_hand(built):
    env, infra, lock = built
    d1 = env.dom(1)
    env.incus.incus("config", "set", f"{d1}-app", "user.extra=1", "--project", d1)
    rc, found = findings_of(env, infra, lock)
    assert found == {(f"instance:{d1}-app", "config.user.extra"): (None, "1")}
    env.incus.incus("config", "unset", f"{d1}-app", "user.extra", "--project", d1)


def test_keys_and_descriptions_added_by_hand(built):
    """The whole config of each object is compared, not only the keys anklume wrote: a key added by
    hand to a bridge, a project or a volume, and an edited description, are findings."""
    env, infra, lock = built
    d0 = env.dom(0)
    inst = f"/1.0/instances/{d0}-web?project={d0}"
    vol = f"/1.0/storage-pools/default/volumes/custom/{d0}-data?project={d0}"
    env.incus.incus("query", "-X", "PATCH", inst, "--data", json.dumps({"description": "edited"}))
    env.incus.incus("query", "-X", "PATCH", vol, "--data", json.dumps({"description": "notes"}))
    env.incus.incus("project", "set", d0, "limits.instances=50")
    env.incus.incus("storage", "volume", "set", "default", f"{d0}-data", "security.unmapped=true", "--project", d0)
    env.incus.incus("network", "set", f"net-{d0}", "ipv4.dhcp=false")  # last: instances with an ip refuse edits
    try:
        rc, found = findings_of(env, infra, lock)
        assert found == {
            (f"network:{d0}", "config.ipv4.dhcp"): (None, "false"),
            (f"project:{d0}", "config.limits.instances"): (None, "50"),
            (f"volume:{d0}/{d0}-data", "config.security.unmapped"): (None, "true"),
            (f"instance:{d0}-web", "description"): ("", "edited"),
            (f"volume:{d0}/{d0}-data", "description"): ("", "notes"),
        }
        assert rc == 1
    finally:
        env.incus.incus("network", "unset", f"net-{d0}", "ipv4.dhcp")
        env.incus.incus("project", "unset", d0, "limits.instances")
        env.incus.incus("storage", "volume", "unset", "default", f"{d0}-data", "security.unmapped", "--project", d0)
        env.incus.incus("query", "-X", "PATCH", inst, "--data", json.dumps({"description": ""}))
        env.incus.incus("query", "-X", "PATCH", vol, "--data", json.dumps({"description": ""}))
    assert findings_of(env, infra, lock) == (0, {})


def test_keys_incus_fills_in_are_not_drift(env):
    """The keys Incus writes on its own when it creates an object are not findings: here the
    pool's volume.* defaults copied into a new volume; a default changed by hand is one."""
    env.incus.incus("storage", "set", "default", "volume.snapshots.expiry", "1w")
    try:
        # another owner than the module's build: its objects are not this infra's orphans
        infra, lock = env.infra_lock({**env.doc(), "project_name": "fills"})
        assert env.build(infra, lock) == 0, env.out.getvalue()
        d0 = env.dom(0)
        volume = env.query(f"/1.0/storage-pools/default/volumes/custom/{d0}-data?project={d0}")
        assert volume["config"]["snapshots.expiry"] == "1w"  # what the pool gave it
        assert env.query(f"/1.0/projects/{d0}")["config"]["features.storage.buckets"] == "true"
        rc, found = findings_of(env, infra, lock)
        assert found == {} and rc == 0
        env.incus.incus("storage", "volume", "set", "default", f"{d0}-data", "snapshots.expiry=2w", "--project", d0)
        assert findings_of(env, infra, lock) == (1, {(f"volume:{d0}/{d0}-data", "config.snapshots.expiry"): (None, "2w")})
    finally:
        env.incus.incus("storage", "unset", "default", "volume.snapshots.expiry")


def test_device_removed_by_hand(built):
    env, infra, lock = built
    d0 = env.dom(0)
    env.incus.incus("config", "device", "remove", f"{d0}-web", "eth0", "--project", d0)
    rc, found = findings_of(env, infra, lock)
    (expected, actual), = [v for k, v in found.items() if k == (f"instance:{d0}-web", "devices.eth0")]
    assert expected["ipv4.address"] == f"10.100.{env.sid}.10" and actual is None
    assert rc == 1
    env.incus.incus("config", "device", "add", f"{d0}-web", "eth0", "nic", f"network=net-{d0}", "name=eth0",
                    f"ipv4.address=10.100.{env.sid}.10", "--project", d0)
    assert findings_of(env, infra, lock)[0] == 0


def test_instance_stopped(built):
    env, infra, lock = built
    d1 = env.dom(1)
    env.incus.incus("stop", "--force", f"{d1}-app", "--project", d1)
    rc, found = findings_of(env, infra, lock)
    assert rc == 1 and found == {(f"instance:{d1}-app", "status"): ("Running", "Stopped")}
    # the plan starts it again
    assert env.build(infra, lock, plan_only=True) == 2 and "state: 'Stopped' -> 'Running'" in env.out.getvalue()
    restore(env, infra, lock)


def test_profile_network_and_key_drift(built):
    env, infra, lock = built
    d0 = env.dom(0)
    env.incus.incus("profile", "set", "extra", "user.note=changed", "--project", d0)
    env.incus.incus("network", "set", f"net-{d0}", "ipv4.nat=false")
    env.incus.incus("config", "set", f"{d0}-db", "user.anklume.key=blake3:forged", "--project", d0)
    rc, found = findings_of(env, infra, lock)
    assert found[(f"profile:{d0}/extra", "config.user.note")] == ("hello", "changed")
    assert found[(f"network:{d0}", "config.ipv4.nat")] == ("true", "false")
    assert found[(f"instance:{d0}-db", "config.user.anklume.key")][1] == "blake3:forged"
    env.incus.incus("profile", "set", "extra", "user.note=hello", "--project", d0)
    env.incus.incus("network", "set", f"net-{d0}", "ipv4.nat=true")
    restore(env, infra, lock)  # the forged key makes the build re-apply the instance


def test_pinned_fingerprint_differs(built):
    env, infra, lock = built
    d1 = env.dom(1)
    from tests.units.infra import with_fingerprint

    other = with_fingerprint(lock, "local:busybox", "f" * 64)
    rc, found = findings_of(env, infra, other)
    assert rc == 1
    assert found[(f"instance:{d1}-app", "config.volatile.base_image")] == ("f" * 64, env.fp)
    assert (f"instance:{d1}-app", "config.user.anklume.key") in found


def test_orphan_and_json_output(built):
    env, infra, lock = built
    env.incus.incus("launch", "busybox", "stray", "--project", "default", "-c", "user.anklume.managed=true")
    try:
        rc, raw = env.verify(infra, lock)
        assert rc == 1
        assert {"object": "instance:stray", "field": "managed", "expected": "not in the lock (orphan)",
                "actual": "instance stray"} in raw
    finally:
        env.incus.incus("delete", "--force", "stray", "--project", "default")


def test_gpu_slot_checked_against_resources(built):
    env, infra, lock = built
    d0 = env.dom(0)
    pin = GpuPin(original=GpuOriginal(machine=f"{d0}-web", policy="exclusive"),
                 locked=GpuLocked(pci="0000:41:00.0", vendor_id="10de", product_id="2335"))
    rc, found = findings_of(env, infra, msgspec.structs.replace(lock, gpus={f"{d0}-web": pin}))
    # the test daemon has no GPU: the pinned slot is reported empty
    assert rc == 1 and found == {(f"gpu:{d0}-web", "pci"): ("0000:41:00.0", "no GPU at 0000:41:00.0")}


def test_gpu_findings_on_recorded_resources():
    doc = json.loads((FIXTURES / "h200-incus" / "incus-resources.json").read_text())
    cards = parse_resources(doc.get("metadata", doc))
    card = cards[0]
    ok = GpuPin(original=GpuOriginal(machine="llm", policy="exclusive"),
                locked=GpuLocked(pci=card.pci, vendor_id=card.vendor_id, product_id=card.product_id))
    from anklume.lock.schema import LOCK_VERSION, Lock

    lock = Lock(version=LOCK_VERSION, infra_hash="blake3:x", gpus={"llm": ok})
    assert gpu_findings(lock, cards) == []
    other = msgspec.structs.replace(ok, locked=msgspec.structs.replace(ok.locked, product_id="ffff", uuid="GPU-old"))
    swapped = [msgspec.structs.replace(card, uuid="GPU-new")]
    found = gpu_findings(msgspec.structs.replace(lock, gpus={"llm": other}), swapped)
    assert [(f.field, f.expected, f.actual) for f in found] == [
        ("product_id", "ffff", card.product_id), ("uuid", "GPU-old", "GPU-new")]

"""Which config keys of a live object are Incus's own, and which are drift (pure)."""

from __future__ import annotations

import json

import msgspec

from anklume.backends.incus.live import parse_volume, volume_defaults
from anklume.resolve.gpus import parse_resources
from anklume.units.findings import filled_by_incus, gpu_findings
from anklume.units.unit import LiveObject
from tests.support.recorded import H200_RESOURCES
from tests.units.test_gpu import FILES_DRIVER, graph


def obj(kind: str, **kw) -> LiveObject:
    return LiveObject(kind=kind, name="n", project="p", object="n", **kw)


def test_owned_prefixes_on_every_kind():
    for kind in ("project", "network", "profile", "volume", "instance"):
        assert filled_by_incus(obj(kind), {}, "volatile.x", "1")
        assert filled_by_incus(obj(kind), {}, "user.anklume.key", "k")
        assert not filled_by_incus(obj(kind), {}, "user.note", "1")


def test_image_keys_only_on_instances():
    assert filled_by_incus(obj("instance"), {}, "image.os", "debian")
    assert not filled_by_incus(obj("profile"), {}, "image.os", "debian")


def test_project_features_left_out_and_on():
    assert filled_by_incus(obj("project"), {}, "features.storage.buckets", "true")
    assert not filled_by_incus(obj("project"), {}, "features.storage.buckets", "false")
    assert not filled_by_incus(obj("project"), {}, "limits.instances", "5")
    assert not filled_by_incus(obj("project"), {}, "features.networks", "true")


def test_bridge_fills_only_the_family_the_spec_left_out():
    spec = {"ipv4.address": "10.0.0.254/24", "ipv4.nat": "true", "ipv6.address": "none"}
    assert not filled_by_incus(obj("network"), spec, "ipv6.nat", "true")
    assert not filled_by_incus(obj("network"), spec, "ipv4.dhcp", "false")
    only_v4 = {"ipv4.address": "10.0.0.254/24"}
    assert filled_by_incus(obj("network"), only_v4, "ipv6.address", "fd42::1/64")
    assert filled_by_incus(obj("network"), only_v4, "ipv6.nat", "true")
    assert not filled_by_incus(obj("network"), only_v4, "ipv6.nat", "false")


def test_spec_keys_are_never_incus_s():
    assert not filled_by_incus(obj("volume", defaults={"size": "1GiB"}), {"size": "2GiB"}, "size", "1GiB")


def test_volume_defaults_from_its_pool():
    pool = {"source": "/x", "volume.snapshots.expiry": "1w", "volume.block.filesystem": "xfs"}
    assert volume_defaults(pool) == {"snapshots.expiry": "1w", "block.filesystem": "xfs",
                                     "block.mount_options": "discard"}
    vol = parse_volume({"name": "v", "config": {"snapshots.expiry": "1w"}}, "p", "default", pool)
    assert filled_by_incus(vol, {}, "snapshots.expiry", "1w")
    assert not filled_by_incus(vol, {}, "snapshots.expiry", "2w")
    assert not filled_by_incus(vol, {}, "security.unmapped", "true")
    assert filled_by_incus(vol, {}, "block.mount_options", "discard")
    # read without its pool (the plan of a build): no defaults known
    assert parse_volume({"name": "v"}, "p", "default").defaults == {}


def test_an_ownerless_object_in_another_infra_s_project_is_not_this_infra_s_orphan():
    from anklume.units.build import build_units
    from anklume.units.findings import live_findings
    from tests.units.infra import make_infra, make_lock, two_domains

    infra = make_infra(two_domains())
    lock = make_lock(infra)
    graph = build_units(infra, lock)
    theirs = LiveObject(kind="project", name="other", project="default", object="other",
                        config={"user.anklume.managed": "true", "user.anklume.owner": "them"})
    stray = LiveObject(kind="instance", name="x", project="other", object="x",
                       config={"user.anklume.managed": "true"})  # its owner mark removed by hand
    ours = LiveObject(kind="instance", name="y", project="alpha", object="y", config={"user.anklume.managed": "true"})
    live = {"project:other": theirs, "instance:x": stray, "instance:y": ours}
    orphans = {f.object for f in live_findings(graph, live, lock, owner="t") if f.field == "managed"}
    assert orphans == {"instance:y"}


def test_a_gpu_whose_driver_is_not_the_pinned_one_is_a_finding():
    """verify --live reads the card's driver version from Incus's resources (the recorded H200 says
    580.159.04); a pin without a driver (an old lock) is not compared."""
    cards = parse_resources(json.loads(H200_RESOURCES.read_bytes()))
    _g, lock = graph(FILES_DRIVER)
    assert gpu_findings(lock, cards) == []
    newer = [msgspec.structs.replace(c, driver_version="590.44.01") for c in cards]
    found = gpu_findings(lock, newer)
    assert [(f.object, f.field, f.expected, f.actual) for f in found] == [
        ("gpu:llm", "driver_version", "580.159.04", "590.44.01")]
    _g, old = graph(None)
    assert gpu_findings(old, newer) == []

"""Simplestreams: alias -> fingerprint, facts from the recorded Crostini catalogue."""

from __future__ import annotations

import copy
import json
import random

import msgspec
import pytest

from anklume.errors import ResolveError, SourceError
from anklume.lock.schema import ImageFile, ImageLocked
from anklume.resolve.http import Fetcher
from anklume.resolve.simplestreams import catalogue_paths, find_image, resolve_image, resolve_local_image

from tests.support.recorded import BUSTER_AMD64, catalogue, index_for, simplestreams_files, with_incus_items, without_ftype

BUSTER_SQUASHFS = "deae1ebaa83fa743ba9c33e942f045f45fd22430c15eb22b65af71a00b106005"
BUSTER_ROOTXZ = "a777b01321f0781cd2d8d17ec5d487efb316ed012c24657d57900a2d9ffd9fd9"
STRETCH_ARM64_SQUASHFS = "8a16efc751ef4487b5d9c5621f50383802b5cabf2e92efd4938ac9320cef2af2"
CANONICAL = "https://images.linuxcontainers.org"


def find(doc: dict, alias: str, arch: str = "x86_64", type: str = "container") -> ImageLocked:
    return find_image({"mem://images.json": json.dumps(doc).encode()}, alias, arch, type)


def test_buster_amd64_container_is_the_squashfs_fingerprint_via_incus_items(http_serve, fetcher):
    server = http_serve(simplestreams_files(with_incus_items(catalogue())))
    pin = resolve_image(fetcher, server.url, "debian/buster", "x86_64", "container")
    assert pin == ImageLocked(
        fingerprint=BUSTER_SQUASHFS,
        serial="20200304_22:10",
        server=CANONICAL,
        os="Debian",
        release="buster",
        variant=None,
        ftype="squashfs",
        meta=ImageFile(
            path="images/debian/buster/amd64/default/20200304_22:10/incus.tar.xz",
            sha256="d96e64e86fe314b41717a270e394fc644bddf23ebbdee870a8dec034435a47af",
            size=560,
        ),
        root=ImageFile(
            path="images/debian/buster/amd64/default/20200304_22:10/rootfs.squashfs",
            sha256="da076d1d6b0944a68ecdb86ff3711999f1a2d23645b3a457e99b02908a77852b",
            size=361897984,
        ),
    )
    assert server.requests == ["/streams/v1/index.json", "/streams/v1/images.json"]


def test_unmodified_lxd_era_catalogue_is_accepted(http_serve, fetcher):
    server = http_serve(simplestreams_files(catalogue()))
    pin = resolve_image(fetcher, server.url, "debian/buster", "amd64", "container")
    assert pin.fingerprint == BUSTER_SQUASHFS
    assert pin.meta.path.endswith("/lxd.tar.xz")


def test_incus_metadata_item_is_preferred_over_lxd():
    doc = with_incus_items(catalogue())
    items = doc["products"][BUSTER_AMD64]["versions"]["20200304_22:10"]["items"]
    items["lxd.tar.xz"]["combined_squashfs_sha256"] = "0" * 64  # must be ignored
    assert find(doc, "debian/buster").fingerprint == BUSTER_SQUASHFS


def test_root_tar_xz_only_uses_combined_rootxz(http_serve, fetcher):
    server = http_serve(simplestreams_files(without_ftype(catalogue(), "squashfs")))
    pin = resolve_image(fetcher, server.url, "debian/buster", "x86_64", "container")
    assert pin.fingerprint == BUSTER_ROOTXZ
    assert pin.ftype == "root.tar.xz"
    assert pin.root.path.endswith("/rootfs.tar.xz")


def test_root_tar_xz_falls_back_to_combined_sha256():
    doc = without_ftype(with_incus_items(catalogue()), "squashfs")
    del doc["products"][BUSTER_AMD64]["versions"]["20200304_22:10"]["items"]["incus.tar.xz"]["combined_rootxz_sha256"]
    assert find(doc, "debian/buster").fingerprint == BUSTER_ROOTXZ  # == combined_sha256 in the recording


def test_medium_alias_with_architecture_suffix():
    pin = find(with_incus_items(catalogue()), "debian/stretch/arm64", arch="aarch64")
    assert pin.fingerprint == STRETCH_ARM64_SQUASHFS
    assert pin.root.path.startswith("images/debian/stretch/arm64/default/")


def test_architecture_filters_by_the_product_arch_field():
    doc = catalogue()
    amd = find(doc, "debian/buster", arch="x86_64")
    arm = find(doc, "debian/buster", arch="arm64")
    assert amd.fingerprint == BUSTER_SQUASHFS and arm.fingerprint != amd.fingerprint
    assert "/arm64/" in arm.root.path


def test_product_key_is_never_parsed():
    doc = catalogue()
    doc["products"] = {f"opaque-{i}": p for i, p in enumerate(doc["products"].values())}
    assert find(doc, "debian/buster").fingerprint == BUSTER_SQUASHFS


def test_newest_version_key_wins_and_bad_keys_are_skipped():
    doc = with_incus_items(catalogue())
    versions = doc["products"][BUSTER_AMD64]["versions"]
    recorded = versions["20200304_22:10"]
    newer = copy.deepcopy(recorded)
    newer["items"]["incus.tar.xz"]["combined_squashfs_sha256"] = "1" * 64
    bogus = copy.deepcopy(recorded)
    bogus["items"]["incus.tar.xz"]["combined_squashfs_sha256"] = "2" * 64
    versions.update({"20200310_01:00": newer, "2099": bogus, "zz991231_00:00": bogus})
    pin = find(doc, "debian/buster")
    assert (pin.serial, pin.fingerprint) == ("20200310_01:00", "1" * 64)


def test_newest_version_with_an_image_of_the_wanted_type_wins():
    doc = with_incus_items(catalogue())
    versions = doc["products"][BUSTER_AMD64]["versions"]
    newer = copy.deepcopy(versions["20200304_22:10"])
    newer["items"] = {"incus.tar.xz": newer["items"]["incus.tar.xz"]}  # metadata only: no image
    versions["20200310_01:00"] = newer
    assert find(doc, "debian/buster").serial == "20200304_22:10"


def add_vm_items(doc: dict, *root_ftypes: str) -> dict:
    """Synthetic VM roots on buster/amd64 (the recording has none): fingerprints 'a'.., 'b'.."""
    doc = with_incus_items(doc)
    items = doc["products"][BUSTER_AMD64]["versions"]["20200304_22:10"]["items"]
    fields = {"disk-kvm.img": "combined_disk-kvm-img_sha256", "uefi1.img": "combined_uefi1-img_sha256",
              "disk1.img": "combined_disk1-img_sha256"}
    for letter, ftype in zip("abc", root_ftypes):
        items["incus.tar.xz"][fields[ftype]] = letter * 64
        items[ftype] = {"ftype": ftype, "path": f"images/x/{ftype}", "sha256": "e" * 64, "size": 100}
    return doc


@pytest.mark.parametrize(
    ("ftypes", "chosen"),
    [
        (("disk1.img", "uefi1.img", "disk-kvm.img"), "disk-kvm.img"),
        (("disk1.img", "uefi1.img"), "uefi1.img"),
        (("disk1.img",), "disk1.img"),
    ],
)
def test_virtual_machine_prefers_disk_kvm_then_uefi1_then_disk1(ftypes, chosen):
    pin = find(add_vm_items(catalogue(), *ftypes), "debian/buster", type="virtual-machine")
    assert pin.ftype == chosen
    assert pin.fingerprint == "abc"[ftypes.index(chosen)] * 64
    assert find(add_vm_items(catalogue(), *ftypes), "debian/buster").fingerprint == BUSTER_SQUASHFS


def test_unified_tarball_fingerprint_is_its_sha256():
    doc = catalogue()
    product = doc["products"][BUSTER_AMD64]
    product["versions"]["20200304_22:10"]["items"] = {
        "incus.tar.gz": {"ftype": "incus_combined.tar.gz", "path": "images/u/incus.tar.gz",
                         "sha256": "f" * 64, "size": 1234, "combined_type": "virtual-machine"},
    }
    pin = find(doc, "debian/buster", type="virtual-machine")
    assert (pin.fingerprint, pin.ftype, pin.root) == ("f" * 64, "tar.gz", None)
    assert pin.meta == ImageFile(path="images/u/incus.tar.gz", sha256="f" * 64, size=1234)


def test_unknown_alias_suggests_close_aliases_for_that_arch():
    with pytest.raises(ResolveError) as err:
        find(catalogue(), "debian/bustr")
    assert "images:debian/bustr not found for x86_64" in err.value.message
    assert "debian/buster" in err.value.hint and "arm64" not in err.value.hint


def test_alias_of_another_architecture_says_so():
    with pytest.raises(ResolveError, match="only for aarch64, not x86_64"):
        find(catalogue(), "debian/stretch/arm64", arch="x86_64")


def test_no_image_of_the_wanted_type():
    with pytest.raises(ResolveError) as err:
        find(catalogue(), "debian/buster", type="virtual-machine")
    assert "has no virtual-machine image" in err.value.message and "container" in err.value.hint


@pytest.mark.parametrize(
    ("alias", "arch", "type"),
    [("", "x86_64", "container"), ("a b", "x86_64", "container"), ("debian/12", "sparc", "container"),
     ("debian/12", "x86_64", "vm")],
)
def test_invalid_requests(alias, arch, type):
    with pytest.raises(ResolveError):
        find(catalogue(), alias, arch, type)


@pytest.mark.parametrize(
    ("index", "images", "wanted"),
    [
        (b"{not json", None, "index.json is malformed"),
        (b'{"index": {"images": {"datatype": "image-ids", "path": "x", "products": ["a"]}}}', None,
         "lists no image-downloads"),
        (b'{"index": {"images": {"datatype": "image-downloads", "path": "../../etc", "products": ["a"]}}}',
         None, "not a relative path"),
        (None, b'{"products": {"p": {"arch": "amd64", "versions": []}}}',
         "images.json is malformed: Expected `object`"),
        (None, b"[]", "images.json is malformed"),
    ],
)
def test_malformed_documents_are_source_errors_naming_the_url(index, images, wanted, http_serve, fetcher):
    doc = catalogue()
    files = {"/streams/v1/index.json": index or index_for(doc),
             "/streams/v1/images.json": images or json.dumps(doc).encode()}
    server = http_serve(files)
    with pytest.raises(SourceError) as err:
        resolve_image(fetcher, server.url, "debian/buster", "x86_64", "container")
    assert server.url + "/streams/v1/" in err.value.message
    assert wanted in err.value.message


def test_catalogue_paths_keep_index_order_and_skip_empty_entries():
    index = {"index": {"b": {"datatype": "image-downloads", "path": "streams/v1/b.json", "products": ["x"]},
                       "a": {"datatype": "image-downloads", "path": "streams/v1/a.json", "products": ["x"]},
                       "c": {"datatype": "image-downloads", "path": "streams/v1/c.json", "products": []}}}
    assert catalogue_paths(json.dumps(index).encode(), url="u") == ["streams/v1/a.json", "streams/v1/b.json"]


def test_mirror_invariance_and_offline(http_serve, tmp_path):
    files = simplestreams_files(with_incus_items(catalogue()))
    first, second = http_serve(files), http_serve(files)
    pins = [
        resolve_image(Fetcher(cache_dir=tmp_path / name, timeout=2), server.url, "debian/buster", "x86_64",
                      "container")
        for name, server in (("a", first), ("b", second))
    ]
    assert first.url != second.url
    assert msgspec.json.encode(pins[0]) == msgspec.json.encode(pins[1])
    first.stop()
    second.stop()
    offline = Fetcher(cache_dir=tmp_path / "a", offline=True)
    again = resolve_image(offline, "http://127.0.0.1:9", "debian/buster", "x86_64", "container")
    assert msgspec.json.encode(again) == msgspec.json.encode(pins[0])


# -- local:<alias> through the Incus API (pylxd over a unix socket) --------------------------------


def local_routes(fingerprint: str) -> dict:
    return {
        "/1.0/images/aliases/debian%2F12": {"name": "debian/12", "target": fingerprint, "type": "container"},
        f"/1.0/images/{fingerprint}": {
            "fingerprint": fingerprint, "type": "container", "architecture": "x86_64",
            "properties": {"os": "Debian", "release": "bookworm", "serial": "20250106_0004", "variant": "default"},
        },
    }


def test_local_alias_resolves_through_the_incus_api(fake_incus):
    from anklume.backends.incus.reader import IncusReader

    fingerprint = "ed9172a86d95ae781244acb1b3f1266bd53db415a2d95d094e86c1e4c66c1d35"
    incus = fake_incus(local_routes(fingerprint))
    pin = resolve_local_image(IncusReader(incus.socket), "debian/12", architecture="amd64", type="container")
    assert pin == ImageLocked(fingerprint=fingerprint, serial="20250106_0004", os="Debian",
                              release="bookworm", variant="default")
    assert incus.requests[-2:] == ["/1.0/images/aliases/debian%2F12?project=default",
                                   f"/1.0/images/{fingerprint}?project=default"]


def test_local_alias_missing_or_of_another_type(fake_incus):
    from anklume.backends.incus.reader import IncusReader

    reader = IncusReader(fake_incus(local_routes("c" * 64)).socket)
    with pytest.raises(ResolveError, match="local:nope is not an image alias"):
        resolve_local_image(reader, "nope")
    with pytest.raises(ResolveError, match="not a virtual-machine"):
        resolve_local_image(reader, "debian/12", type="virtual-machine")
    with pytest.raises(ResolveError, match="not aarch64"):
        resolve_local_image(reader, "debian/12", architecture="arm64")


@pytest.mark.parametrize("seed", range(5))
def test_key_order_in_the_json_does_not_change_the_pin(seed):
    doc = with_incus_items(catalogue())
    twin = copy.deepcopy(doc["products"][BUSTER_AMD64])  # the same alias twice: a tie Incus leaves to map order
    twin["versions"]["20200304_22:10"]["items"]["incus.tar.xz"]["combined_squashfs_sha256"] = "0" * 64
    doc["products"]["debian:buster:amd64:twin"] = twin
    rng = random.Random(seed)

    def shuffled(mapping: dict) -> dict:
        keys = list(mapping)
        rng.shuffle(keys)
        return {key: mapping[key] for key in keys}

    doc["products"] = shuffled(doc["products"])
    for product in doc["products"].values():
        for version in product["versions"].values():
            version["items"] = shuffled(version["items"])
    assert find(doc, "debian/buster").fingerprint == "0" * 64

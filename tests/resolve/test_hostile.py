"""What a mirror or an inventory file sends, at its most hostile: names with a trailing
newline, JSON nested a thousand deep, numbers no disk or GPU has.  Each is a SourceError
that names the source, never a crash and never a value in the lock."""

from __future__ import annotations

import json

import msgspec
import pytest

from anklume.errors import SourceError
from anklume.jsonsafe import nesting_depth
from anklume.lock.schema import MAX_BLOB_BYTES, MAX_IMAGE_FILE_BYTES, MAX_LAYERS, MAX_VRAM_MIB, MAX_WHEEL_BYTES
from anklume.model.names import ModelName
from anklume.resolve.http import Fetcher
from anklume.sources import effective_sources
from anklume.store import ArtefactError, ArtefactStore
from anklume.resolve.gpus import join_inventory, parse_inventory_file, parse_nvidia_smi_csv
from anklume.resolve.ollama import parse_manifest
from anklume.resolve.pypi import parse_project, pick_wheel, pin_wheel
from anklume.resolve.simplestreams import catalogue_paths, find_image, resolve_local_image

from tests.support.recorded import GEMMA, H200_RESOURCES, catalogue, index_for, pypi_project

NAME = ModelName(model="gemma", tag="2b")
CARD = {"pci": "0000:00:06.0", "vendor_id": "10de", "product_id": "2335"}


@pytest.mark.parametrize("field", ["pci", "vendor_id", "product_id"])
def test_inventory_ids_with_a_trailing_newline_are_refused(field):
    card = dict(CARD, **{field: CARD[field] + "\n"})
    with pytest.raises(SourceError):
        parse_inventory_file(json.dumps([card]).encode(), source="gpus.json")


def test_manifest_digest_with_a_trailing_newline_is_refused():
    doc = json.loads(GEMMA.read_bytes())
    doc["layers"][0]["digest"] += "\n"
    with pytest.raises(SourceError, match=r"\$\.layers\[0\]\.digest"):
        parse_manifest(json.dumps(doc).encode(), NAME, url="m", digest_headers={})


# -- JSON nested deeper than any real document ---------------------------------------------------

def _deep(depth: int) -> str:
    return "[" * depth + "]" * depth


def _with_deep_field(doc: bytes, depth: int) -> bytes:
    """``doc`` (a JSON object) with an extra field nested ``depth`` deep, first."""
    return b'{"zz_deep": ' + _deep(depth).encode() + b", " + doc.lstrip()[1:]


DEPTHS = [65, 1000, 100_000]


@pytest.mark.parametrize("depth", DEPTHS)
def test_deep_manifests_are_refused(depth):
    for body in (_with_deep_field(GEMMA.read_bytes(), depth), _deep(depth).encode(), b"[" * depth):
        with pytest.raises(SourceError, match="manifest m is malformed"):
            parse_manifest(body, NAME, url="m", digest_headers={})


@pytest.mark.parametrize("depth", DEPTHS)
def test_deep_simplestreams_documents_are_refused(depth):
    doc = catalogue()
    index = _with_deep_field(index_for(doc), depth)
    with pytest.raises(SourceError, match="simplestreams index i is malformed"):
        catalogue_paths(index, url="i")
    body = _with_deep_field(json.dumps(doc).encode(), depth)
    with pytest.raises(SourceError, match="simplestreams catalogue c is malformed"):
        find_image({"c": body}, "debian/buster", "x86_64", "container")


@pytest.mark.parametrize("depth", DEPTHS)
def test_deep_pypi_answers_are_refused(depth):
    body = _with_deep_field(json.dumps(pypi_project()).encode(), depth)
    with pytest.raises(SourceError, match="PyPI answer u is not the JSON API's shape"):
        parse_project(body, url="u")


@pytest.mark.parametrize("depth", DEPTHS)
def test_deep_gpu_inventory_files_are_refused(depth):
    for body in (_deep(depth).encode(), _with_deep_field(H200_RESOURCES.read_bytes(), depth)):
        with pytest.raises(SourceError, match="gpus.json: not JSON"):
            parse_inventory_file(body, source="gpus.json")


def test_json_depth_ignores_brackets_in_strings_and_counts_every_level():
    assert nesting_depth(b'{"a": "[[[[", "b": [1, {"c": "\\"]]"}]}') == 3
    assert nesting_depth(_deep(64).encode()) == 64
    assert nesting_depth(_deep(65).encode()) == 65
    assert nesting_depth(b'"[[[[[[[["') == 0
    # strings that close brackets cannot hide the depth
    hidden = b"[" * 40 + b'"' + b"]" * 40 + b'"' + b"[" * 40 + b"]" * 80
    assert nesting_depth(hidden, limit=100) == 80


# -- numbers no disk or GPU has -------------------------------------------------------------------

@pytest.mark.parametrize("size", [-1, MAX_BLOB_BYTES + 1, 10**30])
def test_model_blob_sizes_are_bounded(size):
    doc = json.loads(GEMMA.read_bytes())
    doc["layers"][0]["size"] = size
    with pytest.raises(SourceError, match=r"\$\.layers\[0\]\.size"):
        parse_manifest(json.dumps(doc).encode(), NAME, url="m", digest_headers={})


def test_a_manifest_with_more_layers_than_a_model_has_is_refused():
    doc = json.loads(GEMMA.read_bytes())
    doc["layers"] = doc["layers"][:1] * (MAX_LAYERS + 1)
    with pytest.raises(SourceError, match=r"\$\.layers"):
        parse_manifest(json.dumps(doc).encode(), NAME, url="m", digest_headers={})


@pytest.mark.parametrize("vram", [-1, MAX_VRAM_MIB + 1, 10**48])
def test_gpu_vram_is_bounded(vram):
    card = dict(CARD, vram_mib=vram)
    with pytest.raises(SourceError):
        parse_inventory_file(json.dumps([card]).encode(), source="gpus.json")


@pytest.mark.parametrize("memory", [f"{MAX_VRAM_MIB + 1} MiB", "1" + "0" * 48, "\u00b2 MiB", "\u0663 MiB", "-1 MiB"])
def test_nvidia_smi_vram_is_a_bounded_number_of_mib(memory):
    """``str.isdigit`` took '²' for a digit (then int() raised); 10^48 MiB was locked."""
    with pytest.raises(SourceError, match="memory.total"):
        parse_nvidia_smi_csv(f"0, GPU-1, H200, 00000000:00:06.0, {memory}\n", source="smi.csv")


@pytest.mark.parametrize("size", [-1, MAX_WHEEL_BYTES + 1, 10**30])
def test_wheel_sizes_are_bounded(size):
    doc = pypi_project()
    for file in doc["urls"]:
        file["size"] = size
    project = parse_project(json.dumps(doc).encode(), url="u")
    wheel = pick_wheel(project.urls, "open-webui", project.info.version)
    with pytest.raises(SourceError, match="impossible name or size"):
        pin_wheel(wheel, project.info.version, source="PyPI")


@pytest.mark.parametrize("name", ["../../../../etc/cron.d/x-1-py3-none-any.whl", "a\\b-1-py3-none-any.whl",
                                  ".hidden-1-py3-none-any.whl", "a b-1-py3-none-any.whl", "x\n-1-py3-none-any.whl"])
def test_wheel_file_names_are_plain_names(name):
    doc = pypi_project()
    project = parse_project(json.dumps(doc).encode(), url="u")
    wheel = msgspec.structs.replace(pick_wheel(project.urls, "open-webui", project.info.version), filename=name)
    with pytest.raises(SourceError, match="impossible name or size"):
        pin_wheel(wheel, project.info.version, source="PyPI")


@pytest.mark.parametrize("size", [0, MAX_IMAGE_FILE_BYTES + 1, 10**30])
def test_image_file_sizes_are_bounded(size):
    doc = catalogue()
    for product in doc["products"].values():
        for version in product["versions"].values():
            for item in version["items"].values():
                item["size"] = size
    with pytest.raises(SourceError, match="lacks a path, a sha256 or a size"):
        find_image({"c": json.dumps(doc).encode()}, "debian/buster", "x86_64", "container")


@pytest.mark.parametrize("path", ["../../etc/passwd", "/etc/passwd", "a/../../b", "http://x/y", "a\\b", "a?b", "a\nb"])
def test_image_file_paths_are_relative_paths(path):
    doc = catalogue()
    for product in doc["products"].values():
        for version in product["versions"].values():
            for item in version["items"].values():
                item["path"] = path
    with pytest.raises(SourceError):
        find_image({"c": json.dumps(doc).encode()}, "debian/buster", "x86_64", "container")


# -- every pin a resolver makes is of the forms the lock accepts -----------------------------------

def test_a_catalogue_os_name_that_is_not_one_line_of_text_is_refused():
    doc = catalogue()
    for product in doc["products"].values():
        product["os"] = "Debian\ninstance_ip: 1.2.3.4"
    with pytest.raises(SourceError, match=r"the pin would be invalid: os: expected one line"):
        find_image({"c": json.dumps(doc).encode()}, "debian/buster", "x86_64", "container")


class _Reader:
    def __init__(self, properties: dict):
        self.properties = properties

    def image_alias(self, alias, project="default"):
        return {"target": "c" * 64}

    def image(self, fingerprint, project="default"):
        return {"fingerprint": fingerprint, "properties": self.properties}


def test_a_local_image_serial_that_is_not_one_line_of_text_is_refused():
    assert resolve_local_image(_Reader({"serial": "20250106_0004"}), "debian/12").serial == "20250106_0004"
    with pytest.raises(SourceError, match="local:debian/12: the pin would be invalid: serial"):
        resolve_local_image(_Reader({"serial": "x\u2028y"}), "debian/12")


def test_nvidia_smi_names_are_checked_like_incus_ones():
    cards = parse_inventory_file(json.dumps([CARD]).encode(), source="gpus.json")
    smi = parse_nvidia_smi_csv("0, GPU-1, H200\x1b[31m, 00000000:00:06.0, 143771 MiB\n", source="smi.csv")
    with pytest.raises(SourceError, match="nvidia-smi: GPU at 0000:00:06.0"):
        join_inventory(cards, smi)


def test_the_lock_assembly_never_records_a_pin_it_would_refuse_to_read():
    """The net under the resolvers: a resolver (here a fake one) that returns a pin out of
    form is an error, not a lock that the next command refuses."""
    from anklume.lock.assemble import lock_infra
    from anklume.lock.schema import ImageLocked
    from anklume.model.load import load_infra

    class Resolver:
        def image(self, original):
            return ImageLocked(fingerprint="../../etc")

    infra = load_infra(b"project_name: p\nglobal: {}\ndomains:\n  d: {subnet_id: 1, machines: {m: {}}}\n")
    with pytest.raises(SourceError, match="images.images:debian/13.locked.fingerprint: expected 64 lower-case"):
        lock_infra(infra, None, Resolver())


# -- malformed mirror URLs ----------------------------------------------------------------------

@pytest.mark.parametrize("url", ["http://[::1", "http://[::1/x", "http://[zz]/x", "http://host:99999",
                                 "http://host:port/x", "http://", "http://:80", "https://a b"])
def test_a_malformed_source_url_is_refused_naming_its_origin(url):
    for field, var in (("images", "ANKLUME_IMAGES_URL"), ("incus", "ANKLUME_INCUS")):
        if field == "incus" and not url.startswith("https"):
            url = url.replace("http://", "https://")
        with pytest.raises(SourceError, match=var):
            effective_sources({}, {var: url})


@pytest.mark.parametrize("url", ["http://[::1]:8080/x", "http://127.0.0.1:8080", "https://mirror.lan/images/",
                                 "http://local_host:1"])
def test_well_formed_source_urls_are_kept(url):
    assert effective_sources({}, {"ANKLUME_IMAGES_URL": url}).images == url.rstrip("/")


def test_a_malformed_url_is_a_source_error_for_the_fetcher_and_the_store(tmp_path):
    with pytest.raises(SourceError, match="cannot fetch http://\\[::1/x"):
        Fetcher(tmp_path).fetch("http://[::1/x", key="k", source="test")
    with pytest.raises(ArtefactError, match="cannot fetch http://\\[::1/x"):
        ArtefactStore(tmp_path).ensure("0" * 64, ["http://[::1/x"])


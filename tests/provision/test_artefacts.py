"""Model placement and the release's file list, against an in-memory instance (the order of the
writes; the real daemon is exercised in tests/integration/test_artefact_drift.py)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import msgspec
import pytest

from anklume.lock.schema import ModelBlob, ModelLocked, ModelOriginal, ModelPin, OllamaLocked, OllamaOriginal, OllamaPin
from anklume.project import Project
from anklume.provision.artefacts import ArtefactSources, ProvisionError, Provisioner, member_names
from anklume.provision.readback import format_release_files, parse_release_files
from anklume.units.inside import inside_units
from tests.support.models import make_model
from tests.units.infra import make_infra, make_lock

MDIR = "/root/.ollama/models"
DOC = {"project_name": "t", "global": {"default_os_image": "local:debian"},
       "domains": {"ai": {"subnet_id": 3, "machines": {"ai-llm": {"ip": "10.100.3.10", "models": ["tiny:1"]}}}}}


class FakeInstance:
    """Files by path; the commands the provisioner runs (mv, rm, the clean-up script); a log."""

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.log: list[tuple[str, ...]] = []
        self.after_mv = None  # called with (src, dest) after each rename

    def mkdir(self, path, mode=0o755):
        pass

    def push(self, path, src, **_options):
        self.files[path] = src if isinstance(src, bytes) else Path(src).read_bytes()
        self.log.append(("push", path))
        return len(self.files[path])

    def exec(self, argv, **_options):
        self.log.append(tuple(argv))
        if argv[0] == "mv":
            self.files[argv[3]] = self.files.pop(argv[2])
            if self.after_mv:
                self.after_mv(argv[2], argv[3])
        elif argv[0] == "rm":
            for p in argv[2:]:
                self.files.pop(p, None)
        elif argv[:2] == ["/bin/sh", "-c"] and argv[3] == "anklume-clean":
            for d in argv[4:]:
                for p in [p for p in self.files if p.rsplit("/", 1)[0] == d and p.endswith(".anklume-partial")]:
                    del self.files[p]
        return type("R", (), {"rc": 0, "stdout": b"", "stderr": b""})()

    def sizes(self, paths):
        return {p: len(self.files[p]) if p in self.files else None for p in paths}

    def sha256(self, paths):
        return {p: hashlib.sha256(self.files[p]).hexdigest() if p in self.files else None for p in paths}


class FakeStore:
    def __init__(self, root: Path, blobs: dict[str, bytes]):
        self.root = root
        self.blobs = blobs

    def ensure(self, want, urls, **_options):
        path = self.root / want
        path.write_bytes(self.blobs["sha256:" + want])
        return path


def setup(tmp_path):
    model = make_model(seed=5, layer_size=4096)
    doc = json.loads(model.manifest)
    blob = lambda d: ModelBlob(mediaType=d["mediaType"], digest=d["digest"], size=d["size"])  # noqa: E731
    pin = ModelPin(original=ModelOriginal(ref="tiny:1"), locked=ModelLocked(
        name="registry.ollama.ai/library/tiny:1", digest=model.digest, manifest=model.manifest.decode(),
        config=blob(doc["config"]), layers=[blob(layer) for layer in doc["layers"]], size=model.size, vram_bytes=0))
    infra = make_infra(DOC)
    ollama = OllamaPin(original=OllamaOriginal(version="0.13.1", architecture="amd64"), locked=OllamaLocked(
        version="0.13.1", asset="ollama-linux-amd64.tgz", url="https://o/ollama.tgz", sha256="2" * 64))
    lock = msgspec.structs.replace(make_lock(infra), models={"tiny:1": pin}, ollama=ollama)
    (model_unit,) = [u for u in inside_units(infra, lock, role_digests={}, vars_digests={},
                                             instance_images={"ai-llm": "f" * 64}) if u.kind == "model"]
    fake = FakeInstance()
    backend = type("B", (), {"instance_io": lambda self, p, i: fake, "record": lambda *a: None})()
    (tmp_path / "store").mkdir()
    prov = Provisioner(backend, Project(tmp_path / "infra.yml"), infra, lock,
                       sources=ArtefactSources("https://o", "https://r", "https://p"),
                       artefacts=FakeStore(tmp_path / "store", model.blobs))
    return prov, model_unit, model, fake


def test_the_manifest_is_renamed_into_place_after_every_blob(tmp_path):
    prov, unit, model, fake = setup(tmp_path)
    stale = f"{MDIR}/blobs/sha256-{'0' * 64}.anklume-partial"
    fake.files[stale] = b"left by an interrupted transfer"
    prov._apply_model(unit)
    manifest = unit.spec["manifest"]
    assert fake.files[manifest] == model.manifest
    assert stale not in fake.files and not any(p.endswith(".anklume-partial") for p in fake.files)
    renames = [entry[3] for entry in fake.log if entry[0] == "mv"]
    assert renames[-1] == manifest and len(renames) == len(model.blobs) + 1
    assert ("push", manifest) not in fake.log  # never written in place: renamed whole
    assert all(not p.startswith(f"{MDIR}/manifests/") for _op, p, *_ in [e for e in fake.log if e[0] == "push"])


def test_a_blob_gone_before_the_manifest_leaves_no_manifest(tmp_path):
    prov, unit, model, fake = setup(tmp_path)
    first = []

    def prune(_src, dest):  # an Ollama server starting meanwhile prunes the blobs no manifest names
        first.append(dest)
        if len(first) == len(model.blobs):
            del fake.files[first[0]]

    fake.after_mv = prune
    with pytest.raises(ProvisionError, match="manifest was not written"):
        prov._apply_model(unit)
    assert unit.spec["manifest"] not in fake.files


def test_release_file_list_round_trip_and_refusals():
    entries = [("lib/ollama/libggml.so", 10, "a" * 64), ("bin/ollama", 3, "b" * 64), ("lib/ollama/x y.so", 0, "c" * 64)]
    data = format_release_files(entries)
    assert data.splitlines()[0] == f"{'b' * 64} 3 bin/ollama".encode()
    assert parse_release_files(data, "/usr/local") == sorted(
        (f"/usr/local/{name}", size, digest) for name, size, digest in entries)
    for bad in (b"", b"zz 1 bin/ollama\n", b"%s x bin/ollama\n" % (b"a" * 64), b"%s 1 /etc/passwd\n" % (b"a" * 64),
                b"%s 1 ../x\n" % (b"a" * 64)):
        with pytest.raises(ValueError):
            parse_release_files(bad, "/usr/local")


def test_member_names_from_tar_listings():
    gnu = b"./\n./bin/\n./bin/ollama\n./lib/ollama/\n./lib/ollama/libggml-base.so\n"
    assert member_names(gnu) == ["bin/ollama", "lib/ollama/libggml-base.so"]
    assert member_names(b"bin/\nbin/ollama\nlib/ollama/cuda_v12/libcudart.so.12\n") == [
        "bin/ollama", "lib/ollama/cuda_v12/libcudart.so.12"]

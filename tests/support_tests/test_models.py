"""Small test models (tests/support/models.py): Ollama's manifest shape, digests, shared blobs."""

from __future__ import annotations

import hashlib
import json

import pytest

from anklume.model.names import parse_model_ref
from anklume.resolve.ollama import parse_manifest
from tests.support.models import (
    CONFIG_MEDIA_TYPE,
    LICENSE,
    LICENSE_TEXT,
    MODEL,
    PARAMS,
    PROJECTOR,
    TEMPLATE,
    lay_out_model,
    make_model,
    split_name,
)


def test_manifest_has_ollamas_shape_and_every_digest_matches():
    model = make_model(seed=7, n_layers=2, layer_size=1 << 20)
    doc = json.loads(model.manifest)
    assert list(doc) == ["schemaVersion", "mediaType", "config", "layers"]
    assert doc["schemaVersion"] == 2
    assert doc["mediaType"] == "application/vnd.docker.distribution.manifest.v2+json"
    assert doc["config"]["mediaType"] == CONFIG_MEDIA_TYPE
    assert [layer["mediaType"] for layer in doc["layers"]] == [MODEL, PROJECTOR, TEMPLATE, PARAMS, LICENSE]
    descriptors = [doc["config"], *doc["layers"]]
    assert all(list(d) == ["mediaType", "digest", "size"] for d in descriptors)
    assert sorted(d["digest"] for d in descriptors) == sorted(model.blobs)
    for d in descriptors:
        data = model.blobs[d["digest"]]
        assert d["digest"] == "sha256:" + hashlib.sha256(data).hexdigest()
        assert d["size"] == len(data)
    assert model.manifest == json.dumps(doc, separators=(",", ":")).encode()  # compact, as served
    weights = model.blobs[doc["layers"][0]["digest"]]
    assert len(weights) == 1 << 20 and weights.startswith(b"GGUF\x03\0\0\0")


def test_config_is_a_configv2():
    model = make_model(1)
    doc = json.loads(model.manifest)
    config = json.loads(model.blobs[doc["config"]["digest"]])
    assert config["model_format"] == "gguf"
    assert {"model_family", "model_families", "model_type", "file_type", "architecture", "os"} <= set(config)
    assert config["rootfs"]["diff_ids"] == [layer["digest"] for layer in doc["layers"]]


def test_anklumes_own_parser_pins_it():
    model = make_model(3, 1, 4096)
    locked = parse_manifest(model.manifest, parse_model_ref("tiny:1b"), url="test", digest_headers={})
    assert locked.digest == model.digest == "sha256:" + hashlib.sha256(model.manifest).hexdigest()
    assert locked.size == model.size == sum(len(b) for b in model.blobs.values())
    assert model.id == model.digest[7:19]
    assert locked.vram_bytes == 4096


def test_deterministic_and_seeded():
    assert make_model(1, 1, 1000) == make_model(1, 1, 1000)
    assert make_model(1, 1, 1000).manifest != make_model(2, 1, 1000).manifest


def test_two_models_share_exactly_the_license_blob():
    a, b = make_model(1, 1, 1000), make_model(2, 1, 1000)
    shared = set(a.blobs) & set(b.blobs)
    assert shared == {"sha256:" + hashlib.sha256(LICENSE_TEXT).hexdigest()}
    assert len(a.blobs) == len(b.blobs) == 5


def test_at_least_one_weight_layer():
    with pytest.raises(ValueError):
        make_model(1, 0)


@pytest.mark.parametrize("name, parts", [
    ("gemma", ("registry.ollama.ai", "library", "gemma", "latest")),
    ("llama3.2:3b", ("registry.ollama.ai", "library", "llama3.2", "3b")),
    ("someone/tiny:1", ("registry.ollama.ai", "someone", "tiny", "1")),
    ("127.0.0.1:5000/library/x:y", ("127.0.0.1:5000", "library", "x", "y")),
    ("http://127.0.0.1:5000/ns/x", ("127.0.0.1:5000", "ns", "x", "latest")),
])
def test_split_name_follows_ollama(name, parts):
    assert split_name(name) == parts
    ref = parse_model_ref(name)
    assert (ref.host, ref.namespace, ref.model, ref.tag) == parts


def test_lay_out_model_writes_ollamas_store(tmp_path):
    model = make_model(1, 1, 1000)
    path = lay_out_model(tmp_path, "llama3.2:3b", *model)
    assert path == tmp_path / "manifests/registry.ollama.ai/library/llama3.2/3b"
    assert path.read_bytes() == model.manifest
    assert sorted(p.name for p in (tmp_path / "blobs").iterdir()) == sorted(
        d.replace(":", "-") for d in model.blobs)

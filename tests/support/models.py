"""Small test models in Ollama's real formats (protocols.md 2.3): manifest, config, layers.

    model = make_model(seed=1, n_layers=1, layer_size=2 << 20)
    manifest, blobs = model                      # bytes, {"sha256:<hex>": bytes}
    model.digest, model.size, model.id           # what Ollama shows: digest, Size(), list ID
    with LocalRegistry() as reg:
        push_model(reg, "library/tiny", "1b", manifest, blobs)   # -> "sha256:<manifest digest>"
    lay_out_model(models_dir, "tiny:1b", manifest, blobs)      # Ollama's on-disk layout

A model has `n_layers` weight layers of `layer_size` deterministic bytes (the first one
`application/vnd.ollama.image.model`, starting with the GGUF magic; any others
`application/vnd.ollama.image.projector`), then template, params and license layers, and a
config blob shaped like Ollama's ConfigV2. Weights, template and params depend on the seed; the
license does not, so any two models share exactly one blob (the license): a test can check that
only the new blobs travel. The manifest JSON is compact, in Go's field order, like the
registry's.
"""

from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path
from typing import NamedTuple

from .registry import DOCKER_MANIFEST_V2, LocalRegistry, sha256_digest

CONFIG_MEDIA_TYPE = "application/vnd.docker.container.image.v1+json"
MODEL = "application/vnd.ollama.image.model"
PROJECTOR = "application/vnd.ollama.image.projector"
TEMPLATE = "application/vnd.ollama.image.template"
PARAMS = "application/vnd.ollama.image.params"
LICENSE = "application/vnd.ollama.image.license"

#: The license layer every test model carries (so every two models share this blob).
LICENSE_TEXT = b"anklume test model license: these bytes are a test double, not a model.\n"

DEFAULT_HOST = "registry.ollama.ai"
DEFAULT_NAMESPACE = "library"


class SmallModel(NamedTuple):
    """A test model: manifest bytes and every blob it names (config included), by digest."""

    manifest: bytes
    blobs: dict[str, bytes]

    @property
    def digest(self) -> str:
        """sha256:<hex> of the exact manifest bytes (what the lock pins)."""
        return sha256_digest(self.manifest)

    @property
    def id(self) -> str:
        """The `ollama list` ID: the first 12 hex of the manifest digest."""
        return self.digest[7:19]

    @property
    def size(self) -> int:
        """Ollama's Manifest.Size(): config size + every layer size."""
        doc = json.loads(self.manifest)
        return doc["config"]["size"] + sum(layer["size"] for layer in doc["layers"])


def weights(seed: int, index: int, size: int) -> bytes:
    """`size` deterministic bytes; a GGUF magic and version 3 in front, like a real model file."""
    head = b"GGUF" + struct.pack("<I", 3)
    body = hashlib.shake_256(f"anklume test weights {seed} {index}".encode()).digest(max(size - 8, 0))
    return (head + body)[:size]


def _descriptor(media_type: str, data: bytes) -> dict:
    return {"mediaType": media_type, "digest": sha256_digest(data), "size": len(data)}


def _compact(doc: object) -> bytes:
    return json.dumps(doc, separators=(",", ":")).encode()


def make_model(seed: int, n_layers: int = 1, layer_size: int = 2 << 20) -> SmallModel:
    """A test model (manifest_bytes, {digest: bytes}); same arguments, same bytes."""
    if n_layers < 1:
        raise ValueError("a model needs at least one weight layer")
    layers: list[tuple[str, bytes]] = [
        (MODEL if i == 0 else PROJECTOR, weights(seed, i, layer_size)) for i in range(n_layers)
    ]
    layers += [
        (TEMPLATE, f"{{{{ .System }}}} {{{{ .Prompt }}}} (test model {seed})".encode()),
        (PARAMS, _compact({"stop": [f"<end {seed}>"], "temperature": 0.5})),
        (LICENSE, LICENSE_TEXT),
    ]
    descriptors = [_descriptor(mt, data) for mt, data in layers]
    config = _compact({  # ConfigV2's field order
        "model_format": "gguf",
        "model_family": "llama",
        "model_families": ["llama"],
        "model_type": f"{n_layers * layer_size // 1_000_000}M",
        "file_type": "Q4_0",
        "architecture": "amd64",
        "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [d["digest"] for d in descriptors]},
    })
    manifest = _compact({
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST_V2,
        "config": _descriptor(CONFIG_MEDIA_TYPE, config),
        "layers": descriptors,
    })
    blobs = {sha256_digest(config): config}
    blobs.update((sha256_digest(data), data) for _, data in layers)
    return SmallModel(manifest, blobs)


def push_model(registry: LocalRegistry, repo: str, tag: str, manifest: bytes,
               blobs: dict[str, bytes]) -> str:
    """Push every blob, then the manifest bytes as given, to `repo:tag`; the manifest digest."""
    for digest, data in sorted(blobs.items()):
        got = registry.push_blob(repo, data)
        assert got == digest, f"blob pushed as {got}, named {digest}"
    return registry.push_manifest(repo, tag, manifest)


def split_name(name: str) -> tuple[str, str, str, str]:
    """(host, namespace, model, tag) of an Ollama model name, with Ollama's defaults
    (types/model/name.go ParseName): `x` -> registry.ollama.ai, library, x, latest."""
    tag = "latest"
    if name.rfind(":") > name.rfind("/"):
        name, tag = name.rsplit(":", 1)
    parts = name.split("/")
    model = parts[-1]
    namespace = parts[-2] if len(parts) >= 2 else DEFAULT_NAMESPACE
    host = "/".join(parts[:-2]) if len(parts) >= 3 else DEFAULT_HOST
    host = host.split("://", 1)[-1]
    return host, namespace, model, tag


def lay_out_model(models_dir: Path, name: str, manifest: bytes, blobs: dict[str, bytes],
                  *, skip_blobs: tuple[str, ...] = ()) -> Path:
    """Write a model the way Ollama keeps it (manifests/<host>/<ns>/<model>/<tag>,
    blobs/sha256-<hex>); `skip_blobs` leaves those digests out. Returns the manifest path."""
    host, namespace, model, tag = split_name(name)
    path = Path(models_dir, "manifests", host, namespace, model, tag)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(manifest)
    (Path(models_dir) / "blobs").mkdir(parents=True, exist_ok=True)
    for digest, data in blobs.items():
        if digest not in skip_blobs:
            (Path(models_dir) / "blobs" / digest.replace(":", "-")).write_bytes(data)
    return path

"""The lockfile schema: every pin keeps what the user wrote (``original``)
and what it resolved to (``locked``), as Nix flake locks do.

The lock records where things come from by their *canonical* public names
(``https://images.linuxcontainers.org``, ``registry.ollama.ai``, the GitHub
release URL, ``files.pythonhosted.org``): a mirror changes where bytes are fetched, never what the lock says.
"""

from __future__ import annotations

from typing import Literal

import msgspec

LOCK_VERSION = 1


class Base(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    pass


# -- images -------------------------------------------------------------------


class ImageOriginal(Base):
    remote: str  # "images" (simplestreams) or "local" (the Incus server's own store)
    alias: str  # "debian/13"
    architecture: str  # Incus name: "x86_64", "aarch64"
    type: Literal["container", "virtual-machine"]


class ImageFile(Base):
    path: str
    sha256: str
    size: int


class ImageLocked(Base):
    fingerprint: str  # Incus fingerprint (sha256 of meta || root, or of the unified tarball)
    serial: str | None = None  # simplestreams version key ("20200304_22:10")
    server: str | None = None  # canonical simplestreams URL; None for local images
    os: str | None = None
    release: str | None = None
    variant: str | None = None
    ftype: str | None = None  # root file type: squashfs, root.tar.xz, disk-kvm.img, ...
    meta: ImageFile | None = None
    root: ImageFile | None = None


class ImagePin(Base):
    original: ImageOriginal
    locked: ImageLocked


# -- Ollama release -------------------------------------------------------------


class OllamaOriginal(Base):
    version: str  # what the user asked for: "0.13.1", or "latest"
    architecture: str  # "amd64" / "arm64" (release asset naming)


class OllamaLocked(Base, omit_defaults=True):
    version: str
    asset: str  # "ollama-linux-amd64.tgz"
    url: str  # canonical GitHub release download URL
    sha256: str
    # bytes of the asset (its Content-Length); None in locks written before it was pinned,
    # which are left out when written, so re-locking keeps such a pin byte for byte
    size: int | None = None


class OllamaPin(Base):
    original: OllamaOriginal
    locked: OllamaLocked


# -- models ---------------------------------------------------------------------


class ModelOriginal(Base):
    ref: str  # exactly what the user wrote: "llama3.2:3b"


class ModelBlob(Base):
    mediaType: str
    digest: str  # "sha256:<hex>"
    size: int


class ModelLocked(Base):
    name: str  # fully qualified: "registry.ollama.ai/library/llama3.2:3b"
    digest: str  # "sha256:<hex>" of the exact manifest bytes served
    manifest: str  # the exact manifest text: placing it by digest needs no registry
    config: ModelBlob
    layers: list[ModelBlob]
    size: int  # sum of layers + config (Ollama's /api/tags size)
    vram_bytes: int  # sum of the layers that occupy VRAM (model, projector, adapter...)


class ModelPin(Base):
    original: ModelOriginal
    locked: ModelLocked


# -- Open WebUI ---------------------------------------------------------------------


class OpenWebUIOriginal(Base):
    version: str  # what the user asked for: "0.12.4", or "latest"


class OpenWebUILocked(Base):
    version: str  # the release's version as PyPI lists it
    filename: str  # the py3-none-any wheel: "open_webui-0.12.4-py3-none-any.whl"
    url: str  # canonical https://files.pythonhosted.org/packages/... URL of the wheel
    sha256: str  # hex, as PyPI's digests.sha256
    size: int
    requires_python: str | None = None  # the wheel's Requires-Python: "<3.13.0a1,>=3.11"


class OpenWebUIPin(Base):
    original: OpenWebUIOriginal
    locked: OpenWebUILocked


# -- GPUs -----------------------------------------------------------------------


class GpuOriginal(Base):
    machine: str
    policy: Literal["exclusive", "shared"]


class GpuLocked(Base):
    pci: str  # "0000:00:06.0" (a slot, not a card: uuid says which card)
    vendor_id: str
    product_id: str
    model: str | None = None
    uuid: str | None = None
    vram_mib: int | None = None


class GpuPin(Base):
    original: GpuOriginal
    locked: GpuLocked


# -- the lock -------------------------------------------------------------------


class Lock(Base):
    version: int
    infra_hash: str  # "blake3:<hex>" of the canonical parsed infra model
    images: dict[str, ImagePin] = {}
    ollama: OllamaPin | None = None
    open_webui: OpenWebUIPin | None = None
    models: dict[str, ModelPin] = {}
    gpus: dict[str, GpuPin] = {}

"""The lockfile schema: every pin keeps what the user wrote (``original``)
and what it resolved to (``locked``), as Nix flake locks do.

The lock records where things come from by their *canonical* public names
(``https://images.linuxcontainers.org``, ``registry.ollama.ai``, the GitHub
release URL, ``files.pythonhosted.org``): a mirror changes where bytes are fetched, never what the lock says.

Every value has a form (a digest, a URL, a file name, a bounded size: see ``FORMS`` and the
``MAX_*`` bounds), checked when a lock is read (``anklume.lock.codec``) as strictly as the
resolvers check what a source sends: a lock is a file anyone can edit, never trusted.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

LOCK_VERSION = 1

# -- bounds: far above any real artefact, low enough that no sum of them leaves 64 bits.
# The resolvers refuse a source that sends more; the lock refuses a pin that records more.

#: One model blob (a layer or the config): 16 TiB; the largest public models are about 1.5 TiB.
MAX_BLOB_BYTES = 2**44
#: Layers in one model manifest (real ones have fewer than 10).
MAX_LAYERS = 64
#: A model's total size: every layer and the config at their largest.
MAX_MODEL_BYTES = (MAX_LAYERS + 1) * MAX_BLOB_BYTES
#: One image file (metadata tarball or root file system): 4 TiB.
MAX_IMAGE_FILE_BYTES = 2**42
#: The Open WebUI wheel: 16 GiB (0.12.4's is 101 MiB).
MAX_WHEEL_BYTES = 2**34
#: The Ollama release asset: 1 TiB (0.13's linux-amd64 .tgz is about 1.7 GB).
MAX_RELEASE_BYTES = 2**40
#: One GPU's memory: 16 TiB, in MiB (an H200 has 143,771 MiB).
MAX_VRAM_MIB = 2**24
#: One file of the GPU driver's user space: 4 GiB (580's libcuda.so is about 100 MB).
MAX_DRIVER_FILE_BYTES = 2**32
#: Files of the GPU driver mounted into a container (the compute and utility set is about 20).
MAX_DRIVER_FILES = 128
#: One cluster member's hardware threads (the largest servers have under 2,000).
MAX_CPU_THREADS = 2**20
#: One cluster member's memory: 1 EiB.
MAX_MEMORY_BYTES = 2**60
#: Members of one cluster (Incus's raft database is meant for tens).
MAX_MEMBERS = 1024


# -- the forms of locked values.  Every pattern is anchored with \A and \Z (msgspec searches
# a pattern, and '$' also matches before a final newline).

#: (pattern, what a user reads) of each form, for error messages.
FORMS: dict[str, str] = {}


def _form(pattern: str, words: str, max_length: int | None = None) -> object:
    FORMS[pattern] = words
    return Annotated[str, msgspec.Meta(pattern=pattern, max_length=max_length, description=words)]


Hex64 = _form(r"\A[0-9a-f]{64}\Z", "64 lower-case hex digits (a sha256)")
Sha256Digest = _form(r"\Asha256:[0-9a-f]{64}\Z", "a digest 'sha256:' and 64 lower-case hex digits")
Blake3Hash = _form(r"\Ablake3:[0-9a-f]{64}\Z", "'blake3:' and 64 lower-case hex digits")
#: An http(s) URL: a host name or IPv4 address, an optional port, a path of printable ASCII.
HttpUrl = _form(r"\Ahttps?://[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?(:[0-9]{1,5})?(/[!-~]*)?\Z",
                "an http:// or https:// URL", 2048)
#: A file name: no '/', not starting with '.' (so never '.' or '..').
FileName = _form(r"\A[A-Za-z0-9_][A-Za-z0-9_.+-]{0,254}\Z", "a file name (letters, digits, '_.+-')")
WheelName = _form(r"\A[A-Za-z0-9_][A-Za-z0-9_.+-]{0,250}\.whl\Z", "a wheel file name (*.whl)")
#: A relative path whose every part starts with a letter, a digit or '_' (so never '..').
RelPath = _form(r"\A[A-Za-z0-9_][A-Za-z0-9_.:+~@=,-]*(/[A-Za-z0-9_][A-Za-z0-9_.:+~@=,-]*)*\Z",
                "a relative path without '..'", 1024)
Version = _form(r"\A[0-9][0-9A-Za-z.+_-]{0,63}\Z", "a version like 0.13.1")
#: What a user wrote where a version is asked ("latest", "0.13.1", "v0.13.1").
VersionRequest = _form(r"\A[A-Za-z0-9][0-9A-Za-z.+_-]{0,63}\Z", "'latest' or a version like 0.13.1")
ArchName = _form(r"\A[a-z0-9_]{1,32}\Z", "an architecture name like x86_64 or amd64")
ImageAlias = _form(r"\A[A-Za-z0-9][A-Za-z0-9_./-]{0,254}\Z", "an image alias like debian/13")
ImageFtype = _form(r"\A[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z", "a simplestreams file type like squashfs")
MediaType = _form(r"\A[A-Za-z0-9][A-Za-z0-9!#$&^_.+/-]{0,254}\Z", "a media type like application/vnd.ollama.image.model")
MachineName = _form(r"\A[a-z]([a-z0-9-]{0,61}[a-z0-9])?\Z", "a machine name")
PciAddress = _form(r"\A[0-9a-f]{4,8}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]\Z", "a PCI address like 0000:00:06.0")
PciId = _form(r"\A[0-9a-f]{4}\Z", "4 lower-case hex digits (a PCI id)")
#: An absolute path whose every part starts with a letter, a digit or '_' (so never '..').
AbsPath = _form(r"\A(/[A-Za-z0-9_][A-Za-z0-9_.:+~@=,-]*)+\Z", "an absolute path without '..'", 1024)
GpuUuid = _form(r"\A[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}\Z", "a GPU UUID like GPU-9e1c631b-...")
#: An Incus cluster member's name (anklume.model.names.MEMBER_RE).
MemberName = _form(r"\A[A-Za-z0-9]([A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?\Z", "a cluster member name like m1")
#: Free text (a GPU model, an OS name, a serial): one line of printable characters.
Text = _form(r"\A[^\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]{0,256}\Z",
             "one line of at most 256 printable characters")



def explain(exc: msgspec.ValidationError) -> tuple[str, str]:
    """``(path, what was expected)`` of a msgspec validation error, in a user's words:
    ``("locked.digest", "expected a digest 'sha256:' and 64 lower-case hex digits")``."""
    text = str(exc)
    text, _, at = text.partition(" - at `$")
    at = at.removesuffix("`").lstrip(".")
    for pattern, words in FORMS.items():
        text = text.replace(f"`str` matching regex {pattern!r}", words)
    text = text.replace("`", "")
    return at, (text[:1].lower() + text[1:]) if text else "invalid value"


def is_form(form: object, value: object) -> bool:
    """Whether ``value`` is of ``form`` (one of the annotated types above)."""
    try:
        msgspec.convert(value, form)
    except msgspec.ValidationError:
        return False
    return True


def form_problem(value: msgspec.Struct) -> str | None:
    """``"<path>: <what was expected>"`` for the first value of ``value`` (a pin, or a part of
    one) that is not of its form, or None.  msgspec checks forms when it decodes, not when
    code builds a struct: the resolvers ask this of every pin they make."""
    try:
        msgspec.convert(msgspec.to_builtins(value), type(value))
    except msgspec.ValidationError as exc:
        at, words = explain(exc)
        return f"{at}: {words}" if at else words
    return None


BlobSize = Annotated[int, msgspec.Meta(ge=0, le=MAX_BLOB_BYTES)]
ModelSize = Annotated[int, msgspec.Meta(ge=0, le=MAX_MODEL_BYTES)]
ImageFileSize = Annotated[int, msgspec.Meta(gt=0, le=MAX_IMAGE_FILE_BYTES)]
WheelSize = Annotated[int, msgspec.Meta(ge=0, le=MAX_WHEEL_BYTES)]
ReleaseSize = Annotated[int, msgspec.Meta(gt=0, le=MAX_RELEASE_BYTES)]
VramMib = Annotated[int, msgspec.Meta(ge=0, le=MAX_VRAM_MIB)]
DriverFileSize = Annotated[int, msgspec.Meta(ge=0, le=MAX_DRIVER_FILE_BYTES)]
#: A cluster member's hardware threads and memory (what placement weighs).
CpuThreads = Annotated[int, msgspec.Meta(ge=1, le=MAX_CPU_THREADS)]
MemoryBytes = Annotated[int, msgspec.Meta(ge=1, le=MAX_MEMORY_BYTES)]


class Base(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    pass


# -- images -------------------------------------------------------------------


class ImageOriginal(Base):
    remote: Literal["images", "local"]  # simplestreams, or the Incus server's own store
    alias: ImageAlias  # "debian/13"
    architecture: ArchName  # Incus name: "x86_64", "aarch64"
    type: Literal["container", "virtual-machine"]


class ImageFile(Base):
    path: RelPath  # relative to the server
    sha256: Hex64
    size: ImageFileSize


class ImageLocked(Base):
    fingerprint: Hex64  # Incus fingerprint (sha256 of meta || root, or of the unified tarball)
    serial: Text | None = None  # simplestreams version key ("20200304_22:10")
    server: HttpUrl | None = None  # canonical simplestreams URL; None for local images
    os: Text | None = None
    release: Text | None = None
    variant: Text | None = None
    ftype: ImageFtype | None = None  # root file type: squashfs, root.tar.xz, disk-kvm.img, ...
    meta: ImageFile | None = None
    root: ImageFile | None = None


class ImagePin(Base):
    original: ImageOriginal
    locked: ImageLocked


# -- Ollama release -------------------------------------------------------------


class OllamaOriginal(Base):
    version: VersionRequest  # what the user asked for: "0.13.1", or "latest"
    architecture: ArchName  # "amd64" / "arm64" (release asset naming)


class OllamaLocked(Base, omit_defaults=True):
    version: Version
    asset: FileName  # "ollama-linux-amd64.tgz"
    url: HttpUrl  # canonical GitHub release download URL, ending in /<asset>
    sha256: Hex64
    # bytes of the asset (its Content-Length); None in locks written before it was pinned,
    # which are left out when written, so re-locking keeps such a pin byte for byte
    size: ReleaseSize | None = None


class OllamaPin(Base):
    original: OllamaOriginal
    locked: OllamaLocked


# -- models ---------------------------------------------------------------------


class ModelOriginal(Base):
    ref: Annotated[str, msgspec.Meta(max_length=1024)]  # exactly what the user wrote: "llama3.2:3b"


class ModelBlob(Base):
    mediaType: MediaType
    digest: Sha256Digest  # "sha256:<hex>"
    size: BlobSize


class ModelLocked(Base):
    name: Annotated[str, msgspec.Meta(max_length=1024)]  # fully qualified: "registry.ollama.ai/library/llama3.2:3b"
    digest: Sha256Digest  # "sha256:<hex>" of the exact manifest bytes served
    manifest: Annotated[str, msgspec.Meta(max_length=1 << 20)]  # the exact manifest text: placing it by digest needs no registry
    config: ModelBlob
    layers: Annotated[list[ModelBlob], msgspec.Meta(min_length=1, max_length=MAX_LAYERS)]
    size: ModelSize  # sum of layers + config (Ollama's /api/tags size)
    vram_bytes: ModelSize  # sum of the layers that occupy VRAM (model, projector, adapter...)


class ModelPin(Base):
    original: ModelOriginal
    locked: ModelLocked


# -- Open WebUI ---------------------------------------------------------------------


class OpenWebUIOriginal(Base):
    version: VersionRequest  # what the user asked for: "0.12.4", or "latest"


class OpenWebUILocked(Base):
    version: Version  # the release's version as PyPI lists it
    filename: WheelName  # the py3-none-any wheel: "open_webui-0.12.4-py3-none-any.whl"
    url: HttpUrl  # canonical https://files.pythonhosted.org/packages/... URL of the wheel, ending in /<filename>
    sha256: Hex64  # hex, as PyPI's digests.sha256
    size: WheelSize
    requires_python: Text | None = None  # the wheel's Requires-Python: "<3.13.0a1,>=3.11"


class OpenWebUIPin(Base):
    original: OpenWebUIOriginal
    locked: OpenWebUILocked


# -- GPUs -----------------------------------------------------------------------


class GpuOriginal(Base):
    machine: MachineName
    policy: Literal["exclusive", "shared"]


class GpuLocked(Base):
    pci: PciAddress  # "0000:00:06.0" (a slot, not a card: uuid says which card)
    vendor_id: PciId
    product_id: PciId
    model: Text | None = None
    uuid: GpuUuid | None = None
    vram_mib: VramMib | None = None


class GpuDriverFile(Base):
    """One file of the host's driver, mounted read-only into the container."""

    target: AbsPath  # in the container: "/usr/lib/x86_64-linux-gnu/libcuda.so.1"
    source: AbsPath  # on the host, links resolved: "/usr/lib/x86_64-linux-gnu/libcuda.so.580.159.04"
    sha256: Hex64
    size: DriverFileSize


class GpuDriver(Base, omit_defaults=True):
    """How the host's NVIDIA driver reaches a GPU container, and which driver it is.

    ``runtime``: Incus's ``nvidia.runtime=true`` (the host's libnvidia-container mounts the
    driver); ``files``: the ``files`` below, as read-only ``disk`` devices.  A VM gets the card
    only (its guest needs its own driver): its pin has no ``driver``."""

    mode: Literal["runtime", "files"]
    version: Version  # nvidia-smi's driver_version: "580.159.04"
    cuda: Version | None = None  # the CUDA version the driver supports: "13.0"
    files: Annotated[list[GpuDriverFile], msgspec.Meta(max_length=MAX_DRIVER_FILES)] = []


class GpuPin(Base, omit_defaults=True):
    original: GpuOriginal
    locked: GpuLocked
    # None in locks written before the driver was pinned (and for VMs): the container gets the
    # card only, as then; left out when written, so such a pin is kept byte for byte
    driver: GpuDriver | None = None
    #: the cluster member whose slot ``locked.pci`` is (None: a single Incus server)
    member: MemberName | None = None


# -- an Incus cluster: its members and where each machine runs ------------------------------------


class ClusterMember(Base, omit_defaults=True):
    """A member as placement saw it (``/1.0/cluster/members`` and ``/1.0/resources?target=``).
    ``cpu_threads`` and ``memory_bytes`` are None for a member that was offline when it was read:
    it takes only the machines that name it."""

    architecture: ArchName
    cpu_threads: CpuThreads | None = None
    memory_bytes: MemoryBytes | None = None


class PlacementOriginal(Base, omit_defaults=True):
    """What infra.yml asks: the machine's ``target``, else its domain's (None: anklume chooses)."""

    target: MemberName | None = None


class PlacementLocked(Base):
    member: MemberName
    reason: Text  # why this member: "target of machine web", "GPU 0000:04:00.0 free", "spread: ..."


class Placement(Base):
    original: PlacementOriginal
    locked: PlacementLocked


class Cluster(Base):
    """The Incus cluster the lock was made for: its members, and each machine's member."""

    members: Annotated[dict[MemberName, ClusterMember], msgspec.Meta(min_length=1, max_length=MAX_MEMBERS)]
    placement: dict[MachineName, Placement] = {}


# -- the lock -------------------------------------------------------------------


class Lock(Base):
    version: int
    infra_hash: Blake3Hash  # "blake3:<hex>" of the canonical parsed infra model
    images: dict[str, ImagePin] = {}
    ollama: OllamaPin | None = None
    open_webui: OpenWebUIPin | None = None
    models: dict[str, ModelPin] = {}
    gpus: dict[str, GpuPin] = {}
    #: None: a single Incus server (and the key is left out when written: such locks are as before)
    cluster: Cluster | None = None

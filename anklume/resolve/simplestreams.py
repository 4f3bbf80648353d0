"""Incus image aliases -> fingerprints, the way Incus itself resolves them.

Implements protocols.md §1.3-1.4 (lxc/incus ``shared/simplestreams``):

- the index (``streams/v1/index.json``) names the catalogues: entries whose ``datatype`` is
  ``image-downloads`` and whose ``products`` list is not empty;
- a product matches when its ``arch`` field is the wanted architecture (never parse the
  product key) and the alias is one of its comma-separated ``aliases`` or
  ``<alias>/<product arch>`` (Incus's "medium" name, e.g. ``debian/13/amd64``);
- each version yields images: a unified ``incus_combined.tar.gz`` (fingerprint = its
  sha256), or the metadata item ``incus.tar.xz`` paired with each root item, fingerprint
  read from the metadata item by root ftype (:data:`FINGERPRINT_FIELDS`).  LXD-era
  catalogues name the same items ``lxd.tar.xz`` / ``lxd_combined.tar.gz``: accepted, the
  ``incus`` names preferred when a version has both;
- among matching images of the wanted type: ``os``, ``release``, ``variant`` ascending
  (empty last), then the version key descending (newest first), then the root ftype
  preference squashfs < root.tar.xz (containers), disk-kvm.img < uefi1.img < disk1.img (VMs).

Version keys shorter than 8 characters or not starting with a ``YYYYMMDD`` date are skipped,
as Incus skips them.  The parsers are pure; :func:`resolve_image` fetches the bytes.
"""

from __future__ import annotations

import datetime
import difflib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol

import msgspec

from anklume import jsonsafe
from anklume.errors import ResolveError, SourceError
from anklume.lock.schema import MAX_IMAGE_FILE_BYTES, ImageFile, ImageLocked, RelPath, form_problem, is_form
from anklume.resolve.limits import CATALOGUE_LIMIT, Limit
from anklume.sources import CANONICAL_IMAGES, source_hint

if TYPE_CHECKING:
    from anklume.resolve.http import Fetcher

ImageType = Literal["container", "virtual-machine"]

#: Incus architecture name -> the other names a simplestreams ``arch`` field may use.
ARCHITECTURES: dict[str, tuple[str, ...]] = {
    "x86_64": ("amd64",),
    "aarch64": ("arm64",),
    "i686": ("i386",),
    "armv7l": ("armhf", "armel"),
    "ppc64le": ("ppc64el",),
    "s390x": (),
    "riscv64": (),
    "loongarch64": ("loong64",),
}

#: Root ftype -> (image type, fields of the metadata item holding the fingerprint, in order).
FINGERPRINT_FIELDS: dict[str, tuple[ImageType, tuple[str, ...]]] = {
    "squashfs": ("container", ("combined_squashfs_sha256",)),
    "root.tar.xz": ("container", ("combined_rootxz_sha256", "combined_sha256")),
    "disk-kvm.img": ("virtual-machine", ("combined_disk_kvm_img_sha256",)),
    "uefi1.img": ("virtual-machine", ("combined_uefi1_img_sha256",)),
    "disk1.img": ("virtual-machine", ("combined_disk1_img_sha256",)),
}

#: Incus's root ftype preference (lower first); anything else (unified "tar.gz") scores 0.
FTYPE_PREFERENCE = ("squashfs", "root.tar.xz", "disk-kvm.img", "uefi1.img", "disk1.img")

META_FTYPES = ("incus.tar.xz", "lxd.tar.xz")  # preferred first
UNIFIED_FTYPES = ("incus_combined.tar.gz", "lxd_combined.tar.gz")  # preferred first
UNIFIED_TYPE = "tar.gz"  # what Incus calls the root type of a unified image

_SHA256 = re.compile(r"[0-9a-f]{64}")
_ALIAS = re.compile(r"[^\s,]+")


# -- the JSON shapes (lenient: unknown fields are ignored, as Incus ignores them) ----------


class _Item(msgspec.Struct):
    ftype: str = ""
    path: str = ""
    sha256: str = ""
    size: int = 0
    combined_sha256: str = ""
    combined_rootxz_sha256: str = ""
    combined_squashfs_sha256: str = ""
    combined_disk_kvm_img_sha256: str = msgspec.field(default="", name="combined_disk-kvm-img_sha256")
    combined_disk1_img_sha256: str = msgspec.field(default="", name="combined_disk1-img_sha256")
    combined_uefi1_img_sha256: str = msgspec.field(default="", name="combined_uefi1-img_sha256")
    combined_type: str = ""


class _Version(msgspec.Struct):
    items: dict[str, _Item] = {}


class _Product(msgspec.Struct):
    arch: str = ""
    aliases: str = ""
    os: str = ""
    release: str = ""
    variant: str = ""
    versions: dict[str, _Version] = {}


class _Catalogue(msgspec.Struct):
    products: dict[str, _Product]


class _IndexEntry(msgspec.Struct):
    datatype: str = ""
    path: str = ""
    products: list[str] = []


class _Index(msgspec.Struct):
    index: dict[str, _IndexEntry]


@dataclass(frozen=True)
class _Image:
    """One image a catalogue offers (what Incus's ``Products.ToAPI`` yields)."""

    url: str  # the catalogue it came from, for error messages
    product: _Product
    serial: str
    type: ImageType
    ftype: str
    fingerprint: str
    meta: _Item
    root: _Item | None


# -- pure parsing ------------------------------------------------------------------------


def incus_architecture(name: str) -> str | None:
    """The Incus name of an architecture written either way (``amd64`` -> ``x86_64``)."""
    for incus_name, others in ARCHITECTURES.items():
        if name == incus_name or name in others:
            return incus_name
    return None


def catalogue_paths(index_json: bytes, *, url: str) -> list[str]:
    """Paths of the image catalogues listed in ``streams/v1/index.json``, in index key order."""
    try:
        index = jsonsafe.decode(index_json, type=_Index)
    except msgspec.DecodeError as err:
        raise SourceError(f"simplestreams index {url} is malformed: {err}") from None
    paths = [
        entry.path
        for _, entry in sorted(index.index.items())
        if entry.datatype == "image-downloads" and entry.products
    ]
    if not paths:
        raise SourceError(f"simplestreams index {url} lists no image-downloads catalogue")
    for path in paths:
        _check_relative(path, url)
    return paths


def find_image(
    catalogues: Mapping[str, bytes],
    alias: str,
    architecture: str,
    type: ImageType,
    *,
    server: str = CANONICAL_IMAGES,
) -> ImageLocked:
    """Resolve ``alias`` for ``architecture`` and ``type`` in the catalogues (URL -> JSON).

    ``server`` is the canonical server recorded in the pin, whatever URL served the bytes.
    """
    arch = _check_request(alias, architecture, type)
    where = " + ".join(catalogues)
    images = [image for url, body in catalogues.items() for image in _catalogue_images(body, url)]
    matching = [image for image in images if _has_alias(image.product, alias)]
    here = [image for image in matching if incus_architecture(image.product.arch) == arch]
    if not here:
        raise _alias_not_found(alias, arch, images, matching, where)
    wanted = [image for image in here if image.type == type]
    if not wanted:
        offered = sorted({image.type for image in here})
        raise ResolveError(
            f"images:{alias} ({arch}) has no {type} image in {where}",
            f"it offers: {', '.join(offered)}",
        )
    return _pin(_newest(wanted), server)


def _check_request(alias: str, architecture: str, type: str) -> str:
    """Validate the request; return the Incus architecture name."""
    _check_alias(alias)
    if type not in ("container", "virtual-machine"):
        raise ResolveError(f"image type {type!r} is neither container nor virtual-machine")
    return _known_architecture(architecture)


def _check_alias(alias: str) -> None:
    if not _ALIAS.fullmatch(alias):
        raise ResolveError(f"image alias {alias!r} is empty or contains spaces or commas")


def _known_architecture(architecture: str) -> str:
    arch = incus_architecture(architecture)
    if arch is None:
        raise ResolveError(f"unknown architecture {architecture!r}", f"known: {', '.join(ARCHITECTURES)}")
    return arch


def _catalogue_images(body: bytes, url: str) -> list[_Image]:
    try:
        catalogue = jsonsafe.decode(body, type=_Catalogue)
    except msgspec.DecodeError as err:
        raise SourceError(f"simplestreams catalogue {url} is malformed: {err}") from None
    return [
        image
        for product in catalogue.products.values()
        if incus_architecture(product.arch) is not None
        for serial, version in product.versions.items()
        if _is_version_key(serial)
        for image in _version_images(url, product, serial, version)
    ]


def _is_version_key(name: str) -> bool:
    """Incus reads ``name[0:8]`` as a ``YYYYMMDD`` date and skips the version otherwise."""
    if len(name) < 8:
        return False
    try:
        datetime.datetime.strptime(name[:8], "%Y%m%d")
    except ValueError:
        return False
    return True


def _version_images(url: str, product: _Product, serial: str, version: _Version) -> list[_Image]:
    items = [version.items[key] for key in sorted(version.items)]
    images = []
    unified = _first_of(items, UNIFIED_FTYPES)
    if unified is not None and unified.sha256:
        kind: ImageType = "virtual-machine" if unified.combined_type == "virtual-machine" else "container"
        images.append(_Image(url, product, serial, kind, UNIFIED_TYPE, unified.sha256, unified, None))
    meta = _first_of(items, META_FTYPES)
    if meta is not None:
        for root in items:
            if root.ftype in FINGERPRINT_FIELDS:
                kind, fields = FINGERPRINT_FIELDS[root.ftype]
                fingerprint = next((getattr(meta, f) for f in fields if getattr(meta, f)), "")
                if fingerprint:
                    images.append(_Image(url, product, serial, kind, root.ftype, fingerprint, meta, root))
    return images


def _first_of(items: list[_Item], ftypes: tuple[str, ...]) -> _Item | None:
    """The first item whose ftype is the most preferred of ``ftypes`` present."""
    for ftype in ftypes:
        for item in items:
            if item.ftype == ftype:
                return item
    return None


def _alias_names(product: _Product) -> list[str]:
    """The names Incus registers for a product: each alias, and ``<alias>/<product arch>``."""
    short = product.aliases.split(",") if product.aliases else []
    return [name for alias in short for name in (alias, f"{alias}/{product.arch}")]


def _has_alias(product: _Product, alias: str) -> bool:
    return alias in _alias_names(product)


def _newest(images: list[_Image]) -> _Image:
    """Incus's preferred image: os/release/variant ascending, serial descending, ftype.

    Ties Incus leaves to map order are broken by ftype name and fingerprint, so the answer
    never depends on the order of keys in the JSON.
    """

    def rank(ftype: str) -> int:
        return FTYPE_PREFERENCE.index(ftype) if ftype in FTYPE_PREFERENCE else 0

    ordered = sorted(images, key=lambda i: (rank(i.ftype), i.ftype != "squashfs", i.ftype, i.fingerprint))
    ordered.sort(key=lambda i: i.serial, reverse=True)
    ordered.sort(key=lambda i: [(v == "", v) for v in (i.product.os, i.product.release, i.product.variant)])
    return ordered[0]


def _alias_not_found(
    alias: str, arch: str, images: list[_Image], matching: list[_Image], where: str
) -> ResolveError:
    elsewhere = sorted({incus_architecture(i.product.arch) or "" for i in matching})
    if elsewhere:
        return ResolveError(
            f"images:{alias} exists in {where} only for {', '.join(elsewhere)}, not {arch}",
            "pick an alias without an architecture suffix, or the machine's architecture",
        )
    products = [i.product for i in images if incus_architecture(i.product.arch) == arch]
    names = sorted({name for product in products for name in _alias_names(product)})
    close = difflib.get_close_matches(alias, names, n=5, cutoff=0.6)
    hint = f"close aliases for {arch}: {', '.join(close)}" if close else "see `incus image list images:`"
    return ResolveError(f"images:{alias} not found for {arch} in {where}", hint)


def _pin(image: _Image, server: str) -> ImageLocked:
    url = image.url
    if not _SHA256.fullmatch(image.fingerprint):
        raise SourceError(f"simplestreams catalogue {url}: fingerprint {image.fingerprint!r} is not a sha256")
    locked = ImageLocked(
        fingerprint=image.fingerprint,
        serial=image.serial,
        server=server,
        os=image.product.os or None,
        release=image.product.release or None,
        variant=image.product.variant or None,
        ftype=image.ftype,
        meta=_file(image.meta, url),
        root=_file(image.root, url) if image.root is not None else None,
    )
    problem = form_problem(locked)
    if problem is not None:
        raise SourceError(f"simplestreams catalogue {url}: the pin would be invalid: {problem}")
    return locked


def _file(item: _Item, url: str) -> ImageFile:
    if not is_form(RelPath, item.path) or not _SHA256.fullmatch(item.sha256) or not 0 < item.size <= MAX_IMAGE_FILE_BYTES:
        raise SourceError(
            f"simplestreams catalogue {url}: item {item.ftype!r} lacks a path, a sha256 or a size",
            f"a path relative to the server without '..', and a size of 1 to {MAX_IMAGE_FILE_BYTES} bytes (4 TiB)",
        )
    return ImageFile(path=item.path, sha256=item.sha256, size=item.size)


def _check_relative(path: str, url: str) -> None:
    parts = path.split("/")
    if not path or path.startswith("/") or "://" in path or ".." in parts or any(c in path for c in "?#\\"):
        raise SourceError(f"simplestreams index {url}: catalogue path {path!r} is not a relative path")


# -- fetching ------------------------------------------------------------------------------


def resolve_image(
    fetcher: Fetcher,
    base_url: str,
    alias: str,
    architecture: str,
    type: ImageType,
    canonical: str = CANONICAL_IMAGES,
) -> ImageLocked:
    """Fetch the index and catalogues from ``base_url`` and resolve ``alias``.

    Cache keys and the pin use ``canonical``, so a mirror yields the same pin.
    """
    base, canonical = base_url.rstrip("/"), canonical.rstrip("/")
    source = f"simplestreams {base}"

    left = [CATALOGUE_LIMIT.size]  # what the index and the catalogues may still weigh, together

    def get(path: str) -> bytes:
        body = fetcher.fetch(
            f"{base}/{path}", key=f"{canonical}/{path}", source=source, hint=source_hint("images"),
            limit=Limit(max(left[0], 1), CATALOGUE_LIMIT.what, total=CATALOGUE_LIMIT.size),
        ).body
        left[0] -= len(body)
        return body

    index_path = "streams/v1/index.json"
    paths = catalogue_paths(get(index_path), url=f"{base}/{index_path}")
    catalogues = {f"{base}/{path}": get(path) for path in paths}
    return find_image(catalogues, alias, architecture, type, server=canonical)


# -- the Incus server's own image store (``local:<alias>``) -----------------------------------


class ImageReader(Protocol):
    """What :func:`resolve_local_image` needs from an Incus client (see backends.incus)."""

    def image_alias(self, alias: str, project: str = "default") -> dict | None: ...

    def image(self, fingerprint: str, project: str = "default") -> dict: ...


def resolve_local_image(
    reader: ImageReader,
    alias: str,
    *,
    architecture: str | None = None,
    type: ImageType | None = None,
    project: str = "default",
) -> ImageLocked:
    """Pin ``local:<alias>``: the image an alias names in the Incus server's own store.

    When ``architecture`` / ``type`` are given, the image must have them.
    """
    _check_alias(alias)
    entry = reader.image_alias(alias, project)
    if entry is None:
        raise ResolveError(
            f"local:{alias} is not an image alias on the Incus server (project {project})",
            "`incus image alias list` shows the aliases",
        )
    image = reader.image(str(entry.get("target", "")), project)
    fingerprint = str(image.get("fingerprint", ""))
    if not _SHA256.fullmatch(fingerprint):
        raise SourceError(f"Incus image for local:{alias} has no valid fingerprint: {fingerprint!r}")
    if architecture is not None:
        arch = _known_architecture(architecture)
        if image.get("architecture") != arch:
            raise ResolveError(f"local:{alias} is a {image.get('architecture')} image, not {arch}")
    if type is not None and image.get("type") != type:
        raise ResolveError(f"local:{alias} is a {image.get('type')} image, not a {type}")
    properties = image.get("properties") or {}
    locked = ImageLocked(
        fingerprint=fingerprint,
        serial=properties.get("serial") or None,
        os=properties.get("os") or None,
        release=properties.get("release") or None,
        variant=properties.get("variant") or None,
    )
    problem = form_problem(locked)
    if problem is not None:
        raise SourceError(f"Incus image for local:{alias}: the pin would be invalid: {problem}")
    return locked

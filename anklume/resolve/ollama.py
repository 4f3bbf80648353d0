"""Ollama: a release version -> asset URL + sha256; a model ref -> manifest digest.

Releases (protocols.md §3).  Every GitHub release carries ``sha256sum.txt``
(``<hex>  ./<asset>`` lines, unsorted); the pin records the canonical
``https://github.com/ollama/ollama/releases/download/v<version>/<asset>`` URL and its
sha256, whichever URL the checksums were fetched from, and the asset's size: the
``Content-Length`` the source gives to a ``HEAD`` of ``<base>/v<version>/<asset>``
(GitHub redirects it to its CDN, which answers it).

Mirror contract for releases.  A releases source (``ANKLUME_OLLAMA_RELEASES`` /
``global.sources.ollama_releases``) is a base URL laid out like GitHub's
``.../releases/download``:

- ``<base>/v<version>/sha256sum.txt`` is the checksum file of that release, and
  ``<base>/v<version>/<asset>`` each asset (only its length is asked at lock time: ``HEAD``,
  or a ``GET`` of its first byte for a source that refuses ``HEAD``);
- for ``version: latest`` anklume asks the source itself, so a mirror can answer too:
  if ``<base>`` ends in ``/download`` it requests ``<base minus /download>/latest/download/
  sha256sum.txt`` (GitHub's own form), otherwise ``<base>/latest/sha256sum.txt``.  The
  answer must come through a redirect chain that passes ``.../v<version>/sha256sum.txt``;
  the version is read from that URL (GitHub then redirects on to its CDN, whose URL names
  no version).  A mirror that serves ``latest`` without such a redirect cannot be used for
  ``latest``: pin a version instead.

Models (protocols.md §2).  ``GET <base>/v2/<namespace>/<model>/manifests/<tag>`` with the
Docker v2 manifest ``Accept`` header.  The digest is the sha256 of the exact bytes served,
never of a re-serialisation, and must agree with a ``Docker-Content-Digest`` or
``Ollama-Content-Digest`` header when the registry sends one.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Annotated

import msgspec

from anklume import jsonsafe
from anklume.errors import ResolveError, SourceError
from anklume.model.needs import RELEASE_ARCH
from anklume.lock.schema import (MAX_LAYERS, BlobSize, MediaType, ModelBlob, ModelLocked, OllamaLocked, Sha256Digest,
                                 form_problem)
from anklume.model.names import ModelName, parse_model_ref
from anklume.resolve.fetched import Fetched, HttpStatusError
from anklume.resolve.limits import CHECKSUMS_LIMIT, MANIFEST_LIMIT
from anklume.sources import CANONICAL_OLLAMA_RELEASES, OLLAMA_REGISTRY_HOST, source_hint

if TYPE_CHECKING:
    from anklume.resolve.http import Fetcher

# -- releases ------------------------------------------------------------------------------

CANONICAL_LATEST = CANONICAL_OLLAMA_RELEASES.removesuffix("/download") + "/latest/download/sha256sum.txt"

_SUM_LINE = re.compile(r"([0-9a-fA-F]{64}) [ *](\S.*)")
_VERSION = re.compile(r"[0-9]+(\.[0-9]+)*(-[0-9A-Za-z.]+)?")
_ARCH = re.compile(r"[a-z0-9_]+")
_VERSIONED_SUMS = re.compile(r"/v([0-9][0-9A-Za-z.\-]*)/sha256sum\.txt\Z")


def parse_sha256sum(text: str, *, source: str = "sha256sum.txt") -> dict[str, str]:
    """Asset name -> lowercase hex digest, from ``sha256sum`` output.

    Accepts text (``<hex>  <name>``) and binary (``<hex> *<name>``) mode lines, strips a
    leading ``./`` from names and skips blank lines; any other line is an error.
    """
    sums: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        match = _SUM_LINE.fullmatch(line.rstrip("\r"))
        if match is None:
            raise SourceError(f"{source}: line {number} is not '<sha256>  <file>': {line[:80]!r}")
        digest, name = match.group(1).lower(), match.group(2).removeprefix("./")
        if sums.get(name, digest) != digest:
            raise SourceError(f"{source}: {name} is listed twice with different digests")
        sums[name] = digest
    if not sums:
        raise SourceError(f"{source}: no checksums in it")
    return sums


def release_arch(arch: str) -> str:
    """Ollama's name for ``arch`` (``x86_64`` -> ``amd64``), validated."""
    name = RELEASE_ARCH.get(arch, arch)
    if not _ARCH.fullmatch(name):
        raise ResolveError(f"Ollama architecture {arch!r} is not a name like amd64 or arm64")
    return name


def pick_asset(names: Iterable[str], arch: str) -> str:
    """The Linux build for ``arch`` among a release's assets.

    Preference: ``ollama-linux-<arch>.tar.zst`` (>= 0.14), ``.tgz`` (0.3.7-0.13),
    then the bare binary (<= 0.3.6).  ROCm, JetPack and MLX variants are never chosen.
    """
    arch = release_arch(arch)
    available = set(names)
    stem = f"ollama-linux-{arch}"
    for candidate in (f"{stem}.tar.zst", f"{stem}.tgz", stem):
        if candidate in available:
            return candidate
    linux = sorted(name for name in available if name.startswith("ollama-linux-"))
    raise ResolveError(
        f"no {stem} build (.tar.zst, .tgz or bare binary) in the release",
        f"its Linux assets: {', '.join(linux)}" if linux else "it has no Linux assets",
    )


def resolve_release(fetcher: Fetcher, base: str, version: str, arch: str) -> OllamaLocked:
    """Pin Ollama ``version`` (or ``latest``) for ``arch`` from the releases source ``base``."""
    base = base.rstrip("/")
    arch = release_arch(arch)
    source = f"Ollama releases {base}"
    if version == "latest":
        fetched = _fetch_release_sums(fetcher, _latest_url(base), CANONICAL_LATEST, source, "latest")
        version = _version_from_redirects(fetched, source)
    else:
        version = _check_version(version)
        key = f"{CANONICAL_OLLAMA_RELEASES}/v{version}/sha256sum.txt"
        fetched = _fetch_release_sums(fetcher, f"{base}/v{version}/sha256sum.txt", key, source, version)
    sums = parse_sha256sum(_text(fetched.body, fetched.final_url), source=f"{source}: {fetched.final_url}")
    try:
        asset = pick_asset(sums, arch)
    except ResolveError as err:
        raise ResolveError(f"Ollama v{version}: {err.message}", err.hint) from None
    canonical = f"{CANONICAL_OLLAMA_RELEASES}/v{version}/{asset}"
    locked = OllamaLocked(version=version, asset=asset, url=canonical, sha256=sums[asset])
    problem = form_problem(locked)
    if problem is not None:  # an asset name no file may have, say
        raise SourceError(f"{source}: {fetched.final_url}: the pin would be invalid: {problem}")
    size = _asset_size(fetcher, f"{base}/v{version}/{asset}", canonical, source, version, asset)
    locked = msgspec.structs.replace(locked, size=size)
    problem = form_problem(locked)
    if problem is not None:  # a size beyond any release's
        raise SourceError(f"{source}: {base}/v{version}/{asset}: the pin would be invalid: {problem}")
    return locked


def _asset_size(fetcher: Fetcher, url: str, canonical: str, source: str, version: str, asset: str) -> int:
    """The asset's length from the releases source (HEAD; see Fetcher.content_length): the
    store then never writes more than that, nor waits for more."""
    try:
        return fetcher.content_length(url, key=canonical, source=source, hint=source_hint("ollama_releases"))
    except HttpStatusError as err:
        if err.status != 404:
            raise
        raise ResolveError(f"Ollama v{version}: sha256sum.txt lists {asset} but {url} answered 404",
                           source_hint("ollama_releases")) from None


def _check_version(version: str) -> str:
    bare = version.removeprefix("v")
    if not _VERSION.fullmatch(bare):
        raise ResolveError(f"Ollama version {version!r} is not 'latest' or a version like 0.13.1")
    return bare


def _latest_url(base: str) -> str:
    """Where the source answers "latest" (see the module docstring)."""
    if base.endswith("/download"):
        return base.removesuffix("/download") + "/latest/download/sha256sum.txt"
    return f"{base}/latest/sha256sum.txt"


def _fetch_release_sums(fetcher: Fetcher, url: str, key: str, source: str, version: str) -> Fetched:
    try:
        return fetcher.fetch(url, key=key, source=source, hint=source_hint("ollama_releases"), limit=CHECKSUMS_LIMIT)
    except HttpStatusError as err:
        if err.status != 404:
            raise
        release = version if version == "latest" else f"v{version}"
        raise ResolveError(
            f"Ollama release {release} not found: {url} answered 404",
            "see https://github.com/ollama/ollama/releases for the versions",
        ) from None


def _version_from_redirects(fetched: Fetched, source: str) -> str:
    for url in fetched.urls[1:]:
        match = _VERSIONED_SUMS.search(url.split("?", 1)[0].split("#", 1)[0])
        if match and _VERSION.fullmatch(match.group(1)):
            return match.group(1)
    raise SourceError(
        f"{source}: {fetched.urls[0]} did not redirect to a .../v<version>/sha256sum.txt URL, "
        "so the latest version is unknown",
        "pin a version, or make the mirror redirect latest to the versioned URL",
    )


def _text(body: bytes, url: str) -> str:
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        raise SourceError(f"{url} is not UTF-8 text") from None


# -- model manifests -----------------------------------------------------------------------

MANIFEST_ACCEPT = "application/vnd.docker.distribution.manifest.v2+json"
DIGEST_HEADERS = ("docker-content-digest", "ollama-content-digest")

#: Layer media types whose bytes are loaded into GPU memory.
VRAM_MEDIA_TYPES = frozenset(
    f"application/vnd.ollama.image.{kind}" for kind in ("model", "projector", "adapter", "draft", "tensor")
)

_HEX64 = re.compile(r"[0-9a-f]{64}")


class _Blob(msgspec.Struct, frozen=True):
    mediaType: MediaType
    digest: Sha256Digest
    size: BlobSize  # at most MAX_BLOB_BYTES (16 TiB)

    def pinned(self) -> ModelBlob:
        return ModelBlob(mediaType=self.mediaType, digest=self.digest, size=self.size)


class _Manifest(msgspec.Struct):
    config: _Blob
    layers: Annotated[list[_Blob], msgspec.Meta(min_length=1, max_length=MAX_LAYERS)]


def parse_manifest(
    body: bytes, name: ModelName, *, url: str, digest_headers: Mapping[str, str]
) -> ModelLocked:
    """Pin a manifest from its exact bytes; ``digest_headers`` are the registry's claims."""
    digest = "sha256:" + hashlib.sha256(body).hexdigest()
    _check_digest_claims(digest, digest_headers, url)
    try:
        manifest = jsonsafe.decode(body, type=_Manifest)
    except msgspec.DecodeError as err:
        raise SourceError(f"manifest {url} is malformed: {err}") from None
    duplicate = jsonsafe.duplicate_key(body)
    if duplicate is not None:  # readers may disagree on which one counts
        where, key = duplicate
        raise SourceError(f"manifest {url} is malformed: the key {key!r} appears twice"
                          + (f" in {where}" if where else ""))
    layers = [layer.pinned() for layer in manifest.layers]
    locked = ModelLocked(
        name=str(name),
        digest=digest,
        manifest=_text(body, f"manifest {url}"),
        config=manifest.config.pinned(),
        layers=layers,
        size=manifest.config.size + sum(layer.size for layer in layers),
        vram_bytes=sum(layer.size for layer in layers if layer.mediaType in VRAM_MEDIA_TYPES),
    )
    problem = form_problem(locked)
    if problem is not None:
        raise SourceError(f"manifest {url}: the pin would be invalid: {problem}")
    return locked


def _check_digest_claims(digest: str, claims: Mapping[str, str], url: str) -> None:
    """Each sha256 digest header must name the bytes served (other algorithms are not checked)."""
    for header, value in claims.items():
        claimed = value.strip().lower().removeprefix("sha256:")
        if _HEX64.fullmatch(claimed) and f"sha256:{claimed}" != digest:
            raise SourceError(
                f"manifest {url}: the {header} header says sha256:{claimed} "
                f"but the bytes served hash to {digest}",
                "something between anklume and the registry altered the manifest; "
                + source_hint("ollama_registry"),
            )


def resolve_model(fetcher: Fetcher, registry_base: str | None, ref: str) -> ModelLocked:
    """Pin model ``ref``; ``registry_base`` replaces ``https://registry.ollama.ai`` (a mirror)."""
    name = parse_model_ref(ref)
    canonical = f"{name.scheme}://{name.host}"
    base = registry_base.rstrip("/") if registry_base and name.host == OLLAMA_REGISTRY_HOST else canonical
    url = base + name.manifest_path
    try:
        fetched = fetcher.fetch(
            url,
            key=canonical + name.manifest_path,
            source=f"Ollama registry {base}",
            headers={"Accept": MANIFEST_ACCEPT},
            hint=source_hint("ollama_registry"),
            limit=MANIFEST_LIMIT,
        )
    except HttpStatusError as err:
        if err.status != 404:
            raise
        raise ResolveError(f"model {ref} ({name}) not found: {url} answered 404", _tags_hint(name)) from None
    claims = {h: fetched.headers[h] for h in DIGEST_HEADERS if h in fetched.headers}
    return parse_manifest(fetched.body, name, url=url, digest_headers=claims)


def _tags_hint(name: ModelName) -> str:
    if name.host == OLLAMA_REGISTRY_HOST and name.namespace == "library":
        return f"see https://ollama.com/library/{name.model}/tags for its tags"
    return "check the model name and tag"

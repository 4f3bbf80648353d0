"""PyPI: the Open WebUI version -> its wheel's file name, canonical URL, sha256 and size.

PyPI's JSON API (https://docs.pypi.org/api/json/):

- ``GET <base>/pypi/<project>/json``: ``info.version`` is the latest release, ``urls`` its
  files, ``releases`` every version's files;
- ``GET <base>/pypi/<project>/<version>/json``: ``urls`` are that release's files.

Each file has ``filename``, ``packagetype`` (``bdist_wheel``, ``sdist``), ``url``, ``size``,
``digests`` (``sha256``, ``blake2b_256``, ``md5``), ``requires_python`` and ``yanked``.  The
pin is the release's ``py3-none-any`` wheel (Open WebUI publishes one pure-Python wheel).

Mirror contract.  A PyPI source (``ANKLUME_PYPI`` / ``global.sources.pypi``) is a base URL
that answers PyPI's JSON API under ``<base>/pypi/``.  Its file URLs may be absolute,
relative or on another host: the lock records ``https://files.pythonhosted.org/packages/
<aa>/<bb>/<rest>/<filename>``, PyPI's own storage path from the file's ``blake2b_256``
(exactly the URL pypi.org's JSON gives), unless the answer already gives a
``files.pythonhosted.org`` URL.  A mirror that answers the project JSON but not the
per-version one (404) still works: the version's files are read from ``releases``.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterable
from typing import TYPE_CHECKING

import msgspec

from anklume import jsonsafe
from anklume.errors import OfflineMiss, ResolveError, SourceError
from anklume.lock.schema import MAX_WHEEL_BYTES, OpenWebUILocked, WheelName, form_problem, is_form
from anklume.resolve.fetched import Fetched, HttpStatusError
from anklume.resolve.limits import PYPI_LIMIT
from anklume.sources import CANONICAL_PYPI, CANONICAL_PYPI_FILES, source_hint

if TYPE_CHECKING:
    from anklume.resolve.http import Fetcher

OPEN_WEBUI_PROJECT = "open-webui"

_VERSION = re.compile(r"[0-9]+(\.[0-9]+)*([.+_-]?[A-Za-z0-9]+)*")
_HEX64 = re.compile(r"[0-9a-f]{64}")
_WHEEL = re.compile(r"(?P<name>[^-/]+)-(?P<version>[^-/]+)(-[0-9][^-/]*)?-(?P<py>[^-/]+)-(?P<abi>[^-/]+)"
                    r"-(?P<plat>[^-/]+)\.whl")


class _Digests(msgspec.Struct):
    sha256: str = ""
    blake2b_256: str = ""


class _File(msgspec.Struct):
    filename: str
    packagetype: str
    url: str
    size: int
    digests: _Digests
    requires_python: str | None = None
    yanked: bool = False


class _Info(msgspec.Struct):
    version: str


class _Project(msgspec.Struct):
    info: _Info
    urls: list[_File] = []
    releases: dict[str, list[_File]] = {}


# -- pure parsing --------------------------------------------------------------------------------


def parse_project(body: bytes, *, url: str) -> _Project:
    """The JSON API answer (project or version), or a SourceError naming ``url``."""
    try:
        return jsonsafe.decode(body, type=_Project)
    except msgspec.DecodeError as err:
        raise SourceError(f"PyPI answer {url} is not the JSON API's shape: {err}") from None


def is_pure_wheel(filename: str) -> bool:
    """A ``py3-none-any`` wheel (compressed tag sets like ``py2.py3`` count)."""
    match = _WHEEL.fullmatch(filename)
    return bool(match and "py3" in match["py"].split(".") and match["abi"] == "none" and match["plat"] == "any")


def pick_wheel(files: Iterable[_File], project: str, version: str) -> _File:
    """The release's ``py3-none-any`` wheel (a yanked one only if nothing else is left)."""
    files = list(files)
    wheels = [f for f in files if f.packagetype == "bdist_wheel" and is_pure_wheel(f.filename)]
    wheels.sort(key=lambda f: (f.yanked, f.filename))
    if not wheels:
        names = ", ".join(sorted(f.filename for f in files))
        raise ResolveError(f"{project} {version} has no py3-none-any wheel on PyPI",
                           f"its files: {names}" if names else "the release has no files")
    return wheels[0]


def canonical_file_url(file: _File, *, source: str) -> str:
    """files.pythonhosted.org URL of ``file``: as given when it is one, else PyPI's storage
    path built from its blake2b_256."""
    if file.url.startswith(CANONICAL_PYPI_FILES + "/") and file.url.endswith("/" + file.filename):
        return file.url
    b2 = file.digests.blake2b_256
    if not _HEX64.fullmatch(b2):
        raise SourceError(f"{source}: {file.filename} is served from {file.url!r} and has no blake2b_256 digest, "
                          "so its files.pythonhosted.org URL is unknown", source_hint("pypi"))
    return f"{CANONICAL_PYPI_FILES}/{b2[:2]}/{b2[2:4]}/{b2[4:]}/{file.filename}"


def pin_wheel(file: _File, version: str, *, source: str) -> OpenWebUILocked:
    sha = file.digests.sha256.lower()
    if not _HEX64.fullmatch(sha):
        raise SourceError(f"{source}: {file.filename} has no sha256 digest (got {file.digests.sha256!r})")
    if not 0 <= file.size <= MAX_WHEEL_BYTES or not is_form(WheelName, file.filename):
        raise SourceError(f"{source}: {file.filename!r} has an impossible name or size ({file.size})",
                          f"a wheel is a plain file name *.whl of at most {MAX_WHEEL_BYTES} bytes (16 GiB)")
    locked = OpenWebUILocked(version=version, filename=file.filename, url=canonical_file_url(file, source=source),
                             sha256=sha, size=file.size, requires_python=file.requires_python or None)
    problem = form_problem(locked)
    if problem is not None:
        raise SourceError(f"{source}: {file.filename}: the pin would be invalid: {problem}")
    return locked


def version_key(version: str) -> tuple:
    """An ordering close to PEP 440's for the versions PyPI lists (releases after their
    pre-releases), enough to name the neighbours of a version that does not exist."""
    match = re.match(r"[0-9]+(\.[0-9]+)*", version)
    release = tuple(int(p) for p in match.group(0).split(".")) if match else ()
    rest = version[match.end():] if match else version
    return (release, rest == "", rest)


def closest_versions(wanted: str, available: Iterable[str], count: int = 2) -> list[str]:
    """Up to ``count`` listed versions on each side of ``wanted``, in order."""
    ordered = sorted(set(available), key=version_key)
    at = bisect.bisect_left([version_key(v) for v in ordered], version_key(wanted))
    return ordered[max(0, at - count):at + count]


def check_version(version: str) -> str:
    """``version`` without a leading ``v``, or a ResolveError."""
    bare = version.removeprefix("v")
    if version != "latest" and not _VERSION.fullmatch(bare):
        raise ResolveError(f"Open WebUI version {version!r} is not 'latest' or a version like 0.12.4")
    return bare if version != "latest" else version


# -- fetching ------------------------------------------------------------------------------------


def resolve_open_webui(fetcher: Fetcher, base: str, version: str,
                       project: str = OPEN_WEBUI_PROJECT) -> OpenWebUILocked:
    """Pin ``version`` (or ``latest``) of ``project``'s wheel from the PyPI source ``base``."""
    base = base.rstrip("/")
    version = check_version(version)
    source = f"PyPI {base}"
    if version == "latest":
        doc = _fetch(fetcher, base, project, None, source)
        if doc is None:
            raise ResolveError(f"no project {project} on PyPI: {base}/pypi/{project}/json answered 404",
                               source_hint("pypi"))
        version = doc.info.version
        if not _VERSION.fullmatch(version):
            raise SourceError(f"{source}: the latest version of {project} is {version!r}, not a version")
        files = doc.urls or doc.releases.get(version, [])
    else:
        files = _release_files(fetcher, base, project, version, source)
    return pin_wheel(pick_wheel(files, project, version), version, source=source)


def _release_files(fetcher: Fetcher, base: str, project: str, version: str, source: str) -> list[_File]:
    """The files of ``version``: the per-version JSON, else the project's ``releases``."""
    try:
        doc = _fetch(fetcher, base, project, version, source)
    except OfflineMiss:
        doc, missed = None, True  # perhaps only the project JSON was cached (a mirror without it)
    else:
        missed = False
    if doc is not None:
        return doc.urls
    try:
        project_doc = _fetch(fetcher, base, project, None, source)
    except OfflineMiss:
        if missed:
            raise OfflineMiss(f"offline: neither {_key(project, version)} nor {_key(project, None)} "
                              f"is in the cache", "run once without --offline to fill the cache") from None
        raise
    if project_doc is None:
        raise ResolveError(f"no project {project} on PyPI: {base}/pypi/{project}/json answered 404",
                           source_hint("pypi"))
    if version in project_doc.releases:
        return project_doc.releases[version]
    near = closest_versions(version, project_doc.releases)
    raise ResolveError(
        f"{project} {version} is not on PyPI: {base}/pypi/{project}/{version}/json answered 404",
        f"the closest versions PyPI lists: {', '.join(near)}" if near else "PyPI lists no version of it")


def _key(project: str, version: str | None) -> str:
    return f"{CANONICAL_PYPI}/pypi/{project}/{version}/json" if version else f"{CANONICAL_PYPI}/pypi/{project}/json"


def _fetch(fetcher: Fetcher, base: str, project: str, version: str | None, source: str) -> _Project | None:
    """The JSON answer, None on 404 (any other failure is an error)."""
    path = f"/pypi/{project}/{version}/json" if version else f"/pypi/{project}/json"
    try:
        fetched: Fetched = fetcher.fetch(base + path, key=_key(project, version), source=source,
                                         headers={"Accept": "application/json"}, hint=source_hint("pypi"),
                                         limit=PYPI_LIMIT)
    except HttpStatusError as err:
        if err.status != 404:
            raise
        return None
    return parse_project(fetched.body, url=fetched.final_url)

"""Reading back what was placed inside instances: the files each artefact unit placed, their
sizes and (deep) sha256, against the lock (one exec per instance, two with ``deep``); and, for
``verify --live``, what an interrupted or removed placement can leave behind
(:func:`leftover_findings`)."""

from __future__ import annotations

import hashlib
import io as _io
import json
import re
import tarfile
from collections.abc import Iterable, Mapping
from pathlib import Path

from anklume.backends.base import Backend, InstanceFiles
from anklume.backends.incus.files import InstanceIOError
from anklume.lock.schema import Lock
from anklume.model.needs import iter_machines, needs_ollama
from anklume.model.schema import Infra
from anklume.store import ArtefactStore
from anklume.units.findings import Finding
from anklume.units.inside import (ARTEFACT_KINDS, PARTIAL_SUFFIX, RELEASE_FILES, RELEASE_MARKER, STAGING, WHEEL_DIR,
                                  blob_path, models_dir)
from anklume.units.unit import LiveObject, Unit

_HEX64 = re.compile(r"[0-9a-f]{64}")


def release_members(tarball: Path) -> list[tuple[str, int, str]]:
    """(path, size, sha256) of each regular file of a ``.tgz`` release (the deep check of an
    unpacked release; ``.tar.zst`` needs a zstd module Python 3.11 lacks: the deep check of such a
    release uses the hashes recorded in the instance at placement)."""
    out = []
    with tarfile.open(tarball, "r:gz") as tar:
        for member in tar:
            if member.isfile():
                f = tar.extractfile(member)
                assert f is not None
                h = hashlib.sha256()
                while chunk := f.read(4 << 20):
                    h.update(chunk)
                out.append((member.name.removeprefix("./"), member.size, h.hexdigest()))
    return out


# -- the list of the release's files, recorded in the instance at placement -------------------------

def release_files_path(prefix: str) -> str:
    return f"{prefix}/lib/ollama/{RELEASE_FILES}"


def format_release_files(entries: Iterable[tuple[str, int, str]]) -> bytes:
    """``<sha256> <size> <path under prefix>`` per line, sorted by path."""
    return "".join(f"{digest} {size} {name}\n" for name, size, digest in sorted(entries)).encode()


def parse_release_files(data: bytes, prefix: str) -> list[tuple[str, int, str]]:
    """(absolute path, size, sha256) of each line of a release's file list; ValueError when a line
    is not ``<sha256> <size> <relative path>`` or the list is empty."""
    out = []
    for n, line in enumerate(data.decode("utf-8").splitlines(), 1):
        parts = line.split(" ", 2)
        name = parts[2] if len(parts) == 3 else ""
        if (len(parts) != 3 or not _HEX64.fullmatch(parts[0]) or not parts[1].isdigit() or not name
                or name.startswith("/") or ".." in name.split("/")):
            raise ValueError(f"line {n} is not '<sha256> <size> <path>': {line[:120]!r}")
        out.append((f"{prefix}/{name}", int(parts[1]), parts[0]))
    if not out:
        raise ValueError("it is empty")
    return out


def read_release_files(io: InstanceFiles, prefix: str) -> tuple[list[tuple[str, int, str]] | None, str | None]:
    """The release's file list as placed in the instance, or (None, what is wrong)."""
    buf = _io.BytesIO()
    try:
        io.pull(release_files_path(prefix), buf)
    except InstanceIOError as err:
        return None, err.message
    try:
        return parse_release_files(buf.getvalue(), prefix), None
    except (ValueError, UnicodeDecodeError) as err:
        return None, f"unreadable: {err}"


# -- what each unit placed ------------------------------------------------------------------------

def expected_files(unit: Unit, lock: Lock, *, store=None,
                   listed: list[tuple[str, int, str]] | None = None) -> list[tuple[str, int | None, str | None]]:
    """(path, size or None, sha256 hex or None) of what ``unit`` placed in its instance.

    An Ollama release: its marker, its file list, and every file the list names (``listed``, read
    from the instance); with the local ``store`` holding a ``.tgz`` release, the files unpacked
    from it as the store's copy says (the deep check: a list altered in the instance cannot hide
    a file)."""
    spec = unit.spec
    if unit.kind == "model":
        pin = lock.models[unit.name.split("/", 1)[1]]
        files = [(blob_path(spec["models_dir"], d), size, d.removeprefix("sha256:")) for d, size in spec["blobs"]]
        manifest = pin.locked.manifest.encode()
        files.append((spec["manifest"], len(manifest), pin.locked.digest.removeprefix("sha256:")))
        return files
    if unit.kind == "ollama":
        prefix = spec["prefix"]
        marker = (spec["sha256"] + "\n").encode()
        files: dict[str, tuple[int | None, str | None]] = {
            f"{prefix}/lib/ollama/{RELEASE_MARKER}": (len(marker), hashlib.sha256(marker).hexdigest()),
            release_files_path(prefix): (None, None)}
        for path, size, digest in listed or []:
            files.setdefault(path, (size, digest))
        if store is not None and spec["asset"].endswith(".tgz") and store.has(spec["sha256"]):
            for name, size, digest in release_members(store.path(spec["sha256"])):
                files[f"{prefix}/{name}"] = (size, digest)
        return [(path, size, digest) for path, (size, digest) in files.items()]
    if unit.kind == "wheel":
        return [(spec["path"], spec["size"], spec["sha256"])] + [
            (f"{WHEEL_DIR}/{name}", size, digest) for name, digest, size in spec["wheelhouse"]]
    return []


def check_artefacts(backend: Backend, units: Iterable[Unit], lock: Lock, *, deep: bool = False) -> list[Finding]:
    """What placed artefacts look like now, against the lock: per instance, one exec for the sizes
    (plus one file read per Ollama release, its list of files), and with ``deep`` one more to hash.
    Quick: the presence and size of every file placed, every file of an Ollama release included;
    ``deep``: every byte re-hashed."""
    by_instance: dict[tuple[str, str], list[Unit]] = {}
    for unit in units:
        if unit.kind in ARTEFACT_KINDS:
            by_instance.setdefault((unit.project, unit.object), []).append(unit)
    store = ArtefactStore() if deep and by_instance else None
    found: list[Finding] = []
    for (project, instance), placed in sorted(by_instance.items()):
        io = backend.instance_io(project, instance)
        unreadable: dict[str, tuple[Unit, str]] = {}  # list path -> (unit, why it could not be read)
        wanted: list[tuple[Unit, tuple[str, int | None, str | None]]] = []
        for u in placed:
            listed = None
            if u.kind == "ollama":
                listed, problem = read_release_files(io, u.spec["prefix"])
                if problem:
                    unreadable[release_files_path(u.spec["prefix"])] = (u, problem)
            wanted += [(u, f) for f in expected_files(u, lock, store=store, listed=listed)]
        try:
            sizes = io.sizes([f[0] for _u, f in wanted])
            hashed = io.sha256([f[0] for _u, f in wanted if f[2] is not None and sizes.get(f[0]) == f[1]]) \
                if deep else {}
        except InstanceIOError as err:
            found.extend(Finding(u.uid, "(instance)", "readable", err.message) for u in placed)
            continue
        for unit, (path, size, digest) in wanted:
            actual = sizes.get(path)
            if actual is None:
                found.append(Finding(unit.uid, path, "present", "missing"))
            elif path in unreadable:
                found.append(Finding(unit.uid, path, "the list of the release's files", unreadable[path][1]))
            elif size is not None and actual != size:
                found.append(Finding(unit.uid, path, f"{size} bytes", f"{actual} bytes"))
            elif deep and digest is not None and hashed.get(path) != digest:
                found.append(Finding(unit.uid, path, f"sha256 {digest}", f"sha256 {hashed.get(path)}"))
    return found


# -- what interrupted or removed placements leave behind (verify --live) ---------------------------

#: Lists, in one exec: every manifest under a models directory ($1, may be empty) and every file in
#: transit left in the directories given after it.
_SCAN = r"""
m=$1; shift
if [ -n "$m" ] && [ -d "$m/manifests" ]; then find "$m/manifests" -type f | sed 's/^/M /'; fi
for d do
  for f in "$d"/*""" + PARTIAL_SUFFIX + r"""; do if [ -f "$f" ]; then echo "P $f"; fi; done
done
true
"""


def leftover_findings(backend: Backend, infra: Infra, graph: Iterable[Unit], live: Mapping[str, LiveObject]
                      ) -> list[Finding]:
    """In each running instance that holds artefacts: the files in transit an interrupted transfer
    left (``*.anklume-partial``), and every manifest in an Ollama machine's models directory that
    names a blob that is not there (or not of its size), the models no longer in ``infra.yml``
    included: Ollama would list such a model and fail to run it.  One exec per instance, and one
    file read per manifest anklume did not place."""
    units = [u for u in graph if u.kind in ARTEFACT_KINDS]
    holders = {u.object for u in units}
    planned = {(u.object, u.spec["manifest"]) for u in units if u.kind == "model"}  # checked with their units
    found: list[Finding] = []
    for dname, _domain, mname, machine in iter_machines(infra):
        inst = live.get(f"instance:{mname}")
        if mname not in holders or inst is None or inst.status != "Running" or inst.project != dname:
            continue
        mdir = models_dir(machine) if needs_ollama(machine) else ""
        dirs = [STAGING, WHEEL_DIR] + ([f"{mdir}/blobs"] if mdir else [])
        uid = f"instance:{mname}"
        io = backend.instance_io(dname, mname)
        try:
            result = io.exec(["/bin/sh", "-c", _SCAN, "anklume-scan", mdir, *dirs])
        except InstanceIOError as err:
            found.append(Finding(uid, "(instance)", "readable", err.message))
            continue
        manifests = []
        for line in result.stdout.decode("utf-8", "replace").splitlines():
            kind, _, path = line.partition(" ")
            if kind == "P":
                found.append(Finding(uid, path, "absent", "a file left in transit by an interrupted transfer"))
            elif kind == "M" and (mname, path) not in planned:
                manifests.append(path)
        found += _half_placed(io, uid, mdir, manifests)
    return found


def _half_placed(io: InstanceFiles, uid: str, mdir: str, manifests: list[str]) -> list[Finding]:
    """The manifests (not placed from the lock) that name a blob that is not in place."""
    found: list[Finding] = []
    named: dict[str, list[tuple[str, int]]] = {}  # manifest -> (blob path, size)
    for path in manifests:
        buf = _io.BytesIO()
        try:
            io.pull(path, buf)
            doc = json.loads(buf.getvalue())
            layers = [doc["config"], *doc["layers"]]
            named[path] = [(blob_path(mdir, str(layer["digest"])), int(layer["size"])) for layer in layers]
        except InstanceIOError as err:
            found.append(Finding(uid, path, "a readable manifest", err.message))
        except (ValueError, KeyError, TypeError) as err:
            found.append(Finding(uid, path, "a manifest naming its blobs", f"unreadable: {err!r}"))
    if not named:
        return found
    try:
        sizes = io.sizes(sorted({p for blobs in named.values() for p, _s in blobs}))
    except InstanceIOError as err:
        return found + [Finding(uid, "(instance)", "readable", err.message)]
    for path, blobs in sorted(named.items()):
        wrong = [f"{p.rsplit('/', 1)[-1]} ({'missing' if sizes.get(p) is None else f'{sizes[p]} bytes, not {s}'})"
                 for p, s in blobs if sizes.get(p) != s]
        if wrong:
            found.append(Finding(uid, path, "every blob it names in place", "; ".join(wrong)))
    return found

"""Reading back what was placed inside instances: the files each artefact unit placed, their
sizes and (deep) sha256, against the lock (one or two execs per instance)."""

from __future__ import annotations

import hashlib
import tarfile
from collections.abc import Iterable
from pathlib import Path

from anklume.backends.base import Backend
from anklume.backends.incus.files import InstanceIOError
from anklume.lock.schema import Lock
from anklume.store import ArtefactStore
from anklume.units.findings import Finding
from anklume.units.inside import ARTEFACT_KINDS, RELEASE_MARKER, WHEEL_DIR, blob_path
from anklume.units.unit import Unit


def release_members(tarball: Path) -> list[tuple[str, int, str]]:
    """(path, size, sha256) of each regular file of a ``.tgz`` release (the deep check of an
    unpacked release; ``.tar.zst`` needs a zstd module Python 3.11 lacks: only its marker is checked)."""
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


def expected_files(unit: Unit, lock: Lock, *, store=None) -> list[tuple[str, int | None, str | None]]:
    """(path, size or None, sha256 hex or None) of what ``unit`` placed in its instance; with the
    local ``store`` holding an Ollama release, every file unpacked from it."""
    spec = unit.spec
    if unit.kind == "model":
        pin = lock.models[unit.name.split("/", 1)[1]]
        files = [(blob_path(spec["models_dir"], d), size, d.removeprefix("sha256:")) for d, size in spec["blobs"]]
        manifest = pin.locked.manifest.encode()
        files.append((spec["manifest"], len(manifest), pin.locked.digest.removeprefix("sha256:")))
        return files
    if unit.kind == "ollama":
        marker = (spec["sha256"] + "\n").encode()
        files = [(f"{spec['prefix']}/lib/ollama/{RELEASE_MARKER}", len(marker), hashlib.sha256(marker).hexdigest())]
        if store is not None and spec["asset"].endswith(".tgz") and store.has(spec["sha256"]):
            return files + [(f"{spec['prefix']}/{name}", size, digest)
                            for name, size, digest in release_members(store.path(spec["sha256"]))]
        return files + [(f"{spec['prefix']}/bin/ollama", None, None)]
    if unit.kind == "wheel":
        return [(spec["path"], spec["size"], spec["sha256"])] + [
            (f"{WHEEL_DIR}/{name}", size, digest) for name, digest, size in spec["wheelhouse"]]
    return []


def check_artefacts(backend: Backend, units: Iterable[Unit], lock: Lock, *, deep: bool = False) -> list[Finding]:
    """What placed artefacts look like now, against the lock: one or two execs per instance.
    Quick: presence, sizes and the release marker; ``deep``: every byte re-hashed, the files
    unpacked from an Ollama release included (read from the local store)."""
    by_instance: dict[tuple[str, str], list[Unit]] = {}
    for unit in units:
        if unit.kind in ARTEFACT_KINDS:
            by_instance.setdefault((unit.project, unit.object), []).append(unit)
    store = ArtefactStore() if deep and by_instance else None
    found: list[Finding] = []
    for (project, instance), placed in sorted(by_instance.items()):
        io = backend.instance_io(project, instance)
        wanted = [(u, f) for u in placed for f in expected_files(u, lock, store=store)]
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
            elif size is not None and actual != size:
                found.append(Finding(unit.uid, path, f"{size} bytes", f"{actual} bytes"))
            elif deep and digest is not None and hashed.get(path) != digest:
                found.append(Finding(unit.uid, path, f"sha256 {digest}", f"sha256 {hashed.get(path)}"))
    return found

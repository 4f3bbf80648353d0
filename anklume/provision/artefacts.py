"""Applying the units inside instances: artefacts through the controller, roles through Ansible.

- ``ollama:m``: the pinned release is fetched once into the local store (sha256 checked while it
  streams), pushed into the instance, checked there again (a transfer that altered it is caught
  with both digests), unpacked under ``/usr/local``, listed (``lib/ollama/.anklume-files``: the
  sha256, size and path of every file unpacked, read by every check) and marked
  (``lib/ollama/.anklume-release`` holds its sha256); the tarball is then removed from the instance;
- ``model:m/<ref>``: the blobs the instance lacks (or holds with another digest) are fetched into
  the store and pushed, each under a temporary name, hashed in the instance, then renamed into
  ``blobs/sha256-<hex>``.  Blobs already there with the right digest are not sent again.  The
  manifest (the exact pinned bytes) comes last, renamed into place once every blob it names is
  there: Ollama never sees a half-placed model.  One model at a time per instance (they share
  blobs), each first removing the files in transit an interrupted transfer left;
- ``wheel:m``: the pinned Open WebUI wheel, pushed to ``/var/cache/anklume/wheels/``;
- ``role:m/<role>``: one ansible-runner run of the role against the generated tree, through
  anklume's own Incus connection plugin.

Each unit's key is recorded on its instance (``user.anklume.unit.*``) only after it applied.
:func:`anklume.provision.readback.check_artefacts` reads back what was placed: the presence and size of every
file by default (one exec per instance, one file read per release list), every byte re-hashed with ``deep=True``;
``build`` repairs what it finds.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import msgspec

from anklume.backends.base import Backend, InstanceFiles
from anklume.errors import AnklumeError
from anklume.lock.schema import Lock
from anklume.model.names import parse_model_ref
from anklume.model.needs import iter_machines
from anklume.model.schema import Infra
from anklume.project import Project
from anklume.provision.inputs import roles_path, wheelhouse_dir
from anklume.provision.readback import format_release_files, release_files_path
from anklume.provision.runner import run_role
from anklume.sources import (CANONICAL_OLLAMA_RELEASES, CANONICAL_PYPI, CANONICAL_PYPI_FILES,
                                     OLLAMA_REGISTRY_HOST, effective_sources)
from anklume.store import ArtefactStore, hash_file
from anklume.units.inside import PARTIAL_SUFFIX, RELEASE_MARKER, STAGING, WHEEL_DIR, blob_path, record_key
from anklume.units.unit import Unit

#: Removes the files in transit (``*.anklume-partial``) of each directory given.
_CLEAN_PARTIALS = ('for d do for f in "$d"/*' + PARTIAL_SUFFIX
                   + '; do if [ -f "$f" ]; then rm -f "$f" || exit 1; fi; done; done')
#: Transfers from this size on report their progress.
PROGRESS_MIN = 64 << 20


class ProvisionError(AnklumeError):
    """An artefact could not be placed, or a role failed."""


@dataclass(frozen=True)
class ArtefactSources:
    """Mirrors first, then the canonical URL the lock records."""

    ollama_releases: str
    ollama_registry: str
    pypi: str

    @classmethod
    def of(cls, infra: Infra) -> ArtefactSources:
        s = effective_sources(msgspec.structs.asdict(infra.global_.sources), os.environ)
        return cls(ollama_releases=s.ollama_releases, ollama_registry=s.ollama_registry, pypi=s.pypi)

    def release_urls(self, url: str) -> list[str]:
        urls = []
        if self.ollama_releases != CANONICAL_OLLAMA_RELEASES and url.startswith(CANONICAL_OLLAMA_RELEASES):
            urls.append(self.ollama_releases + url[len(CANONICAL_OLLAMA_RELEASES):])
        return urls + [url]

    def blob_urls(self, model: str, digest: str) -> list[str]:
        name = parse_model_ref(model)
        path = f"/v2/{name.namespace}/{name.model}/blobs/{digest}"
        canonical = f"{name.scheme}://{name.host}{path}"
        if name.host == OLLAMA_REGISTRY_HOST and self.ollama_registry.rstrip("/") != f"{name.scheme}://{name.host}":
            return [self.ollama_registry.rstrip("/") + path, canonical]
        return [canonical]

    def wheel_urls(self, url: str) -> list[str]:
        """A PyPI mirror serves files under PyPI's storage path (``<base>/packages/...``)."""
        if self.pypi and self.pypi != CANONICAL_PYPI and url.startswith(CANONICAL_PYPI_FILES + "/"):
            return [self.pypi + "/packages" + url[len(CANONICAL_PYPI_FILES):], url]
        return [url]


class Provisioner:
    """Applies the units inside instances; thread-safe (one instance config write at a time)."""

    def __init__(self, backend: Backend, project: Project, infra: Infra, lock: Lock, *, sources: ArtefactSources,
                 artefacts: ArtefactStore | None = None,
                 endpoint: str | None = None, work_dir: Path | None = None,
                 on_event: Callable[[str], None] | None = None):
        self.backend = backend
        self.project = project
        self.lock = lock
        self.wheelhouses: dict[str, Path] = {  # machine -> its wheelhouse directory on the controller
            m: folder for _d, _dom, m, machine in iter_machines(infra)
            if (folder := wheelhouse_dir(project, machine)) is not None}
        self.sources = sources
        self.artefacts = artefacts or ArtefactStore()
        self.endpoint = endpoint
        self.work_dir = work_dir or (self.artefacts.root.parent / "runs")
        self.on_event = on_event
        self._record_lock = threading.Lock()
        self._model_locks: dict[tuple[str, str], threading.Lock] = {}  # (project, instance) -> lock
        self.transferred: dict[str, int] = {}  # uid -> bytes pushed (for reports and tests)

    def io(self, unit: Unit) -> InstanceFiles:
        return self.backend.instance_io(unit.project, unit.object)

    def apply(self, unit: Unit) -> None:
        getattr(self, f"_apply_{unit.kind}")(unit)
        self.record(unit)

    def record(self, unit: Unit) -> None:
        with self._record_lock:
            self.backend.record(unit.project, unit.object, {record_key(unit.kind, unit.name): unit.key})

    def _event(self, text: str) -> None:
        if self.on_event is not None:
            self.on_event(text)

    def _count(self, unit: Unit, n: int) -> None:
        with self._record_lock:
            self.transferred[unit.uid] = self.transferred.get(unit.uid, 0) + n

    def _progress(self, unit: Unit, verb: str, what: str, total: int | None):
        """A callback reporting every tenth of a large transfer (files under 64 MiB stay quiet)."""
        if self.on_event is None or not total or total < PROGRESS_MIN:
            return None
        step = [0]

        def report(done: int, _total: int | None = None) -> None:
            tenth = done * 10 // total
            if tenth > step[0]:
                step[0] = tenth
                self._event(f"{unit.object}: {verb} {what}: {done >> 20} of {total >> 20} MiB")
        return report

    def _models_lock(self, unit: Unit) -> threading.Lock:
        with self._record_lock:
            return self._model_locks.setdefault((unit.project, unit.object), threading.Lock())

    @staticmethod
    def _clean_partials(io, *dirs: str) -> None:
        """Remove what interrupted transfers left in transit in ``dirs`` (none is in flight there:
        one build per daemon, and each directory has one writer at a time)."""
        io.exec(["/bin/sh", "-c", _CLEAN_PARTIALS, "anklume-clean", *dirs])

    @staticmethod
    def _write(io, path: str, data: bytes, *, tmp: str | None = None) -> None:
        """``data`` to ``path`` whole or not at all: pushed beside it (or to ``tmp``), then renamed."""
        tmp = tmp or f"{path}{PARTIAL_SUFFIX}"
        io.push(tmp, data)
        io.exec(["mv", "-f", tmp, path])

    def _place(self, unit: Unit, io, *, sha256: str, urls: list[str], dest: str, what: str,
               size: int | None = None, mode: int = 0o644, local: Path | None = None) -> None:
        """Fetch into the store (checked while it streams), push under a temporary name, hash it in
        the instance, rename it into place.  A mismatch in the instance re-checks the store's copy:
        a corrupted copy is dropped and fetched again (once); otherwise the transfer altered it."""
        want = sha256.removeprefix("sha256:")
        tmp = f"{dest}.anklume-partial"
        for attempt in (1, 2):
            src = local or self.artefacts.ensure(want, urls, size=size, what=what,
                                             progress=self._progress(unit, "fetching", what, size))
            total = src.stat().st_size
            sent = io.push(tmp, src, mode=mode, progress=self._progress(unit, "sending", what, total))
            self._count(unit, sent)
            actual = io.sha256([tmp]).get(tmp)
            if actual == want:
                io.exec(["mv", "-f", tmp, dest])
                return
            io.exec(["rm", "-f", tmp], check=False)
            if local is not None:
                now = hash_file(local)[0].hexdigest()
                raise ProvisionError(f"{unit.object}: {what} "
                                     + ("arrived altered in the instance" if now == want else f"changed on the "
                                        f"controller since it was planned (now sha256 {now})")
                                     + f": expected sha256 {want}, found {actual}", "run `anklume build` again")
            stored = self.artefacts.verify(want)  # removes a copy that no longer matches its name
            if stored == want or attempt == 2:
                where = "arrived altered in the instance" if stored == want else "is corrupted in the local store"
                raise ProvisionError(f"{unit.object}: {what} {where}: expected sha256 {want}, found {actual}"
                                     + ("" if stored == want else f" (store copy: {stored})"),
                                     "run `anklume build` again; check the disks of the controller and the instance")
            self._event(f"{unit.object}: the local store's copy of {what} was corrupted (sha256 {stored}): "
                        "fetching it again")

    def _apply_ollama(self, unit: Unit) -> None:
        spec = unit.spec
        io = self.io(unit)
        io.mkdir(STAGING)
        self._clean_partials(io, STAGING)
        tarball = f"{STAGING}/{spec['asset']}"
        # the size comes from the lock, not the spec: adding it to the spec would re-apply every release
        size = self.lock.ollama.locked.size if self.lock.ollama is not None else None
        self._place(unit, io, sha256=spec["sha256"], urls=self.sources.release_urls(spec["url"]), dest=tarball,
                    what=f"Ollama {spec['version']} ({spec['asset']})", size=size)
        prefix = spec["prefix"]
        marker, listing = f"{prefix}/lib/ollama/{RELEASE_MARKER}", release_files_path(prefix)
        io.exec(["rm", "-f", marker, listing])  # until the new release is whole and listed
        zst = ["--zstd"] if spec["asset"].endswith(".zst") else []
        if spec["asset"].endswith((".tgz", ".zst")):
            io.exec(["tar", *zst, "-xzf" if not zst else "-xf", tarball, "-C", prefix])
            names = member_names(io.exec(["tar", *zst, "-tzf" if not zst else "-tf", tarball]).stdout)
        else:  # a bare binary (releases up to 0.3.6)
            io.mkdir(f"{prefix}/bin")
            io.exec(["mv", "-f", tarball, f"{prefix}/bin/ollama"])
            io.exec(["chmod", "0755", f"{prefix}/bin/ollama"])
            names = ["bin/ollama"]
        io.exec(["rm", "-f", tarball])
        io.mkdir(f"{prefix}/lib/ollama")
        self._write(io, listing, format_release_files(self._unpacked(unit, io, prefix, names)))
        io.push(marker, (spec["sha256"] + "\n").encode())
        self._event(f"{unit.object}: Ollama {spec['version']} placed under {prefix}")

    @staticmethod
    def _unpacked(unit: Unit, io, prefix: str, names: list[str]) -> list[tuple[str, int, str]]:
        """(path under prefix, size, sha256) of each regular file (or link to one) the release put
        there, read in the instance right after unpacking the checked tarball."""
        paths = {f"{prefix}/{n}": n for n in names}
        sizes = io.sizes(list(paths))
        files = [p for p in paths if sizes.get(p) is not None]  # not the directories
        hashes = io.sha256(files)
        if not files or any(hashes.get(p) is None for p in files):
            raise ProvisionError(f"{unit.object}: the Ollama release unpacked under {prefix} cannot be read back",
                                 "run `anklume build` again")
        return [(paths[p], sizes[p], hashes[p]) for p in files]

    def _apply_model(self, unit: Unit) -> None:
        spec = unit.spec
        mdir = spec["models_dir"]
        io = self.io(unit)
        blobs = {blob_path(mdir, d): (d, size) for d, size in spec["blobs"]}
        manifest = self._manifest_bytes(unit)
        # one model at a time in an instance: two models may share a blob, and the clean-up below
        # must not remove another model's blob in transit
        with self._models_lock(unit):
            io.mkdir(f"{mdir}/blobs")
            self._clean_partials(io, f"{mdir}/blobs")
            missing = self._absent(io, blobs)
            for path in missing:
                digest, size = blobs[path]
                self._place(unit, io, sha256=digest, urls=self.sources.blob_urls(spec["name"], digest), dest=path,
                            size=size, what=f"blob {digest[:19]} of {spec['name']}")
            # the manifest only once every blob it names is there (read again: an Ollama server
            # starting meanwhile prunes the blobs no manifest names yet)
            sizes = io.sizes(list(blobs))
            gone = [p for p, (_d, size) in blobs.items() if sizes.get(p) != size]
            if gone:
                raise ProvisionError(f"{unit.object}: {spec['name']}: blob(s) {', '.join(gone)} went away while the "
                                     "model was placed; its manifest was not written", "run `anklume build` again")
            io.mkdir(spec["manifest"].rsplit("/", 1)[0])
            # in transit beside the blobs, never under manifests/ (Ollama would list it as a model)
            self._write(io, spec["manifest"], manifest,
                        tmp=f"{mdir}/blobs/manifest-{spec['digest'].removeprefix('sha256:')}{PARTIAL_SUFFIX}")
        self._event(f"{unit.object}: {spec['name']} placed ({len(missing)} of {len(blobs)} blob(s) sent)")

    def _manifest_bytes(self, unit: Unit) -> bytes:
        pin = self.lock.models.get(unit.name.split("/", 1)[1])
        if pin is None:  # pragma: no cover - the unit comes from the same lock
            raise ProvisionError(f"{unit.uid}: the lock has no manifest for it", "run `anklume lock`")
        data = pin.locked.manifest.encode()
        actual = "sha256:" + hashlib.sha256(data).hexdigest()
        if actual != pin.locked.digest:
            raise ProvisionError(f"the lock's manifest of {pin.locked.name} does not hash to its digest: expected "
                                 f"{pin.locked.digest}, got {actual}", "re-lock it: `anklume lock --update "
                                 f"{pin.original.ref}`")
        return data

    def _apply_wheel(self, unit: Unit) -> None:
        spec = unit.spec
        io = self.io(unit)
        io.mkdir(WHEEL_DIR)
        self._clean_partials(io, WHEEL_DIR)
        # path -> (sha256, size, local file or None: fetched through the store)
        wanted: dict[str, tuple[str, int, Path | None]] = {spec["path"]: (spec["sha256"], spec["size"], None)}
        if spec["wheelhouse"]:
            folder = self.wheelhouses.get(unit.object)
            if folder is None:  # pragma: no cover - planned from the same infra
                raise ProvisionError(f"{unit.uid}: no wheelhouse directory known for it")
            for name, digest, size in spec["wheelhouse"]:
                wanted[f"{WHEEL_DIR}/{name}"] = (digest, size, folder / name)
        for path in self._absent(io, {p: (d, size) for p, (d, size, _l) in wanted.items()}):
            digest, size, local = wanted[path]
            name = path.rsplit("/", 1)[1]
            what = f"wheelhouse wheel {name}" if local else f"Open WebUI {spec['version']} ({name})"
            urls = [] if local else self.sources.wheel_urls(spec["url"])
            self._place(unit, io, sha256=digest, urls=urls, dest=path, size=size, local=local, what=what)

    @staticmethod
    def _absent(io, files: dict[str, tuple[str, int]]) -> list[str]:
        """The files (path -> (sha256, size)) the instance does not hold with the right digest:
        one exec for the sizes, one to hash those of the right size."""
        sizes = io.sizes(list(files))
        same = [p for p, (_d, size) in files.items() if sizes.get(p) == size]
        there = io.sha256(same) if same else {}
        return [p for p, (d, _s) in files.items() if there.get(p) != d.removeprefix("sha256:")]

    def _apply_role(self, unit: Unit) -> None:
        machine, role = unit.name.split("/", 1)
        run_role(tree_root=self.project.root, domain=unit.project, machine=machine, role=role,
                 roles_path=[p for p in roles_path(self.project) if p.is_dir()], endpoint=self.endpoint,
                 work_dir=self.work_dir, on_event=(lambda text: self._event(f"{machine} {role}: {text}")))


def member_names(listing: bytes) -> list[str]:
    """The paths under the unpack directory named by ``tar -t`` (GNU tar and busybox print one
    per line, as stored: ``./bin/ollama``, directories ending in ``/``)."""
    names = []
    for line in listing.decode("utf-8", "replace").splitlines():
        name = line.strip().removeprefix("./")
        if name and name != "." and not name.endswith("/"):
            names.append(name)
    return names

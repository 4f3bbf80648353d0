"""Applying the units inside instances: artefacts through the controller, roles through Ansible.

- ``ollama:m``: the pinned release is fetched once into the local store (sha256 checked while it
  streams), pushed into the instance, checked there again (a transfer that altered it is caught
  with both digests), unpacked under ``/usr/local`` and marked (``lib/ollama/.anklume-release``
  holds its sha256); the tarball is then removed from the instance;
- ``model:m/<ref>``: the blobs the instance lacks (or holds with another digest) are fetched into
  the store and pushed, each under a temporary name, hashed in the instance, then renamed into
  ``blobs/sha256-<hex>``; the manifest gets the exact pinned bytes.  Blobs already there with the
  right digest are not sent again;
- ``wheel:m``: the pinned Open WebUI wheel, pushed to ``/var/cache/anklume/wheels/``;
- ``role:m/<role>``: one ansible-runner run of the role against the generated tree, through
  anklume's own Incus connection plugin.

Each unit's key is recorded on its instance (``user.anklume.unit.*``) only after it applied.
:func:`check_artefacts` reads back what was placed: sizes and markers by default (one exec per
instance), every byte re-hashed with ``deep=True``; ``build`` repairs what it finds.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import blake3
import msgspec

from anklume.actions.live import Finding
from anklume.errors import AnklumeError
from anklume.lock.schema import Lock
from anklume.model.names import parse_model_ref
from anklume.model.schema import Infra
from anklume.project import Project
from anklume.render.write import TreeChanges
from anklume.fsio import atomic_write, default_cache_dir
from anklume.units.provision import ARTEFACT_KINDS, OPEN_WEBUI_ROLE, RELEASE_MARKER, WHEEL_DIR, blob_path, record_key
from anklume.units.unit import Unit

SHIPPED_ROLES = Path(__file__).resolve().parents[1] / "provision" / "roles"
STAGING = "/var/cache/anklume"
#: Transfers from this size on report their progress.
PROGRESS_MIN = 64 << 20


class ProvisionError(AnklumeError):
    """An artefact could not be placed, or a role failed."""


# -- inputs of the role units (files on disk) -------------------------------------------------------


def roles_path(project: Project) -> list[Path]:
    """Where roles are found, highest precedence first: ``roles/`` beside infra.yml, then anklume's."""
    return [project.root / "roles", SHIPPED_ROLES]


def find_role(project: Project, role: str) -> Path:
    for base in roles_path(project):
        if (base / role).is_dir():
            return base / role
    shipped = sorted(p.name for p in SHIPPED_ROLES.iterdir() if p.is_dir()) if SHIPPED_ROLES.is_dir() else []
    raise AnklumeError(f"role {role} not found: neither {project.root / 'roles' / role} nor a role anklume ships",
                       f"anklume ships {', '.join(shipped)}; put your own roles in {project.root / 'roles'}/")


def dir_digest(root: Path) -> str:
    """blake3 over every file below ``root``: relative path, mode bit x, bytes (sorted)."""
    h = blake3.blake3(b"anklume-role-files-v1\0")
    for path in sorted(p for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
        rel = path.relative_to(root).as_posix()
        h.update(rel.encode() + b"\0" + (b"x" if os.access(path, os.X_OK) else b"-") + b"\0")
        data = path.read_bytes()
        h.update(len(data).to_bytes(8, "little") + data)
    return "blake3:" + h.hexdigest()


def host_var_files(dname: str, mname: str) -> list[str]:
    return ["group_vars/all.yml", f"group_vars/{dname}.yml", f"inventory/{dname}.yml", f"host_vars/{mname}.yml"]


#: Host variables the controller acts on itself (each model unit has its own key): they do not
#: re-run the roles.
CONTROLLER_VARS = ("ollama_models",)


def wheelhouse_dir(project: Project, machine) -> Path | None:  # noqa: ANN001 - a model Machine
    """The controller directory of a machine's wheelhouse (``vars.open_webui_wheelhouse_src``,
    relative to infra.yml's directory), or None."""
    value = (machine.vars or {}).get("open_webui_wheelhouse_src")
    return (project.root / str(value)).resolve() if value else None


def wheelhouse_files(folder: Path, memo_dir: Path | None = None) -> list[list[Any]]:
    """[filename, sha256, size] of each ``*.whl`` in ``folder`` (sorted); sha256 memoised by
    (path, size, mtime) so an unchanged wheelhouse is not re-hashed on every build."""
    import json

    if not folder.is_dir():
        raise AnklumeError(f"wheelhouse {folder} is not a directory",
                           "set vars.open_webui_wheelhouse_src to a directory of wheels (`pip download -d DIR ...`)")
    memo_path = (memo_dir or default_cache_dir(os.environ)) / "wheelhouse-sha256.json"
    try:
        memo = json.loads(memo_path.read_text())
    except (OSError, ValueError):
        memo = {}
    out, changed = [], False
    for path in sorted(folder.glob("*.whl")):
        if not path.is_file():
            continue
        st = path.stat()
        mark = f"{path}\0{st.st_size}\0{st.st_mtime_ns}"
        digest = memo.get(mark)
        if digest is None:
            from anklume.store import hash_file

            digest = hash_file(path)[0].hexdigest()
            memo[mark], changed = digest, True
        out.append([path.name, digest, st.st_size])
    if not out:
        raise AnklumeError(f"wheelhouse {folder} holds no wheel (*.whl)",
                           "fill it with `pip download -d DIR open-webui==<version>`, or remove "
                           "vars.open_webui_wheelhouse_src")
    if changed:
        try:
            atomic_write(memo_path, json.dumps(memo, sort_keys=True).encode())
        except OSError:
            pass
    return out


def provision_inputs(project: Project, infra: Infra, tree: TreeChanges | None = None) -> dict[str, Any]:
    """The keyword inputs of :func:`anklume.units.provision.plan_provision` that live on disk:
    the digests of the roles machines list, and of the variables each provisioned host gets from
    the tree's files (as ``tree`` is about to write them, else as they are on disk; user sections
    included, comments and layout not) less :data:`CONTROLLER_VARS`."""
    import yaml

    from anklume.lock.keys import iter_machines
    from anklume.units.key import canonical

    planned = {c.path: c.new for c in tree.changed} if tree is not None else {}
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    parsed: dict[str, Any] = {}

    def values(rel: str) -> Any:
        if rel not in parsed:
            if rel in planned:
                text = planned[rel]
            else:
                try:
                    text = (project.root / rel).read_text(encoding="utf-8")
                except FileNotFoundError:
                    text = ""
            try:
                parsed[rel] = yaml.load(text, Loader=loader)  # noqa: S506 - a safe loader
            except yaml.YAMLError as err:
                raise AnklumeError(f"{project.root / rel}: not valid YAML: {err}",
                                   "fix the part below the managed section (your own variables)") from None
        return parsed[rel]

    role_digests: dict[str, str] = {}
    vars_digests: dict[str, str] = {}
    wheelhouses: dict[str, list[list[Any]]] = {}
    for dname, _domain, mname, machine in iter_machines(infra):
        if not machine.roles:
            continue
        folder = wheelhouse_dir(project, machine)
        if folder is not None and OPEN_WEBUI_ROLE in machine.roles:
            wheelhouses[mname] = wheelhouse_files(folder)
        for role in machine.roles:
            if role not in role_digests:
                role_digests[role] = dir_digest(find_role(project, role))
        files = {rel: values(rel) for rel in host_var_files(dname, mname)}
        host = files[f"host_vars/{mname}.yml"]
        if isinstance(host, dict):
            files[f"host_vars/{mname}.yml"] = {k: v for k, v in host.items() if k not in CONTROLLER_VARS}
        vars_digests[mname] = "blake3:" + blake3.blake3(b"anklume-host-vars-v1\0" + canonical(files)).hexdigest()
    return {"role_digests": role_digests, "vars_digests": vars_digests, "wheelhouses": wheelhouses}


# -- where artefacts come from ----------------------------------------------------------------------


@dataclass(frozen=True)
class ArtefactSources:
    """Mirrors first, then the canonical URL the lock records."""

    ollama_releases: str
    ollama_registry: str
    pypi: str

    @classmethod
    def of(cls, infra: Infra) -> ArtefactSources:
        from anklume.resolve.sources import effective_sources

        s = effective_sources(msgspec.structs.asdict(infra.global_.sources), os.environ)
        return cls(ollama_releases=s.ollama_releases, ollama_registry=s.ollama_registry, pypi=s.pypi)

    def release_urls(self, url: str) -> list[str]:
        from anklume.resolve.sources import CANONICAL_OLLAMA_RELEASES

        urls = []
        if self.ollama_releases != CANONICAL_OLLAMA_RELEASES and url.startswith(CANONICAL_OLLAMA_RELEASES):
            urls.append(self.ollama_releases + url[len(CANONICAL_OLLAMA_RELEASES):])
        return urls + [url]

    def blob_urls(self, model: str, digest: str) -> list[str]:
        from anklume.resolve.sources import OLLAMA_REGISTRY_HOST

        name = parse_model_ref(model)
        path = f"/v2/{name.namespace}/{name.model}/blobs/{digest}"
        canonical = f"{name.scheme}://{name.host}{path}"
        if name.host == OLLAMA_REGISTRY_HOST and self.ollama_registry.rstrip("/") != f"{name.scheme}://{name.host}":
            return [self.ollama_registry.rstrip("/") + path, canonical]
        return [canonical]

    def wheel_urls(self, url: str) -> list[str]:
        """A PyPI mirror serves files under PyPI's storage path (``<base>/packages/...``)."""
        from anklume.resolve.sources import CANONICAL_PYPI, CANONICAL_PYPI_FILES

        if self.pypi and self.pypi != CANONICAL_PYPI and url.startswith(CANONICAL_PYPI_FILES + "/"):
            return [self.pypi + "/packages" + url[len(CANONICAL_PYPI_FILES):], url]
        return [url]


# -- applying --------------------------------------------------------------------------------------


class Provisioner:
    """Applies the units inside instances; thread-safe (one instance config write at a time)."""

    def __init__(self, backend, project: Project, infra: Infra, lock: Lock, *, sources: ArtefactSources, store=None,
                 endpoint: str | None = None, work_dir: Path | None = None,
                 on_event: Callable[[str], None] | None = None):
        from anklume.store import ArtefactStore

        self.backend = backend
        self.project = project
        self.lock = lock
        from anklume.lock.keys import iter_machines

        self.wheelhouses: dict[str, Path] = {  # machine -> its wheelhouse directory on the controller
            m: folder for _d, _dom, m, machine in iter_machines(infra)
            if (folder := wheelhouse_dir(project, machine)) is not None}
        self.sources = sources
        self.store = store or ArtefactStore()
        self.endpoint = endpoint
        self.work_dir = work_dir or (self.store.root.parent / "runs")
        self.on_event = on_event
        self._record_lock = threading.Lock()
        self.transferred: dict[str, int] = {}  # uid -> bytes pushed (for reports and tests)

    def io(self, unit: Unit):
        from anklume.backends.incus_files import InstanceIO

        return InstanceIO(self.backend, unit.project, unit.object)

    def apply(self, unit: Unit) -> None:
        getattr(self, f"_apply_{unit.kind}")(unit)
        self.record(unit)

    def record(self, unit: Unit) -> None:
        with self._record_lock:
            self.backend.request("patch", f"instances/{unit.object}", params={"project": unit.project},
                                 body={"config": {record_key(unit.kind, unit.name): unit.key}})

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

    def _place(self, unit: Unit, io, *, sha256: str, urls: list[str], dest: str, what: str,
               size: int | None = None, mode: int = 0o644, local: Path | None = None) -> None:
        """Fetch into the store (checked while it streams), push under a temporary name, hash it in
        the instance, rename it into place.  A mismatch in the instance re-checks the store's copy:
        a corrupted copy is dropped and fetched again (once); otherwise the transfer altered it."""
        want = sha256.removeprefix("sha256:")
        tmp = f"{dest}.anklume-partial"
        for attempt in (1, 2):
            src = local or self.store.ensure(want, urls, size=size, what=what,
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
                from anklume.store import hash_file

                now = hash_file(local)[0].hexdigest()
                raise ProvisionError(f"{unit.object}: {what} "
                                     + ("arrived altered in the instance" if now == want else f"changed on the "
                                        f"controller since it was planned (now sha256 {now})")
                                     + f": expected sha256 {want}, found {actual}", "run `anklume build` again")
            stored = self.store.verify(want)  # removes a copy that no longer matches its name
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
        tarball = f"{STAGING}/{spec['asset']}"
        self._place(unit, io, sha256=spec["sha256"], urls=self.sources.release_urls(spec["url"]), dest=tarball,
                    what=f"Ollama {spec['version']} ({spec['asset']})")
        prefix = spec["prefix"]
        flags = "-xzf" if spec["asset"].endswith(".tgz") else ("--zstd -xf" if spec["asset"].endswith(".zst") else "")
        if flags:
            io.exec(["tar", *flags.split(), tarball, "-C", prefix])
        else:  # a bare binary (releases up to 0.3.6)
            io.mkdir(f"{prefix}/bin")
            io.exec(["mv", "-f", tarball, f"{prefix}/bin/ollama"])
            io.exec(["chmod", "0755", f"{prefix}/bin/ollama"])
        io.exec(["rm", "-f", tarball])
        io.mkdir(f"{prefix}/lib/ollama")
        io.push(f"{prefix}/lib/ollama/{RELEASE_MARKER}", (spec["sha256"] + "\n").encode())
        self._event(f"{unit.object}: Ollama {spec['version']} placed under {prefix}")

    def _apply_model(self, unit: Unit) -> None:
        spec = unit.spec
        mdir = spec["models_dir"]
        io = self.io(unit)
        blobs = {blob_path(mdir, d): (d, size) for d, size in spec["blobs"]}
        missing = self._absent(io, blobs)
        if missing:
            io.mkdir(f"{mdir}/blobs")
        for path in missing:
            digest, size = blobs[path]
            self._place(unit, io, sha256=digest, urls=self.sources.blob_urls(spec["name"], digest), dest=path,
                        size=size, what=f"blob {digest[:19]} of {spec['name']}")
        manifest = self._manifest_bytes(unit)
        io.mkdir(spec["manifest"].rsplit("/", 1)[0])
        io.push(spec["manifest"], manifest)
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
        from anklume.provision.runner import run_role

        machine, role = unit.name.split("/", 1)
        run_role(tree_root=self.project.root, domain=unit.project, machine=machine, role=role,
                 roles_path=[p for p in roles_path(self.project) if p.is_dir()], endpoint=self.endpoint,
                 work_dir=self.work_dir, on_event=(lambda text: self._event(f"{machine} {role}: {text}")))


# -- reading back what was placed ----------------------------------------------------------------------


def release_members(tarball: Path) -> list[tuple[str, int, str]]:
    """(path, size, sha256) of each regular file of a ``.tgz`` release (the deep check of an
    unpacked release; ``.tar.zst`` needs a zstd module Python 3.11 lacks: only its marker is checked)."""
    import tarfile

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


def check_artefacts(backend, units: Iterable[Unit], lock: Lock, *, deep: bool = False) -> list[Finding]:
    """What placed artefacts look like now, against the lock: one or two execs per instance.
    Quick: presence, sizes and the release marker; ``deep``: every byte re-hashed, the files
    unpacked from an Ollama release included (read from the local store)."""
    from anklume.backends.incus_files import InstanceIO, InstanceIOError
    from anklume.store import ArtefactStore

    by_instance: dict[tuple[str, str], list[Unit]] = {}
    for unit in units:
        if unit.kind in ARTEFACT_KINDS:
            by_instance.setdefault((unit.project, unit.object), []).append(unit)
    store = ArtefactStore() if deep and by_instance else None
    found: list[Finding] = []
    for (project, instance), placed in sorted(by_instance.items()):
        io = InstanceIO(backend, project, instance)
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


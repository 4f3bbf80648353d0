"""Infra + Lock -> the units placed *inside* instances (pure): pinned artefacts and role runs.

Per machine ``m`` (its instance is ``instance:m``):

- ``ollama:m`` (machines with models or the ``ollama_server`` role): the pinned Ollama release,
  fetched into the local store, pushed into the instance and unpacked under ``/usr/local``;
- ``model:m/<ref>``: each pinned model, placed in Ollama's own layout under the machine's models
  directory (``ollama_models_dir`` in its ``vars``, default ``/root/.ollama/models``): the exact
  pinned manifest bytes at ``manifests/<host>/<namespace>/<model>/<tag>`` and each blob at
  ``blobs/sha256-<hex>``;
- ``wheel:m`` (machines with the ``open_webui`` role): the pinned Open WebUI wheel, pushed to
  ``/var/cache/anklume/wheels/<filename>``, with the wheels of the machine's wheelhouse when it
  has one (``open_webui_wheelhouse_src``: a directory on the controller, for instances that cannot reach PyPI;
  its files enter the key by name, size and sha256);
- ``role:m/<role>``: one Ansible role run, for each role the machine lists, in its order.

Keys, and what forces a re-apply:

- every spec carries the instance's identity (type, project, pinned image fingerprint): an
  instance re-created from a new image re-places its artefacts and re-runs its roles;
- the keys are recorded on the instance itself (``user.anklume.unit.<kind>.<name>``), so an
  instance re-created for any other reason (deleted by hand, an interrupted create) has lost
  them, and everything inside it is applied again;
- a role's spec holds the digest of its files and of the variable files of its host (the
  generated tree, user sections included): editing either re-runs the role; a role also lists
  the artefacts it uses in ``key_deps`` (``ollama_server``: ``ollama:m``; ``open_webui``:
  ``wheel:m``), so a new Ollama release re-runs ``ollama_server``;
- a model's key depends on its pin only: changing one model's pin re-places that model alone.

Ordering (``after``): everything after its instance; models before the roles; roles in the order
the machine lists them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import blake3

from anklume.errors import StaleLock
from anklume.lock.schema import Lock
from anklume.model.names import parse_model_ref
from anklume.model.needs import INSTANCE_TYPES, OLLAMA_ROLE, OPEN_WEBUI_ROLE, iter_machines, needs_ollama
from anklume.model.schema import Infra, Machine
from anklume.units.graph import Graph
from anklume.units.unit import MANAGED_KEY, UNIT_KEY, LiveObject, Unit, uid_of

DEFAULT_MODELS_DIR = "/root/.ollama/models"
OLLAMA_PREFIX = "/usr/local"
#: Where the Ollama release travels before it is unpacked (then removed).
STAGING = "/var/cache/anklume"
WHEEL_DIR = "/var/cache/anklume/wheels"
#: The file recording which release was unpacked, under ``<prefix>/lib/ollama``.
RELEASE_MARKER = ".anklume-release"
#: The list of the files unpacked from the release, under ``<prefix>/lib/ollama``: one line
#: ``<sha256> <size> <path under prefix>`` per file, written at placement, read by every check.
RELEASE_FILES = ".anklume-files"
#: The suffix of a file in transit (pushed, not yet checked and renamed into place).
PARTIAL_SUFFIX = ".anklume-partial"
#: Prefix of the instance config keys that record the keys of the units placed in it.
RECORD_PREFIX = "user.anklume.unit."
INSIDE_KINDS = ("ollama", "model", "wheel", "role")
#: The kinds that place files (read back by ``verify --live`` and before each build).
ARTEFACT_KINDS = ("ollama", "model", "wheel")

_SAFE = re.compile(r"[^A-Za-z0-9_.-]")


def record_key(kind: str, name: str) -> str:
    """The instance config key recording unit ``kind:name`` (``name`` without the machine part):
    Incus accepts ``[A-Za-z0-9_.-]``; other characters become ``-`` and the key gains 8 hex of
    the name's hash, so two names never share a key."""
    local = name.split("/", 1)[1] if "/" in name else "_"
    safe = _SAFE.sub("-", local)
    if safe != local:
        safe += "-" + blake3.blake3(local.encode()).hexdigest()[:8]
    return f"{RECORD_PREFIX}{kind}.{safe}"


def unrecorded(unit: Unit) -> str:
    """Why a unit inside an instance is (re)applied when the instance carries no record of it:
    never applied there, or the instance was re-created since."""
    local = unit.name.split("/", 1)[1] if "/" in unit.name else unit.name
    what = {"ollama": "the Ollama release", "wheel": "the Open WebUI wheel"}.get(unit.kind, f"{unit.kind} {local}")
    return (f"{what} is not recorded as applied in instance {unit.object} "
            f"(no {record_key(unit.kind, unit.name)} on it)")


def manifest_path(models_dir: str, ref: str) -> str:
    """Where Ollama keeps model ``ref``'s manifest under ``models_dir``."""
    name = parse_model_ref(ref)
    return f"{models_dir}/manifests/{name.host}/{name.namespace}/{name.model}/{name.tag}"


def blob_path(models_dir: str, digest: str) -> str:
    return f"{models_dir}/blobs/{digest.replace(':', '-', 1)}"


def models_dir(machine: Machine) -> str:
    value = (machine.vars or {}).get("ollama_models_dir")
    return str(value).rstrip("/") if value else DEFAULT_MODELS_DIR


def inside_units(infra: Infra, lock: Lock, *, role_digests: Mapping[str, str],
                   vars_digests: Mapping[str, str], instance_images: Mapping[str, str],
                   wheelhouses: Mapping[str, list[list[Any]]] | None = None) -> list[Unit]:
    """The units inside instances.

    ``role_digests``: role name -> digest of its files (every role some machine lists);
    ``vars_digests``: machine -> digest of the variable files of its host;
    ``instance_images``: machine -> the pinned image fingerprint of its instance;
    ``wheelhouses``: machine -> [filename, sha256, size] of each wheel of its wheelhouse.
    """
    units: list[Unit] = []
    for dname, _domain, mname, machine in iter_machines(infra):
        instance_uid = uid_of("instance", mname)
        ident = {"type": INSTANCE_TYPES[machine.type], "project": dname, "fingerprint": instance_images[mname]}
        roles = list(machine.roles or [])
        placed: list[str] = []
        ollama_uid = None
        if needs_ollama(machine):
            if lock.ollama is None:
                raise StaleLock(f"machine {mname} needs Ollama but the lock pins no release", "run `anklume lock`")
            pin = lock.ollama.locked
            ollama_uid = uid_of("ollama", f"{mname}/ollama")
            units.append(Unit(kind="ollama", name=f"{mname}/ollama", project=dname, object=mname, spec={
                "instance": ident, "version": pin.version, "asset": pin.asset, "url": pin.url,
                "sha256": pin.sha256, "prefix": OLLAMA_PREFIX}, after=(instance_uid,)))
            placed.append(ollama_uid)
        mdir = models_dir(machine)
        for ref in machine.models or []:
            mpin = lock.models.get(ref)
            if mpin is None:
                raise StaleLock(f"model {ref} of machine {mname} is not pinned in the lock", "run `anklume lock`")
            manifest = manifest_path(mdir, ref)
            blobs = [[b.digest, b.size] for b in (mpin.locked.config, *mpin.locked.layers)]
            uid = uid_of("model", f"{mname}/{ref}")
            units.append(Unit(kind="model", name=f"{mname}/{ref}", project=dname, object=mname, spec={
                "instance": ident, "name": mpin.locked.name, "digest": mpin.locked.digest,
                "models_dir": mdir, "manifest": manifest, "blobs": blobs}, after=(instance_uid,)))
            placed.append(uid)
        wheel_uid = None
        if OPEN_WEBUI_ROLE in roles:
            wpin = lock.open_webui
            if wpin is None:
                raise StaleLock(f"machine {mname} has the open_webui role but the lock pins no Open WebUI",
                                "run `anklume lock`")
            w = wpin.locked
            wheel_uid = uid_of("wheel", f"{mname}/open-webui")
            units.append(Unit(kind="wheel", name=f"{mname}/open-webui", project=dname, object=mname, spec={
                "instance": ident, "version": w.version, "filename": w.filename, "url": w.url,
                "sha256": w.sha256, "size": w.size, "path": f"{WHEEL_DIR}/{w.filename}",
                "wheelhouse": list((wheelhouses or {}).get(mname, []))}, after=(instance_uid,)))
            placed.append(wheel_uid)
        previous: str | None = None
        for role in roles:
            key_deps: tuple[str, ...] = ()
            if role == OLLAMA_ROLE and ollama_uid:
                key_deps = (ollama_uid,)
            elif role == OPEN_WEBUI_ROLE and wheel_uid:
                key_deps = (wheel_uid,)
            after = (instance_uid, *placed) + ((previous,) if previous else ())
            uid = uid_of("role", f"{mname}/{role}")
            units.append(Unit(kind="role", name=f"{mname}/{role}", project=dname, object=mname, spec={
                "instance": ident, "role": role, "files": role_digests[role], "vars": vars_digests[mname]},
                after=tuple(dict.fromkeys(after)), key_deps=key_deps))
            previous = uid
    return units


def inside_live(units: list[Unit], instances: Mapping[str, LiveObject]) -> dict[str, LiveObject]:
    """The live view of the units inside instances: for each unit whose instance carries its
    record, a live object with the recorded key (``instances``: machine -> its instance's
    live object, or absent)."""
    out: dict[str, LiveObject] = {}
    for unit in units:
        inst = instances.get(unit.object)
        if inst is None or inst.project != unit.project:
            continue
        recorded = inst.config.get(record_key(unit.kind, unit.name))
        if recorded:
            out[unit.uid] = LiveObject(kind=unit.kind, name=unit.name, project=unit.project, object=unit.object,
                                       config={MANAGED_KEY: "true", UNIT_KEY: recorded})
    return out


def with_inside(graph: Graph, live: Mapping[str, LiveObject]) -> dict[str, LiveObject]:
    """``live`` (the Incus objects) plus the units inside instances, as their instances'
    records say."""
    inside = [u for u in graph if u.kind in INSIDE_KINDS]
    out = {uid: o for uid, o in live.items() if o.kind not in INSIDE_KINDS}
    if inside:
        instances = {u.object: out[f"instance:{u.object}"] for u in inside if f"instance:{u.object}" in out}
        out.update(inside_live(inside, instances))
    return out

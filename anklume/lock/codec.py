"""Bytes of ``anklume.lock`` and of the infra hash: deterministic by construction.

- The lock is msgspec JSON with sorted keys, 2-space indent, LF, final newline.
- The infra hash is blake3 over the canonical encoding of the *parsed* model
  (sorted keys, defaults filled in), so comments, whitespace, key order and
  spelling out a default do not make the lock stale; any semantic change does.
  ``global.sources`` (mirrors) is left out: where bytes come from is not what
  they are.
"""

from __future__ import annotations

import blake3
import msgspec

from anklume import jsonsafe
from anklume.errors import LockFormatError
from anklume.lock.check import lock_problems
from anklume.lock.schema import (LOCK_VERSION, ClusterMember, GpuPin, ImagePin, Lock, MachineName, MemberName, ModelPin,
                                 Placement, explain)
from anklume.markers import conflict_lines
from anklume.model.schema import Infra, SourcesSettings

_ENCODER = msgspec.json.Encoder(order="sorted")

#: Bumping this invalidates every recorded infra hash (the scheme changed).
HASH_SCHEME = b"anklume-infra-v1\0"


#: Keys added to the model after its first version, left out of the canonical encoding while they
#: hold their default: an infra that does not use them keeps the hash it had (its lock stays fresh).
_LATER_KEYS = {"domain": ("target",), "machine": ("target",)}


def canonical_infra(infra: Infra) -> bytes:
    glob = msgspec.structs.replace(infra.global_, sources=SourcesSettings())
    doc = msgspec.to_builtins(msgspec.structs.replace(infra, global_=glob))
    for domain in (doc.get("domains") or {}).values():
        _drop_unset(domain, _LATER_KEYS["domain"])
        for machine in (domain.get("machines") or {}).values():
            _drop_unset(machine, _LATER_KEYS["machine"])
    return _ENCODER.encode(doc)


def _drop_unset(doc: dict, keys: tuple[str, ...]) -> None:
    for key in keys:
        if doc.get(key) is None:
            doc.pop(key, None)


def infra_hash(infra: Infra) -> str:
    return "blake3:" + blake3.blake3(HASH_SCHEME + canonical_infra(infra)).hexdigest()


def encode_lock(lock: Lock) -> bytes:
    """The lock's bytes; a lock without a cluster has no ``cluster`` key (as before clusters)."""
    if lock.cluster is None:
        doc = msgspec.to_builtins(lock)
        del doc["cluster"]
        return msgspec.json.format(_ENCODER.encode(doc), indent=2) + b"\n"
    return msgspec.json.format(_ENCODER.encode(lock), indent=2) + b"\n"


class _Head(msgspec.Struct):
    version: int


_HINT = "restore it from git, or delete it and run `anklume lock`"
#: Lock field holding pins by key -> the type of one pin (to name the key that fails).
_PINS = {"images": ImagePin, "models": ModelPin, "gpus": GpuPin}
#: The maps of the cluster section: their keys' and values' types, to name a failing entry.
_CLUSTER_MAPS = {"cluster.members": (MemberName, ClusterMember), "cluster.placement": (MachineName, Placement)}


def decode_lock(data: bytes, file: str = "anklume.lock") -> Lock:
    """The lock in ``data``, every value checked: its form (``anklume.lock.schema``), the
    values that must agree (``anklume.lock.check``), no key written twice, no nesting
    deeper than ``anklume.jsonsafe.MAX_DEPTH``.  Anything else is a ``LockFormatError``
    naming ``file`` and the key path: a lock is a file anyone can edit, never trusted."""
    try:
        head = jsonsafe.decode(data, type=_Head)
    except msgspec.DecodeError as exc:
        hunks = conflict_lines(data)
        if hunks:
            raise LockFormatError(f"{file}: git's conflict markers (line{'s' if len(hunks) > 1 else ''} "
                                  f"{', '.join(map(str, hunks))}): the merge of the lock is not finished",
                                  "run `anklume lock`: it merges both sides' pins, offline (docs/git.md)") from None
        raise LockFormatError(f"{file}: not a valid anklume lock ({exc})", _HINT) from None
    if head.version > LOCK_VERSION:
        raise LockFormatError(f"{file}: lock format version {head.version} is newer than this anklume "
                              f"understands (version {LOCK_VERSION})", "upgrade anklume")
    if head.version < 1:
        raise LockFormatError(f"{file}: unknown lock format version {head.version}")
    duplicate = jsonsafe.duplicate_key(data)
    if duplicate is not None:
        where, key = duplicate
        raise LockFormatError(f"{file}: {where or '(top level)'}: the key {key!r} appears twice", _HINT)
    try:
        lock = msgspec.json.decode(data, type=Lock)
    except msgspec.ValidationError as exc:
        raise LockFormatError(f"{file}: {_where(msgspec.json.decode(data), exc)}", _HINT) from None
    except msgspec.DecodeError as exc:
        raise LockFormatError(f"{file}: not a valid anklume lock ({exc})", _HINT) from None
    for problem in lock_problems(lock):
        raise LockFormatError(f"{file}: {problem}", _HINT)
    return lock


def lock_problem(lock: Lock) -> str | None:
    """The first problem ``decode_lock`` would find in ``lock`` (``"<key path>: <problem>"``),
    or None: a lock built in code is not checked by msgspec."""
    doc = msgspec.to_builtins(lock)
    try:
        msgspec.convert(doc, Lock)
    except msgspec.ValidationError as exc:
        return _where(doc, exc)
    return next(lock_problems(lock), None)


def _where(doc: dict, exc: msgspec.ValidationError) -> str:
    """``"<key path>: <what was expected>"`` for ``doc`` (the lock as plain data); msgspec
    names a dict entry ``[...]``, so the pins of the failing field are checked one by one
    to name the key."""
    at, words = explain(exc)
    field = at.partition("[...]")[0]
    if field in _PINS and at.startswith(field + "[...]"):
        for key, value in doc[field].items():
            try:
                msgspec.convert(value, _PINS[field])
            except msgspec.ValidationError as sub:
                sub_at, words = explain(sub)
                return f"{field}.{key}{'.' + sub_at if sub_at else ''}: {words}"
    if field in _CLUSTER_MAPS and at.startswith(field + "[...]"):  # cluster.members / cluster.placement
        key_type, value_type = _CLUSTER_MAPS[field]
        entries = doc["cluster"][field.partition(".")[2]]
        for key, value in entries.items():
            for what, of_type in ((key, key_type), (value, value_type)):
                try:
                    msgspec.convert(what, of_type)
                except msgspec.ValidationError as sub:
                    sub_at, words = explain(sub)
                    if what is key:
                        return f"{field}: the key {key!r}: {words}"
                    return f"{field}.{key}{'.' + sub_at if sub_at else ''}: {words}"
    return f"{at or '(top level)'}: {words}"

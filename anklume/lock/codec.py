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

from anklume.errors import LockFormatError
from anklume.lock.schema import LOCK_VERSION, Lock
from anklume.model.schema import Infra, SourcesSettings

_ENCODER = msgspec.json.Encoder(order="sorted")

#: Bumping this invalidates every recorded infra hash (the scheme changed).
HASH_SCHEME = b"anklume-infra-v1\0"


def canonical_infra(infra: Infra) -> bytes:
    glob = msgspec.structs.replace(infra.global_, sources=SourcesSettings())
    return _ENCODER.encode(msgspec.structs.replace(infra, global_=glob))


def infra_hash(infra: Infra) -> str:
    return "blake3:" + blake3.blake3(HASH_SCHEME + canonical_infra(infra)).hexdigest()


def encode_lock(lock: Lock) -> bytes:
    return msgspec.json.format(_ENCODER.encode(lock), indent=2) + b"\n"


class _Head(msgspec.Struct):
    version: int


def decode_lock(data: bytes, file: str = "anklume.lock") -> Lock:
    try:
        head = msgspec.json.decode(data, type=_Head)
    except msgspec.DecodeError as exc:
        raise LockFormatError(f"{file}: not a valid anklume lock ({exc})",
                              "restore it from git, or delete it and run `anklume lock`") from None
    if head.version > LOCK_VERSION:
        raise LockFormatError(f"{file}: lock format version {head.version} is newer than this anklume "
                              f"understands (version {LOCK_VERSION})", "upgrade anklume")
    if head.version < 1:
        raise LockFormatError(f"{file}: unknown lock format version {head.version}")
    try:
        return msgspec.json.decode(data, type=Lock)
    except msgspec.DecodeError as exc:
        raise LockFormatError(f"{file}: not a valid anklume lock ({exc})",
                              "restore it from git, or delete it and run `anklume lock`") from None

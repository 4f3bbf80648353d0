"""Unit keys: blake3 over a scheme constant, the kind, the name and the canonical encoding
(msgspec JSON, ``order="sorted"``) of exactly the unit's inputs: its spec and the keys of
the units named in ``key_deps``.

Changing :data:`KEY_SCHEME` changes every key: all recorded keys then differ and everything
is re-applied once (old state is thrown away, never trusted), as pydoit does.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import blake3
import msgspec

KEY_SCHEME = b"anklume-unit-v1\0"
_ENCODER = msgspec.json.Encoder(order="sorted")


def canonical(value: Any) -> bytes:
    return _ENCODER.encode(value)


def unit_key(kind: str, name: str, spec: Mapping[str, Any], dep_keys: Mapping[str, str] | None = None) -> str:
    """``blake3:<hex>`` of (scheme, kind, name, spec, keys of the key dependencies)."""
    body = canonical({"spec": spec, "deps": dict(dep_keys or {})})
    h = blake3.blake3(KEY_SCHEME)
    h.update(kind.encode() + b"\0" + name.encode() + b"\0")
    h.update(body)
    return "blake3:" + h.hexdigest()


def short(key: str) -> str:
    """The first 12 hex digits of a key, for humans."""
    return key.removeprefix("blake3:")[:12]

"""JSON that anklume did not write itself (the lock a user or a merge edited, what a mirror
or an inventory file sends), read within bounds.  Pure: no I/O.

- :func:`decode` is ``msgspec.json.decode`` whose input may nest lists and objects at most
  :data:`MAX_DEPTH` levels deep.  Deeper input is refused *before* any decoder recurses
  (JSON nested 1,000 deep made msgspec and the json module raise ``RecursionError``), as a
  ``msgspec.DecodeError``: every caller already turns that into its own clear message.
- :func:`duplicate_key` finds a key written twice in one object (JSON decoders keep the
  last one silently, so two readers may disagree on what a file says).
"""

from __future__ import annotations

import json
import re
from typing import Any

import msgspec

#: Deepest nesting of lists and objects accepted.  The deepest real documents anklume
#: reads (simplestreams catalogues, Incus resources, the lock) nest about 8 levels.
MAX_DEPTH = 64

# A JSON string (for valid JSON; an unterminated one is left to the decoder to refuse).
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_PAIR = re.compile(rb"\[\]|\{\}")


def nesting_depth(data: bytes, limit: int = MAX_DEPTH) -> int:
    """How deep lists and objects nest in ``data`` (brackets inside strings do not count);
    ``limit + 1`` as soon as it is deeper than ``limit``.  Each pass deletes the innermost
    ``[]`` and ``{}`` pairs, so the work is about ``depth`` passes over the brackets."""
    brackets = _STRING.sub(b"", data).translate(None, _NOT_BRACKETS)
    depth = 0
    while brackets:
        if depth > limit:
            return depth
        shorter = _PAIR.sub(b"", brackets)  # one regex pass: pairs made by this pass wait
        if len(shorter) == len(brackets):  # unbalanced: each bracket left may open a level
            return depth + len(brackets)
        brackets = shorter
        depth += 1
    return depth


def decode(data: bytes, *, type: Any = Any, limit: int = MAX_DEPTH) -> Any:  # noqa: A002 (msgspec's name)
    """``msgspec.json.decode(data, type=type)``; nesting deeper than ``limit`` (or deep enough
    to exhaust the stack anyway) is a ``msgspec.DecodeError``."""
    if nesting_depth(data, limit) > limit:
        raise msgspec.DecodeError(f"JSON nested more than {limit} levels deep")
    try:
        return msgspec.json.decode(data, type=type)
    except RecursionError:
        raise msgspec.DecodeError("JSON nested too deep") from None


class _Dup(dict):
    """An object in which ``key`` was written twice."""

    key: str


def _pairs(pairs: list[tuple[str, Any]]) -> dict:
    out: dict = {}
    for key, value in pairs:
        if key in out:
            dup = _Dup(out)
            dup.key = key
            return dup
        out[key] = value
    return out


def duplicate_key(data: bytes) -> tuple[str, str] | None:
    """``(path of the object, key)`` of the first key written twice in one object of ``data``
    (path like ``models.gemma:2b.locked``, ``""`` at the top), or None.  Invalid or too deep
    JSON gives None: :func:`decode` is the one that refuses it."""
    if nesting_depth(data) > MAX_DEPTH:
        return None
    try:
        doc = json.loads(data, object_pairs_hook=_pairs)
    except (ValueError, RecursionError):
        return None
    stack: list[tuple[str, Any]] = [("", doc)]
    while stack:
        path, node = stack.pop()
        if isinstance(node, _Dup):
            return path, node.key
        if isinstance(node, dict):
            stack.extend((f"{path}.{k}" if path else k, v) for k, v in reversed(node.items()))
        elif isinstance(node, list):
            stack.extend((f"{path}[{i}]", v) for i, v in reversed(list(enumerate(node))))
    return None

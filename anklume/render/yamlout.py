"""YAML text byte-identical to the original generator's dumper.

The original (AnKLuMe v1, ``scripts/generate.py``) dumps with a ``SafeDumper``
subclass whose lists are indented under their key, ``None`` as an empty scalar,
``sort_keys=False, default_flow_style=False, allow_unicode=True``.
``dump_reference`` is exactly that dumper.

``dump`` is a hand-written emitter for the shapes the Ansible tree uses (dicts
with string keys, lists, str/int/bool/None).  It produces the same bytes as
``dump_reference`` and is several times faster; whenever a value is not
*provably* emitted by PyYAML the way it would emit it (floats, dates, non-ASCII
text, strings with YAML indicators, lines long enough to be folded...), the whole
document goes through ``dump_reference`` instead.

Neither drops ``None`` values: the original drops ``None`` only from the
variable mappings it builds itself (see ``render.tree``), and inside values
``None`` is meaningful (``hosts:`` with no hosts, ``<machine>:`` without an IP).
"""

from __future__ import annotations

import re
from typing import Any

import yaml
from yaml.resolver import Resolver

__all__ = ["dump", "dump_reference", "ReferenceDumper"]


class ReferenceDumper(yaml.SafeDumper):
    """The original's dumper: lists indented under their key (``key:\\n  - item``)."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        return super().increase_indent(flow, False)


ReferenceDumper.add_representer(
    type(None), lambda dumper, _value: dumper.represent_scalar("tag:yaml.org,2002:null", ""))


def dump_reference(data: Any) -> str:
    """The original's ``yaml.dump`` call, verbatim."""
    return yaml.dump(data, Dumper=ReferenceDumper, default_flow_style=False, sort_keys=False,
                     allow_unicode=True)


# -- fast path ---------------------------------------------------------------------

#: PyYAML folds plain and quoted scalars at a space once the column passes 80.
_BEST_WIDTH = 80
#: PyYAML writes a mapping key as a complex key (``? key``) once the key plus its
#: tag (``!!str``, 5 characters, counted even when not written) reaches 128.
_MAX_SIMPLE_KEY = 122

# Words of characters that PyYAML never treats as indicators inside a plain scalar,
# joined by single ':' or ' ' (so never ': ', ' #', ' :' or a trailing ':'/' ').
_WORD = r"[A-Za-z0-9_./()+=@,%~\-]"
_SAFE_RE = re.compile(rf"[A-Za-z0-9_./(]{_WORD}*(?:[: ]{_WORD}+)*")
_STR_TAG = "tag:yaml.org,2002:str"
_RESOLVER = Resolver()
# The first characters for which an implicit resolver exists (bool, int, float,
# null, merge, timestamp, value): any other first character resolves to str.
_RESOLVABLE_FIRST = frozenset(ch for ch in Resolver.yaml_implicit_resolvers if ch is not None)


class _Fallback(Exception):
    """This document needs the reference dumper."""


#: str -> its YAML text (plain or single-quoted), or False when not provably safe.
_SCALARS: dict[str, str | bool] = {}
#: mapping key -> ``"<key>:"``, or False when not provably safe.
_KEYS: dict[Any, str | bool] = {}
_CACHE_MAX = 100_000
_PADS = [" " * n for n in range(64)]


def _classify(s: str) -> str | None:
    if s == "":
        return "''"
    if not s.isascii() or _SAFE_RE.fullmatch(s) is None or s.startswith("..."):
        return None
    if s[0] in _RESOLVABLE_FIRST and _RESOLVER.resolve(yaml.ScalarNode, s, (True, False)) != _STR_TAG:
        return f"'{s}'"  # resolves to bool/int/float/null/...: PyYAML single-quotes it
    return s


def _scalar_slow(s: str) -> str:
    text = _SCALARS.get(s)
    if text is None:
        if len(_SCALARS) >= _CACHE_MAX:
            _SCALARS.clear()
        text = _SCALARS[s] = _classify(s) or False
    if text is False:
        raise _Fallback
    return text  # type: ignore[return-value]


def _key_slow(key: Any) -> str:
    if type(key) is not str or key == "" or len(key) > _MAX_SIMPLE_KEY:
        raise _Fallback
    text = _KEYS.get(key)
    if text is None:
        if len(_KEYS) >= _CACHE_MAX:
            _KEYS.clear()
        scalar = _classify(key)
        text = _KEYS[key] = f"{scalar}:" if scalar else False
    if text is False:
        raise _Fallback
    return text  # type: ignore[return-value]


def _pad(n: int) -> str:
    return _PADS[n] if n < 64 else " " * n


def _inline(value: Any, head: str, seen: set[int]) -> str | None:
    """The line ``head`` followed by ``value`` written inline, or None when ``value``
    is a non-empty collection (written as a block below ``head``).  A collection
    met twice would get an anchor and an alias from PyYAML: fall back."""
    t = type(value)
    if t is str:
        text = _SCALARS.get(value) or _scalar_slow(value)
        if len(head) + len(text) >= _BEST_WIDTH - 1 and " " in text:
            raise _Fallback  # PyYAML might fold it
        return f"{head} {text}"
    if t is bool:
        return f"{head} true" if value else f"{head} false"
    if t is int:
        return f"{head} {value}"
    if value is None:
        return head
    if t is dict or t is list:
        n = len(seen)
        seen.add(id(value))
        if len(seen) == n:
            raise _Fallback
        if value:
            return None
        return f"{head} {{}}" if t is dict else f"{head} []"
    raise _Fallback  # floats, dates, tuples, subclasses...


def _emit_dict(d: dict, indent: int, first: str, out: list[str], seen: set[int]) -> None:
    """Write the items of a non-empty dict at ``indent``; the first line starts with ``first``."""
    pad = _pad(indent)
    lead = first
    append = out.append
    for key, value in d.items():
        head = lead + (_KEYS.get(key) or _key_slow(key))
        lead = pad
        if type(value) is str:  # the common case, inlined from _inline
            text = _SCALARS.get(value) or _scalar_slow(value)
            if len(head) + len(text) >= _BEST_WIDTH - 1 and " " in text:
                raise _Fallback
            append(f"{head} {text}")
            continue
        line = _inline(value, head, seen)
        if line is not None:
            append(line)
            continue
        append(head)
        inner = _pad(indent + 2)
        if type(value) is dict:
            _emit_dict(value, indent + 2, inner, out, seen)
        else:
            _emit_list(value, indent + 2, inner, out, seen)


def _emit_list(items: list, indent: int, first: str, out: list[str], seen: set[int]) -> None:
    """Write the items of a non-empty list at ``indent``; the first line starts with ``first``."""
    pad = _pad(indent)
    lead = first
    for value in items:
        head = lead + "-"
        lead = pad
        line = _inline(value, head, seen)
        if line is not None:
            out.append(line)
        elif type(value) is dict:
            _emit_dict(value, indent + 2, head + " ", out, seen)
        else:
            _emit_list(value, indent + 2, head + " ", out, seen)


def dump(data: Any) -> str:
    """Same bytes as ``dump_reference(data)``, fast for plain data."""
    if type(data) is not dict:
        return dump_reference(data)
    if not data:
        return "{}\n"
    out: list[str] = []
    try:
        _emit_dict(data, 0, "", out, {id(data)})
    except _Fallback:
        return dump_reference(data)
    out.append("")
    return "\n".join(out)

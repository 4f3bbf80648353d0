"""Turn parsed YAML into msgspec structs, collecting every problem with its
key path and line instead of stopping at the first one.

msgspec reports ``$.domains[...]`` paths and stops at the first error, so each
struct is converted field by field here: unknown keys get a "did you mean",
missing keys are named, and each value is checked against its annotated type.
"""

from __future__ import annotations

import difflib
import functools
import re
import types
import typing
from typing import Any

import msgspec

from anklume.errors import Problem
from anklume.model.yamlsafe import Path_, dotted

_MSGSPEC_AT = re.compile(r" - at `\$(?P<sub>[^`]*)`$")


class Context:
    """Where problems go, and how to find the line of a key path."""

    def __init__(self, file: str, marks: dict[Path_, int]):
        self.file = file
        self.marks = marks
        self.problems: list[Problem] = []

    def line(self, path: Path_) -> int | None:
        while path:
            if path in self.marks:
                return self.marks[path]
            path = path[:-1]
        return None

    def add(self, path: Path_, message: str, hint: str | None = None) -> None:
        self.problems.append(Problem(self.file, dotted(path), message, self.line(path), hint))


def describe(value: Any) -> str:
    """A value's type as a YAML user names it, with the value when short."""
    kinds = {bool: "a boolean", int: "an integer", float: "a number", str: "a string",
             list: "a list", dict: "a mapping", type(None): "nothing (null)"}
    kind = kinds.get(type(value), type(value).__name__)
    if isinstance(value, (bool, int, float)) or (isinstance(value, str) and len(value) <= 40):
        return f"{kind} ({value!r})" if value is not None else kind
    return kind


def convert_struct(raw: Any, cls: type[msgspec.Struct], path: Path_, ctx: Context,
                   nested: dict[str, Any] | None = None) -> msgspec.Struct | None:
    """Convert one mapping to ``cls``, recording every problem in ``ctx``.

    ``nested`` maps field names to callables ``(value, path, ctx) -> converted``
    for fields converted separately (they report their own problems and return
    what converted, so the rest of the file is still checked).  A bad optional
    value falls back to its default for the same reason; only a missing or bad
    required field gives ``None``.
    """
    if not isinstance(raw, dict):
        ctx.add(path, f"expected a mapping, got {describe(raw)}")
        return None
    info = _fields(cls)
    by_name = {f.encode_name: f for f in info}
    nested = nested or {}
    values: dict[str, Any] = {}
    complete = True
    for key, value in raw.items():
        field = by_name.get(key)
        if field is None:
            close = difflib.get_close_matches(key, list(by_name), n=1, cutoff=0.6)
            hint = f"did you mean '{close[0]}'?" if close else f"known keys: {', '.join(sorted(by_name))}"
            ctx.add(path + (key,), "unknown key", hint)
            continue
        if key in nested:
            before = len(ctx.problems)
            converted = nested[key](value, path + (key,), ctx)
            if converted is not None or len(ctx.problems) == before:
                values[field.name] = converted  # (None only where null is a valid value)
            elif field.required:
                complete = False
            continue
        ok, converted = convert_value(value, field.type, path + (key,), ctx)
        if ok:
            values[field.name] = converted
        else:
            complete = complete and not field.required
    for field in info:
        if field.required and field.encode_name not in raw:
            ctx.add(path + (field.encode_name,), "missing required key",
                    f"add '{field.encode_name}:' under {dotted(path) or 'the top level'}")
            complete = False
    return cls(**values) if complete else None


@functools.cache
def _fields(cls: type[msgspec.Struct]) -> tuple[msgspec.structs.FieldInfo, ...]:
    return msgspec.structs.fields(cls)


def convert_value(value: Any, typ: Any, path: Path_, ctx: Context) -> tuple[bool, Any]:
    """``(True, converted)``, or ``(False, None)`` with the problems recorded.

    msgspec names a failing dict entry ``[...]`` and a list item ``[i]`` in its own
    words; the entries of a mapping and the items of a list are checked one by one
    instead, so that each problem names its key path (``roles[1]``) and its line.
    """
    try:
        return True, msgspec.convert(value, typ, strict=True)
    except msgspec.ValidationError as exc:
        inner = _without_none(typ)
        before = len(ctx.problems)
        if isinstance(value, dict) and typing.get_origin(inner) is dict:
            value_type = typing.get_args(inner)[1]
            for key, item in value.items():
                convert_value(item, value_type, path + (key,), ctx)
        elif isinstance(value, list) and typing.get_origin(inner) is list:
            item_type = typing.get_args(inner)[0]
            for i, item in enumerate(value):
                convert_value(item, item_type, path + (i,), ctx)
        if len(ctx.problems) == before:  # not an entry's problem: the value's own
            ctx.add(path, _message(exc, inner, value))
        return False, None


def _without_none(typ: Any) -> Any:
    args = typing.get_args(typ)
    if typing.get_origin(typ) in (typing.Union, types.UnionType) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        if len(rest) == 1:
            return rest[0]
    return typ


def _message(exc: msgspec.ValidationError, typ: Any, value: Any) -> str:
    if typing.get_origin(typ) is typing.Literal:
        choices = " or ".join(repr(c) for c in typing.get_args(typ))
        return f"must be {choices}, got {describe(value)}"
    if typing.get_origin(typ) is typing.Annotated:
        base, *metas = typing.get_args(typ)
        bounds = [(m.ge, m.le) for m in metas if isinstance(m, msgspec.Meta)]
        if base is int and bounds and None not in bounds[0]:
            return f"must be an integer {bounds[0][0]}-{bounds[0][1]}, got {describe(value)}"
    text = str(exc)
    match = _MSGSPEC_AT.search(text)
    if match:  # an entry of a list inside the value: keep msgspec's words
        text = text[: match.start()] + f" (at {match.group('sub') or 'the value'})"
    text = text[0].lower() + text[1:] if text else text
    text = text.replace("`", "")
    for name, friendly in _FRIENDLY:
        text = text.replace(name, friendly)
    if not match:
        head, got, _ = text.partition(", got ")
        text = f"{head}, got {describe(value)}" if got else f"{text}; the value is {describe(value)}"
    return text


_FRIENDLY = (
    ("bool | int | float | str", "a scalar (string, number or boolean)"),
    ("bool | null", "true or false"), ("array | null", "a list"), ("array", "a list"),
    ("object | null", "a mapping"), ("object", "a mapping"), ("str | null", "a string"),
    ("int | float | str | bool", "a scalar (string, number or boolean)"),
    ("expected bool", "expected true or false"), ("expected int", "expected an integer"),
    ("expected str", "expected a string"),
)

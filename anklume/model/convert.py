"""Turn parsed YAML into msgspec structs, collecting every problem with its
key path and line instead of stopping at the first one.

msgspec reports ``$.domains[...]`` paths and stops at the first error, so each
struct is converted field by field here: unknown keys get a "did you mean",
missing keys are named, and each value is checked against its annotated type.
"""

from __future__ import annotations

import difflib
import re
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
    info = msgspec.structs.fields(cls)
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
            converted = nested[key](value, path + (key,), ctx)
            if converted is not None or value is None:
                values[field.name] = converted
            elif field.required:
                complete = False
            continue
        try:
            values[field.name] = msgspec.convert(value, field.type, strict=True)
        except msgspec.ValidationError as exc:
            _add_msgspec_error(ctx, path + (key,), exc, value)
            complete = complete and not field.required
    for field in info:
        if field.required and field.encode_name not in raw:
            ctx.add(path + (field.encode_name,), "missing required key",
                    f"add '{field.encode_name}:' under {dotted(path) or 'the top level'}")
            complete = False
    return cls(**values) if complete else None


def _add_msgspec_error(ctx: Context, path: Path_, exc: msgspec.ValidationError, value: Any) -> None:
    text = str(exc)
    match = _MSGSPEC_AT.search(text)
    sub = ""
    if match:
        sub = match.group("sub")
        text = text[: match.start()]
    full = path + _parse_sub(sub)
    text = text[0].lower() + text[1:] if text else text
    text = text.replace("`", "")
    for name, friendly in _FRIENDLY:
        text = text.replace(name, friendly)
    if not sub:
        text += f"; the value is {describe(value)}"
    ctx.add(full, text)


_FRIENDLY = (
    ("bool | null", "true or false"), ("array | null", "a list"), ("array", "a list"),
    ("object | null", "a mapping"), ("object", "a mapping"), ("str | null", "a string"),
    ("int | float | str | bool", "a scalar (string, number or boolean)"),
    ("expected bool", "expected true or false"), ("expected int", "expected an integer"),
    ("expected str", "expected a string"),
)


def _parse_sub(sub: str) -> Path_:
    """msgspec's ``.key[0]`` / ``[...]`` suffix -> path parts (best effort)."""
    parts: list[str | int] = []
    for m in re.finditer(r"\.([^.\[]+)|\[(\d+)\]", sub):
        parts.append(m.group(1) if m.group(1) is not None else int(m.group(2)))
    return tuple(parts)

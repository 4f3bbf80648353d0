"""Read YAML safely, keeping the line of every key for error messages.

- Bytes that are not UTF-8, a syntax error, an empty file or a top level that is
  not a mapping give a ``Problem`` naming the file and the line.
- Duplicate keys in one mapping are an error (PyYAML keeps the last silently).
- Anchors and aliases are expanded by us with a budget, so a "billion laughs"
  document is refused before it can take memory.
- Text no file can hold (a lone surrogate, which a ``"\\ud800"`` escape makes and UTF-8
  cannot encode) and integers beyond 64 bits (:data:`INT_MIN`..:data:`INT_MAX`: what
  msgpack, Incus and most YAML readers hold) are problems of the value or key that
  holds them, never a crash later.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

from anklume.errors import InvalidInfra, Problem

Path_ = tuple[str | int, ...]

#: Upper bound on the number of nodes after alias expansion.  The 10,000-machine
#: benchmark infra has about 200,000; a hostile document is stopped well before
#: it can exhaust memory.
MAX_NODES = 5_000_000


#: Deepest nesting of lists and mappings accepted; PyYAML's composer recurses once
#: per level, so this also keeps a hostile file from exhausting the stack.
MAX_DEPTH = 100


class _TooDeep(yaml.YAMLError):
    def __init__(self, mark: yaml.Mark):
        super().__init__()
        self.problem = f"lists or mappings nested more than {MAX_DEPTH} levels deep"
        self.problem_mark = mark


_STR_TAG = "tag:yaml.org,2002:str"

#: The integers a value may hold: 64-bit signed, as Incus (Go's int64) reads them.
INT_MIN, INT_MAX = -(2**63), 2**63 - 1
_SURROGATE = re.compile("[\ud800-\udfff]")


class _Loader(yaml.SafeLoader):
    _depth = 0

    def compose_node(self, parent, index):  # noqa: ANN001 (PyYAML's signature)
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise _TooDeep(self.peek_event().start_mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


#: A SafeLoader that refuses nesting deeper than MAX_DEPTH (a ``yaml.YAMLError``) instead of
#: exhausting the stack: for any YAML a user may have written (tree files included).
BoundedLoader = _Loader


def _fail(file: str, message: str, line: int | None = None, hint: str | None = None) -> InvalidInfra:
    return InvalidInfra(problems=[Problem(file=file, path="", message=message, line=line, hint=hint)])


def load_yaml(data: bytes, file: str) -> tuple[dict[str, Any], dict[Path_, int]]:
    """Parse ``data`` into plain Python values and a map key path -> line (1-based)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise _fail(file, f"not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start})", line,
                    "save the file as UTF-8") from None
    loader = None
    try:
        loader = _Loader(text)
        node = loader.get_single_node()
    except yaml.YAMLError as exc:
        raise _fail(file, f"invalid YAML: {_yaml_problem(exc)}", _yaml_line(exc, text)) from None
    except RecursionError:
        raise _fail(file, "invalid YAML: lists or mappings nested too deep") from None
    finally:
        if loader is not None:
            loader.dispose()
    if node is None:
        raise _fail(file, "the file is empty", None, "start from one of the files in examples/")
    if not isinstance(node, yaml.MappingNode):
        raise _fail(file, f"the top level must be a mapping of keys, got {_kind(node)}", node.start_mark.line + 1)
    if b"*" in data:  # without '*' there is no alias, so nothing can expand
        _check_budget(node, file)
    marks: dict[Path_, int] = {}
    problems: list[Problem] = []
    try:
        value = _build(node, (), marks, problems, file, yaml.SafeLoader(""))
    except RecursionError:
        raise _fail(file, "invalid YAML: lists or mappings nested too deep") from None
    if problems:
        raise InvalidInfra(problems=problems)
    return value, marks


def _yaml_problem(exc: yaml.YAMLError) -> str:
    if isinstance(exc, yaml.reader.ReaderError):
        char = exc.character
        code = f"U+{char:04X}" if isinstance(char, int) else repr(char)
        return f"character {code} is not allowed in YAML"
    return getattr(exc, "problem", None) or str(exc)


def _yaml_line(exc: yaml.YAMLError, text: str) -> int | None:
    mark = getattr(exc, "problem_mark", None)
    if mark is not None:
        return mark.line + 1
    if isinstance(exc, yaml.reader.ReaderError):
        return text[: exc.position].count("\n") + 1
    return None


def _kind(node: yaml.Node) -> str:
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    if isinstance(node, yaml.MappingNode):
        return "a mapping"
    return f"a scalar ({node.value!r})"


def _check_budget(root: yaml.Node, file: str) -> None:
    """Count the nodes the document expands to, memoised per node, without expanding."""
    sizes: dict[int, int] = {}
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    on_path: set[int] = set()
    while stack:
        node, done = stack.pop()
        nid = id(node)
        if done:
            on_path.discard(nid)
            total = 1 + sum(sizes[id(c)] for c in _children(node))
            if total > MAX_NODES:
                raise _fail(file, f"the document expands to more than {MAX_NODES:,} values "
                                  "(anchors and aliases nested too deep)",
                            node.start_mark.line + 1, "remove the recursive or repeated aliases")
            sizes[nid] = total
            continue
        if nid in sizes:
            continue
        if nid in on_path:
            raise _fail(file, "recursive alias", node.start_mark.line + 1)
        on_path.add(nid)
        stack.append((node, True))
        for child in _children(node):
            if id(child) not in sizes:
                stack.append((child, False))


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _build(node: yaml.Node, path: Path_, marks: dict[Path_, int], problems: list[Problem],
           file: str, ctor: yaml.SafeLoader) -> Any:
    if isinstance(node, yaml.MappingNode):
        try:
            merged, explicit = _split_merge(node)
        except _MergeError as exc:
            problems.append(Problem(file, dotted(path), f"invalid merge key (<<): {exc}",
                                    exc.node.start_mark.line + 1))
            return {}
        pairs: dict[str, tuple[yaml.Node, yaml.Node]] = {}
        for key_node, value_node in merged:  # a later pair in this list wins
            key = _key(key_node)
            if key is not None:
                pairs[key] = (key_node, value_node)
        written: set[str] = set()
        for key_node, value_node in explicit:  # an explicit key wins over merged ones
            key = _key(key_node)
            if key is None:
                problems.append(Problem(file, dotted(path), "keys must be plain names",
                                        key_node.start_mark.line + 1))
            elif has_surrogate(key):
                problems.append(Problem(file, dotted(path + (printable(key),)), _SURROGATE_MESSAGE,
                                        key_node.start_mark.line + 1, _SURROGATE_HINT))
            elif key in written:
                problems.append(Problem(file, dotted(path + (key,)), "duplicate key",
                                        key_node.start_mark.line + 1,
                                        f"first defined on line {pairs[key][0].start_mark.line + 1}"))
            else:
                written.add(key)
                pairs[key] = (key_node, value_node)
        out: dict[str, Any] = {}
        for key, (key_node, value_node) in pairs.items():
            marks[path + (key,)] = key_node.start_mark.line + 1
            out[key] = _build(value_node, path + (key,), marks, problems, file, ctor)
        return out
    if isinstance(node, yaml.SequenceNode):
        items = []
        for i, child in enumerate(node.value):
            marks[path + (i,)] = child.start_mark.line + 1
            items.append(_build(child, path + (i,), marks, problems, file, ctor))
        return items
    try:
        value = ctor.construct_object(node)
    except (yaml.YAMLError, ValueError, TypeError, OverflowError) as exc:
        problem = _yaml_problem(exc) if isinstance(exc, yaml.YAMLError) else str(exc)
        mark = getattr(exc, "problem_mark", None) or node.start_mark
        problems.append(Problem(file, dotted(path), f"invalid value {printable(node.value[:40])!r}: {problem}",
                                mark.line + 1))
        return None
    if type(value) is str and has_surrogate(value):
        problems.append(Problem(file, dotted(path), _SURROGATE_MESSAGE, node.start_mark.line + 1, _SURROGATE_HINT))
        return None
    if type(value) is int and not INT_MIN <= value <= INT_MAX:
        problems.append(Problem(file, dotted(path), f"the integer {node.value[:40]} does not fit in 64 bits "
                                                    f"({INT_MIN} to {INT_MAX})",
                                node.start_mark.line + 1, "quote it if it is meant as text"))
        return None
    return value


_SURROGATE_MESSAGE = "the text holds a lone surrogate (an escape \\uD800 to \\uDFFF), which UTF-8 cannot store"
_SURROGATE_HINT = "write the character itself, or a pair of escapes that make one character"


def has_surrogate(text: str) -> bool:
    return not text.isascii() and _SURROGATE.search(text) is not None


def printable(text: str) -> str:
    """``text`` with any lone surrogate written as an escape (``\\ud800``), so it can be printed."""
    return text if not has_surrogate(text) else text.encode("utf-8", "backslashreplace").decode("utf-8")


_MERGE_TAG = "tag:yaml.org,2002:merge"


class _MergeError(Exception):
    def __init__(self, message: str, node: yaml.Node):
        super().__init__(message)
        self.node = node


def _split_merge(node: yaml.MappingNode) -> tuple[list[tuple[yaml.Node, yaml.Node]],
                                                   list[tuple[yaml.Node, yaml.Node]]]:
    """(pairs merged in through ``<<``, lowest precedence first; the mapping's own pairs).

    Unlike PyYAML's ``flatten_mapping`` this does not modify the nodes, so an anchored
    mapping reads the same wherever it is used.  Cycles were refused by the budget check.
    """
    merged: list[tuple[yaml.Node, yaml.Node]] = []
    explicit: list[tuple[yaml.Node, yaml.Node]] = []
    for key_node, value_node in node.value:
        if key_node.tag != _MERGE_TAG:
            explicit.append((key_node, value_node))
            continue
        if isinstance(value_node, yaml.MappingNode):
            sources = [value_node]
        elif isinstance(value_node, yaml.SequenceNode):
            sources = list(value_node.value)
        else:
            raise _MergeError("expected a mapping or a list of mappings", key_node)
        for source in reversed(sources):  # the first mapping listed takes precedence
            if not isinstance(source, yaml.MappingNode):
                raise _MergeError("expected a mapping or a list of mappings", key_node)
            sub_merged, sub_explicit = _split_merge(source)
            merged.extend(sub_merged + sub_explicit)
    return merged, explicit


_NULL_TAG = "tag:yaml.org,2002:null"


def _key(node: yaml.Node) -> str | None:
    """A mapping key as the user wrote it (``no:`` is the name 'no', not false); None if not a name."""
    if not isinstance(node, yaml.ScalarNode) or node.tag == _NULL_TAG:
        return None
    return node.value


def dotted(path: Path_) -> str:
    """``("domains", "lab", "machines", "m1", "roles", 0)`` -> ``domains.lab.machines.m1.roles[0]``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out

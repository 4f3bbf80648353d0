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

Two parsers, one result.  The common path reads libyaml's events (``yaml.CSafeLoader``: the
C parser, with marks) and builds the values and the lines of their keys itself; it handles
the plain documents nearly every ``infra.yml`` is (mappings, lists, scalars, no anchor,
alias, merge key or explicit tag).  Anything else, and anything that is or may be a problem
(a syntax error, a duplicate key, a key that is not a plain name, a value its constructor
refuses, a lone surrogate, an integer beyond 64 bits, nesting near :data:`MAX_DEPTH`, not
UTF-8, not one mapping), sends the whole document to the exact parser below (PyYAML's own,
node by node), which reads it as before and reports every problem with its line.  So the
fast path only ever answers what the exact parser would (tests/model/test_yaml_paths.py
compares them), and a 10,000-machine file is read in a fraction of a second.
"""

from __future__ import annotations

import re
from typing import Any

import yaml
from yaml.events import (AliasEvent, DocumentStartEvent, MappingEndEvent, MappingStartEvent, ScalarEvent,
                         SequenceEndEvent, SequenceStartEvent)
from yaml.nodes import ScalarNode

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
    fast = _load_fast(data)
    if fast is not None:
        return fast
    return load_yaml_exact(data, file)


def load_yaml_exact(data: bytes, file: str) -> tuple[dict[str, Any], dict[Path_, int]]:
    """``load_yaml`` by PyYAML's own parser, node by node: slower, and the one that reports."""
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


# -- the common path: libyaml's events -----------------------------------------------------


class _Unusual(Exception):
    """The fast path met something it leaves to the exact parser."""


_CLoader = getattr(yaml, "CSafeLoader", None)
_BOM = "\ufeff".encode()
#: Text libyaml reads where PyYAML's own scanner refuses it (found by tests/model/test_yaml_paths.py):
#: tabs, a byte order mark past the start, a comment right after a block scalar's indicator;
#: and (tested apart) '?' inside a plain scalar of a flow collection.
_LENIENT = re.compile(rb"\t|\xef\xbb\xbf|[|>][-+0-9]{0,2}#")
_RESOLVERS = yaml.resolver.Resolver.yaml_implicit_resolvers
_TAG_STR = "tag:yaml.org,2002:str"
_TAG_INT = "tag:yaml.org,2002:int"


def _resolve_plain(value: str) -> str:
    """The tag PyYAML's SafeLoader gives a plain (unquoted, untagged) scalar."""
    for tag, regexp in _RESOLVERS.get(value[0] if value else "", ()):
        if regexp.match(value):
            return tag
    return _TAG_STR


def _load_fast(data: bytes) -> tuple[dict[str, Any], dict[Path_, int]] | None:
    """``load_yaml``'s answer from libyaml's events, or None for the exact parser to give it."""
    if _CLoader is None:
        return None
    body = data[3:] if data.startswith(_BOM) else data
    if _LENIENT.search(body) or (b"?" in body and (b"[" in body or b"{" in body)):
        return None  # where libyaml takes what PyYAML's scanner refuses
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    try:
        return _build_from_events(text)
    except (_Unusual, yaml.YAMLError, RecursionError, ValueError, TypeError, OverflowError):
        return None


def _build_from_events(text: str) -> tuple[dict[str, Any], dict[Path_, int]]:
    marks: dict[Path_, int] = {}
    ctor = yaml.SafeLoader("")
    # one frame per open mapping or list: [container, its key path, the key awaiting its value]
    stack: list[list[Any]] = []
    root: Any = None
    documents = 0
    loader = _CLoader(text)
    try:
        while True:
            event = loader.get_event()
            if event is None:
                break
            cls = event.__class__
            if cls is ScalarEvent:
                if event.anchor is not None or event.tag is not None:
                    raise _Unusual
                raw = event.value
                if not raw.isascii() and _SURROGATE.search(raw):
                    raise _Unusual
                plain = event.implicit[0]
                if stack and stack[-1][0].__class__ is dict and stack[-1][2] is _NO_KEY:
                    # a key: the text as written, unless it is null or a merge key ('<<')
                    if plain and (not raw or raw[0] in _KEY_SUSPECTS) and _resolve_plain(raw) in _NOT_KEYS:
                        raise _Unusual
                    frame = stack[-1]
                    if raw in frame[0]:
                        raise _Unusual  # a duplicate: the exact parser names both lines
                    frame[2] = raw
                    marks[frame[1] + (raw,)] = event.start_mark.line + 1
                    continue
                value: Any = raw
                if plain:
                    tag = _resolve_plain(raw)
                    if tag != _TAG_STR:
                        value = ctor.construct_object(ScalarNode(tag, raw, event.start_mark, event.end_mark))
                        if tag == _TAG_INT and not INT_MIN <= value <= INT_MAX:
                            raise _Unusual
                        ctor.constructed_objects.clear()
                container = None
            elif cls is MappingStartEvent or cls is SequenceStartEvent:
                if event.anchor is not None or event.tag is not None or len(stack) >= MAX_DEPTH - 1:
                    raise _Unusual
                value = container = {} if cls is MappingStartEvent else []
            elif cls is MappingEndEvent or cls is SequenceEndEvent:
                stack.pop()
                continue
            elif cls is AliasEvent:
                raise _Unusual
            elif cls is DocumentStartEvent:
                documents += 1
                if documents > 1:
                    raise _Unusual
                continue
            else:  # stream start and end, document end
                continue
            if stack:
                frame = stack[-1]
                parent = frame[0]
                if parent.__class__ is dict:
                    if frame[2] is _NO_KEY:
                        raise _Unusual  # a mapping or a list as a key
                    path = frame[1] + (frame[2],)
                    parent[frame[2]] = value
                    frame[2] = _NO_KEY
                else:
                    path = frame[1] + (len(parent),)
                    marks[path] = event.start_mark.line + 1
                    parent.append(value)
            elif root is None and container is not None:
                root, path = value, ()
            else:
                raise _Unusual  # the top level is a scalar
            if container is not None:
                stack.append([container, path, _NO_KEY])
    finally:
        loader.dispose()
    if root.__class__ is not dict:
        raise _Unusual  # empty, or not a mapping
    return root, marks


_NO_KEY = object()
#: First characters of a plain key that may resolve to null ('~', 'null') or merge ('<<');
#: a key resolving to anything else (a number, a boolean) is its text in the exact parser too.
_KEY_SUSPECTS = frozenset("~nN<")
_NOT_KEYS = frozenset({_NULL_TAG, _MERGE_TAG})

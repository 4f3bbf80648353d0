"""Read YAML safely, keeping the line of every key for error messages.

- Bytes that are not UTF-8, a syntax error, an empty file or a top level that is
  not a mapping give a ``Problem`` naming the file and the line.
- Duplicate keys in one mapping are an error (PyYAML keeps the last silently).
- Anchors and aliases are expanded by us with a budget, so a "billion laughs"
  document is refused before it can take memory.
"""

from __future__ import annotations

from typing import Any

import yaml

from anklume.errors import InvalidInfra, Problem

Path_ = tuple[str | int, ...]

#: Upper bound on the number of nodes after alias expansion.  The 10,000-machine
#: benchmark infra has about 200,000; a hostile document is stopped well before
#: it can exhaust memory.
MAX_NODES = 5_000_000


class _Loader(yaml.SafeLoader):
    pass


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
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc)
        raise _fail(file, f"invalid YAML: {problem}", line) from None
    finally:
        loader.dispose()
    if node is None:
        raise _fail(file, "the file is empty", None, "start from one of the files in examples/")
    if not isinstance(node, yaml.MappingNode):
        raise _fail(file, f"the top level must be a mapping of keys, got {_kind(node)}", node.start_mark.line + 1)
    _check_budget(node, file)
    marks: dict[Path_, int] = {}
    problems: list[Problem] = []
    value = _build(node, (), marks, problems, file, _Loader(""))
    if problems:
        raise InvalidInfra(problems=problems)
    return value, marks


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
        ctor.flatten_mapping(node)  # YAML merge keys (<<)
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = ctor.construct_object(key_node) if isinstance(key_node, yaml.ScalarNode) else None
            if key is None or isinstance(key, (list, dict)):
                problems.append(Problem(file, dotted(path), "keys must be plain names",
                                        key_node.start_mark.line + 1))
                continue
            if not isinstance(key, str):
                key = str(key) if not isinstance(key, bool) else str(key).lower()
            if key in out:
                problems.append(Problem(file, dotted(path + (key,)), "duplicate key",
                                        key_node.start_mark.line + 1,
                                        f"first defined on line {marks.get(path + (key,))}"))
                continue
            marks[path + (key,)] = key_node.start_mark.line + 1
            out[key] = _build(value_node, path + (key,), marks, problems, file, ctor)
        return out
    if isinstance(node, yaml.SequenceNode):
        items = []
        for i, child in enumerate(node.value):
            marks[path + (i,)] = child.start_mark.line + 1
            items.append(_build(child, path + (i,), marks, problems, file, ctor))
        return items
    return ctor.construct_object(node)


def dotted(path: Path_) -> str:
    """``("domains", "lab", "machines", "m1", "roles", 0)`` -> ``domains.lab.machines.m1.roles[0]``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out

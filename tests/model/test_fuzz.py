"""Mutated example files: ``load_infra`` returns an ``Infra`` or raises ``InvalidInfra``, never
anything else, and every problem it reports can be shown to the user (a path or a message, and
a line that exists in the file).

Each mutation starts from one of the example files (the original's six and the project's own)
and breaks it the way an editor, a merge or a disk can: a key deleted, a value of another type,
an unknown key, a line duplicated, the file cut short, stray or non-UTF-8 bytes, values nested
too deep, scalars turned into lists; and the way a hostile author can: text holding the managed
markers, names ending in a newline, escapes that make lone surrogates, integers beyond 64 bits.
Deterministic (derandomize) and small: 270 cases with ANKLUME_FUZZ=full (a tenth locally).

Whatever loads must also be usable to the end: its infra hash and its memo encode, every file
it renders has a plain name, and its managed sections merge into files that converge.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.hyp import examples

import msgspec

from anklume.errors import InvalidInfra
from anklume.lock.codec import infra_hash
from anklume.model.load import load_infra
from anklume.model.schema import Infra
from anklume.render.managed import extract_managed, managed_block, merge_managed
from anklume.render.tree import render_tree

from .conftest import EXAMPLES

SOURCES = {name: path.read_bytes() for name, path in EXAMPLES.items()}
FUZZ = settings(max_examples=examples(20), derandomize=True, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

#: What PyYAML counts as a line break (so what its line numbers count).
_BREAK = re.compile(r"\r\n|[\r\n\x85\u2028\u2029]")
_KEY_LINE = re.compile(r"^(?P<indent> *)(?P<dash>- +)?(?P<key>[^\s#:'\"][^:#]*?):(?P<rest>( .*)?)$")
#: Field names of the schema, so inserted keys sometimes are known ones in the wrong place.
_KNOWN_KEYS = ["project_name", "global", "domains", "subnet_id", "machines", "profiles", "ip", "type",
               "ephemeral", "gpu", "config", "devices", "storage_volumes", "roles", "os_image", "models",
               "vars", "description", "base_subnet", "gpu_policy", "firewall_mode", "ollama", "sources",
               "path", "<<", "instance_ip", "?", "-", "x"]
_VALUES = ["123", "-1", "1.5", "1e999", "true", "yes", "no", "null", "~", "", "[]", "{}", "[a, 1]", "{x: 1}",
           '"text"', "''", "2024-01-01", "2024-13-45", "!!binary AAAA", "!!binary x", "!foo x", "!!int x",
           "*nope", "&a x", ".inf", ".nan", "0x1F", "0o17", '"10.100.0.254"', '"../x"', "a/b", "|\n  text",
           ">-", "'unterminated", '"unterminated', "[unclosed", "{unclosed", "- item", ": x", "&a [*a]"]


def check(data: bytes) -> Infra | None:
    """The property every mutated file must have."""
    try:
        infra = load_infra(data, "infra.yml")
    except InvalidInfra as exc:
        assert exc.problems, "InvalidInfra without a problem"
        try:
            nlines = len(_BREAK.findall(data.decode("utf-8"))) + 1
        except UnicodeDecodeError:
            nlines = data.count(b"\n") + 1
        for problem in exc.problems:
            assert problem.file == "infra.yml"
            assert problem.message.strip(), problem
            assert problem.path or problem.message
            assert problem.line is None or 1 <= problem.line <= nlines, (problem, nlines)
            assert problem.render()
        assert exc.render().endswith("nothing was written")
        return None
    assert isinstance(infra, Infra)
    assert infra_hash(infra).startswith("blake3:")  # whatever loads can be locked
    msgspec.msgpack.encode(infra)  # ... and memoised (no integer beyond 64 bits, no lone surrogate)
    for rel, body in render_tree(infra, None).items():
        assert re.fullmatch(r"(inventory|group_vars|host_vars)/[a-z0-9][a-z0-9-]*\.yml", rel), rel
        block = managed_block(body)
        once = merge_managed(None, block)  # a value holding marker text never ends the section
        assert extract_managed(once) == block and merge_managed(once, block) == once, rel
        body.encode("utf-8")
    return infra


# -- mutations: (draw, text) -> bytes -------------------------------------------------------

def _lines(data: bytes) -> list[str]:
    """Lines of any bytes; ``_join`` gives the same bytes back (invalid UTF-8 included)."""
    return data.decode("utf-8", "surrogateescape").splitlines(keepends=True)


def _join(lines: list[str]) -> bytes:
    return "".join(lines).encode("utf-8", "surrogateescape")


def _key_lines(lines: list[str]) -> list[int]:
    return [i for i, line in enumerate(lines) if _KEY_LINE.match(line.rstrip("\n"))]


def _pick_key_line(draw, lines: list[str], with_value: bool = False) -> tuple[int, re.Match[str]] | None:
    """A line ``key: ...`` (with something after the colon if asked), or None if there is none."""
    candidates = [i for i in _key_lines(lines)
                  if not with_value or _KEY_LINE.match(lines[i].rstrip("\n"))["rest"].strip()]
    if not candidates:
        return None
    i = draw(st.sampled_from(candidates))
    return i, _KEY_LINE.match(lines[i].rstrip("\n"))


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def delete_key(draw, data: bytes) -> bytes:
    """Remove a key and the block under it."""
    lines = _lines(data)
    if (picked := _pick_key_line(draw, lines)) is None:
        return data
    i, _ = picked
    end = i + 1
    while end < len(lines) and (not lines[end].strip() or _indent(lines[end]) > _indent(lines[i])):
        end += 1
    return _join(lines[:i] + lines[end:])


def retype_value(draw, data: bytes) -> bytes:
    """Replace the value after a key with one of another type (or with junk)."""
    lines = _lines(data)
    if (picked := _pick_key_line(draw, lines)) is None:
        return data
    i, m = picked
    value = draw(st.one_of(st.sampled_from(_VALUES), st.text(max_size=12)))
    lines[i] = f"{m['indent']}{m['dash'] or ''}{m['key']}: {value}\n"
    return _join(lines)


def insert_key(draw, data: bytes) -> bytes:
    """Add a key, known or not, at the indentation of some existing line."""
    lines = _lines(data)
    i = draw(st.integers(0, len(lines)))
    indent = _indent(lines[min(i, len(lines) - 1)]) if lines else 0
    key = draw(st.one_of(st.sampled_from(_KNOWN_KEYS), st.text(st.characters(codec="utf-8"), min_size=1,
                                                                 max_size=10)))
    value = draw(st.sampled_from(_VALUES))
    lines.insert(i, " " * indent + f"{key}: {value}\n")
    return _join(lines)


def duplicate_line(draw, data: bytes) -> bytes:
    """Copy a key line (with or without its block) right after itself or further down."""
    lines = _lines(data)
    if (picked := _pick_key_line(draw, lines)) is None:
        return data
    i, _ = picked
    j = draw(st.integers(i + 1, len(lines)))
    return _join(lines[:j] + [lines[i]] + lines[j:])


def truncate(draw, data: bytes) -> bytes:
    """The file cut short at any byte."""
    return data[: draw(st.integers(0, len(data)))]


def insert_bytes(draw, data: bytes) -> bytes:
    """Stray bytes anywhere: control characters, invalid UTF-8, YAML indicators."""
    at = draw(st.integers(0, len(data)))
    junk = draw(st.one_of(st.binary(min_size=1, max_size=6),
                          st.sampled_from([b"\xff", b"\xc3", b"\x00", b"\t", b"\r", b"\xc2\x85", b"\xef\xbb\xbf",
                                           b"\xe2\x80\xa8", b"%YAML 1.1\n", b"---\n", b"...\n", b"&", b"*", b"!",
                                           b"|", b"{", b"[", b"\"", b"'", b"? ", b": ", b"- ", b"#"])))
    return data[:at] + junk + data[at:]


def deep_nest(draw, data: bytes) -> bytes:
    """Replace a value with lists or mappings nested up to past the depth limit."""
    lines = _lines(data)
    if (picked := _pick_key_line(draw, lines)) is None:
        return data
    i, m = picked
    depth = draw(st.integers(1, 140))
    style = draw(st.sampled_from(["flow-list", "flow-map", "block-map"]))
    head = f"{m['indent']}{m['dash'] or ''}{m['key']}:"
    if style == "flow-list":
        lines[i] = f"{head} {'[' * depth}1{']' * depth}\n"
    elif style == "flow-map":
        lines[i] = f"{head} {'{a: ' * depth}1{'}' * depth}\n"
    else:
        base = len(m["indent"]) + len(m["dash"] or "")
        lines[i] = head + "\n" + "".join(" " * (base + 2 * (k + 1)) + "a:\n" for k in range(depth))
    return _join(lines)


def scalar_to_list(draw, data: bytes) -> bytes:
    """``key: value`` -> ``key: [value]`` or a block list."""
    lines = _lines(data)
    if (picked := _pick_key_line(draw, lines, with_value=True)) is None:
        return data
    i, m = picked
    value = m["rest"].strip()
    head = f"{m['indent']}{m['dash'] or ''}{m['key']}:"
    if draw(st.booleans()):
        lines[i] = f"{head} [{value}]\n"
    else:
        lines[i] = f"{head}\n{m['indent']}  - {value}\n"
    return _join(lines)


_leaf = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(), st.text(max_size=20),
                  st.sampled_from(["10.100.0.254", "../x", "images:debian/13", "llama3.2:3b", "lxc", "vm"]))
_value = st.recursive(_leaf, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                     st.dictionaries(st.text(max_size=8), inner, max_size=3)),
                      max_leaves=8)


def replace_node(draw, data: bytes) -> bytes:
    """Parse, replace one node anywhere in the tree with a value of any type, dump again."""
    try:
        tree = yaml.safe_load(data)
    except Exception:  # an earlier mutation broke the file: nothing to replace
        return data
    paths: list[tuple] = []

    def walk(node, path):
        paths.append(path)
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, path + (k,))
        elif isinstance(node, list):
            for k, v in enumerate(node):
                walk(v, path + (k,))

    walk(tree, ())
    if len(paths) < 2:
        return data
    path = draw(st.sampled_from(paths[1:]))
    parent = tree
    for part in path[:-1]:
        parent = parent[part]
    parent[path[-1]] = draw(_value)
    return yaml.safe_dump(tree, sort_keys=False, allow_unicode=draw(st.booleans())).encode()


#: Values a hostile author writes: marker text, escapes that make lone surrogates or line
#: breaks, integers at and beyond the 64-bit bounds.
_HOSTILE_VALUES = [
    '"# === END MANAGED ==="', '"before # === END MANAGED === after"', '"x\\n# === END MANAGED ===\\ny"',
    '"\\n# === MANAGED BY infra.yml ===\\n"', "'# === MANAGED BY infra.yml ==='", "|\n  # === END MANAGED ===",
    '"\\ud800"', '"a\\udfffb"', '"\\ud83d\\ude00"', '"\\x85\\u2028\\u2029"', '"\\r# === END MANAGED ==="',
    "9223372036854775807", "9223372036854775808", "-9223372036854775809", "18446744073709551616",
    "99999999999999999999999999", "0x" + "f" * 40, "1" + "0" * 5000, "-0", '"lab\\n"', '"10.\u00b2"',
    '"\u00b2"', '"1\u0663"',
]
#: Keys a hostile author writes: a name and a newline, escapes, marker text.
_HOSTILE_KEYS = ['"lab\\n"', '"m1\\n"', '"x\\n"', '"\\ud800"', '"a\\u2028b"', '"# === END MANAGED ==="',
                 '"base_system\\n"', '"nesting\\n"', "\"\\t\"", '"v\\r"']


def hostile_value(draw, data: bytes) -> bytes:
    """A value replaced by hostile text or a number at or beyond 64 bits."""
    lines = _lines(data)
    if (picked := _pick_key_line(draw, lines)) is None:
        return data
    i, m = picked
    value = draw(st.sampled_from(_HOSTILE_VALUES))
    if value.startswith("|"):  # a block scalar: its lines go below the key
        value = value.replace("\n  ", "\n" + m["indent"] + "  ")
    lines[i] = f"{m['indent']}{m['dash'] or ''}{m['key']}: {value}\n"
    return _join(lines)


def hostile_key(draw, data: bytes) -> bytes:
    """A key renamed to a hostile one (a name with a trailing newline, escapes, marker text):
    domains, machines, profiles, devices, volumes and vars are all mapping keys."""
    lines = _lines(data)
    if (picked := _pick_key_line(draw, lines)) is None:
        return data
    i, m = picked
    key = draw(st.sampled_from(_HOSTILE_KEYS + [f'"{m["key"]}\\n"']))
    lines[i] = f"{m['indent']}{m['dash'] or ''}{key}:{m['rest']}\n"
    return _join(lines)


def hostile_list_item(draw, data: bytes) -> bytes:
    """A list item (a role, a profile, a model) replaced by hostile text."""
    lines = _lines(data)
    items = [i for i, line in enumerate(lines) if re.match(r" *- ", line) or re.search(r": \[[^\]]*\]$", line.rstrip())]
    if not items:
        return data
    i = draw(st.sampled_from(items))
    value = draw(st.sampled_from(_HOSTILE_VALUES[:11] + ['"base_system\\n"', '"default\\n"', '"llama3.2:3b\\n"']))
    line = lines[i].rstrip("\n")
    if line.lstrip().startswith("- "):
        lines[i] = line[: len(line) - len(line.lstrip())] + f"- {value}\n"
    else:
        lines[i] = re.sub(r"\[[^\]]*\]$", lambda _m: f"[{value}]", line) + "\n"
    return _join(lines)


MUTATIONS: dict[str, Callable] = {f.__name__: f for f in (
    delete_key, retype_value, insert_key, duplicate_line, truncate, insert_bytes, deep_nest, scalar_to_list,
    replace_node, hostile_value, hostile_key, hostile_list_item)}


# -- the tests -----------------------------------------------------------------------------

@pytest.mark.parametrize("name", list(SOURCES))
def test_examples_load_unmutated(name: str):
    assert check(SOURCES[name]) is not None


@pytest.mark.parametrize("mutation", list(MUTATIONS))
@FUZZ
@given(data=st.data())
def test_mutation(mutation: str, data: st.DataObject):
    source = SOURCES[data.draw(st.sampled_from(sorted(SOURCES)), label="example")]
    check(MUTATIONS[mutation](data.draw, source))


@settings(FUZZ, max_examples=examples(30))
@given(data=st.data())
def test_stacked_mutations(data: st.DataObject):
    """Two or three mutations in a row, each on what the previous one left."""
    text = SOURCES[data.draw(st.sampled_from(sorted(SOURCES)), label="example")]
    for name in data.draw(st.lists(st.sampled_from(sorted(MUTATIONS)), min_size=2, max_size=3), label="mutations"):
        text = MUTATIONS[name](data.draw, text)
    check(text)


def test_depth_limit_is_a_problem_not_a_crash():
    source = SOURCES["v1/pro-workstation"]
    deep = source + b"x: " + b"[" * 5000 + b"]" * 5000 + b"\n"
    with pytest.raises(InvalidInfra) as err:
        load_infra(deep, "infra.yml")
    assert "nested more than" in err.value.problems[0].message

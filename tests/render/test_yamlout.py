"""``dump`` (fast path) writes exactly what ``dump_reference`` (the original's dumper) writes."""

from __future__ import annotations

import datetime

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.hyp import examples

from anklume.render import yamlout
from anklume.render.tree import render_tree
from anklume.render.yamlout import dump, dump_reference

from .conftest import V1_EXAMPLES, load_example

TRICKY = [
    "", " ", "10.100", "10.100.3.10", "10.100.3.0/24", "true", "True", "TRUE", "yes", "Yes", "no", "on",
    "off", "y", "n", "null", "Null", "~", "0755", "0o755", "0x1F", "1e3", "1.5e3", "1.0e+3", "1_000",
    "1:30", "190:20:30", ".5", ".inf", "-.inf", ".nan", "+1", "-1", "=", "<<", "2026-02-13",
    "2026-02-13 08:47:00", "a: b", "a:b", "a:", ":a", "a #b", "a#b", "#a", "-", "- a", "-a", "--", "---",
    "---a", "...", "...a", "a...", "*a", "&a", "!a", "%a", "@a", "`a", "|", ">", "'a'", '"a"', "?", "? a",
    "a?", "[a]", "{a}", "a,b", ",a", "a, b", "a  b", " a", "a ", "a\nb", "a\tb", "é", "naïve café",
    "Do not edit — it will", "\u2028", "\x85", "\x00", "\ufeff", "images:debian/13", "net-homelab",
    "security.nesting", "limits.memory", "8GiB", "sha256:" + "ab" * 32, "http://10.100.3.10:11434",
    "x" * 200, "word " * 30, ("Open WebUI frontend with a rather long description that goes past "
                              "the eighty column limit of the emitter"),
]


@pytest.mark.parametrize("s", TRICKY, ids=repr)
def test_tricky_strings_as_values_keys_and_items(s):
    for data in ({"k": s}, {s: 1} if s else {"k": 1}, {"list": [s, {"k": s}]}, {"a": {"bb": {"ccc": s}}},
                 {"x" * 60: s}, {"k": [[s]]}):
        assert dump(data) == dump_reference(data)


def test_hand_shapes():
    cases = [
        {}, {"a": None}, {"a": {}}, {"a": []}, {"a": [None, "", [], {}, [1, [2, 3]], {"x": 1}]},
        {"a": [{"b": 1, "c": [1, 2], "d": {"e": None}}, [[[]]], [{"q": [{}]}]]},
        {"t": True, "f": False, "i": 0, "n": -12, "big": 10**30},
        {"all": {"children": {"d": {"hosts": {"m1": {"ansible_host": "10.100.1.10"}, "m2": None}}}}},
        {"all": {"children": {"d": {"hosts": None}}}},
        {"float": 1.5}, {"date": datetime.date(2026, 2, 13)}, {"tuple": (1, 2)}, {1: "int key"},
        {True: "bool key"}, {None: "null key"}, {"k" * 200: 1}, [1, 2], "scalar", None, 3,
    ]
    for data in cases:
        assert dump(data) == dump_reference(data), data


def test_folding_boundary():
    """PyYAML folds at a space once past column 80: every line length around it, at every depth."""
    for depth in range(4):
        for keylen in (1, 7, 30):
            for textlen in range(60, 90):
                text = ("ab " * 40)[:textlen].strip()
                data: object = {"k" * keylen: text, "l": [text]}
                for _ in range(depth):
                    data = {"n": data}
                assert dump(data) == dump_reference(data), (depth, keylen, textlen)


def test_shared_objects_get_the_same_anchors():
    shared = {"type": "gpu"}
    data = {"a": shared, "b": shared, "c": [], "d": {}}
    data["e"] = data["c"]
    assert "&id001" in dump_reference(data)
    assert dump(data) == dump_reference(data)


def test_the_fast_path_is_taken_for_the_v1_examples(monkeypatch):
    """The examples' descriptions are ASCII: no file may need the slow dumper."""
    def refuse(data):
        raise AssertionError(f"fell back for {data!r}")
    monkeypatch.setattr(yamlout, "dump_reference", refuse)
    for name in V1_EXAMPLES:
        render_tree(load_example(name), None)


# -- generated data of the shapes the tree uses ------------------------------------

_names = st.from_regex(r"[a-z][a-z0-9_.-]{0,20}", fullmatch=True)
_texts = st.one_of(
    st.sampled_from(TRICKY),
    _names,
    st.text(st.characters(codec="ascii"), max_size=40),
    st.text(max_size=20),
    st.lists(st.sampled_from(["LLM", "server", "with", "GPU", "a:b", "#1", "10.100", "—", "x" * 12]),
             max_size=20).map(" ".join),
    st.from_regex(r"10\.1[0-9]{2}\.[0-9]{1,3}\.[0-9]{1,3}", fullmatch=True),
    st.from_regex(yamlout._SAFE_RE, fullmatch=True),  # exactly what the fast path accepts
)
_scalars = st.one_of(_texts, st.integers(), st.booleans(), st.none(), st.floats(allow_nan=False))
_keys = st.one_of(_names, _texts)
_values = st.recursive(
    _scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(_keys, inner, max_size=4)),
    max_leaves=25,
)


@settings(max_examples=examples(600), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(_keys, _values, max_size=8))
def test_dump_equals_reference(data):
    assert dump(data) == dump_reference(data)


@settings(max_examples=examples(300), deadline=None)
@given(st.dictionaries(_names, st.recursive(
    st.one_of(_names, st.integers(), st.booleans(), st.none()),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(_names, inner, max_size=4)),
    max_leaves=30), max_size=12))
def test_dump_equals_reference_plain_shapes(data):
    """Mostly-plain data: exercises the fast path itself rather than the fallback."""
    text = dump(data)
    assert text == dump_reference(data)
    assert yaml.safe_load(text) == (data or {})


@pytest.mark.parametrize("n", range(118, 130))
@pytest.mark.parametrize("char", ["a", "0", "a b"])
def test_long_keys_switch_to_complex_keys_exactly_where_pyyaml_does(n, char):
    """Found by hypothesis: PyYAML counts the key's '!!str' tag towards its 128-character limit."""
    key = (char * n)[:n]
    data = {key: None, "x": {key: [key]}}
    assert dump(data) == dump_reference(data)

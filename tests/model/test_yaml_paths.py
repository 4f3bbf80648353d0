"""The two YAML paths of ``anklume.model.yamlsafe`` give one answer.

``load_yaml`` reads most files from libyaml's events (the fast path) and hands anything
unusual or wrong to the exact parser (PyYAML's own, node by node), which reports problems.
Here, on the example files and on every mutation of ``test_fuzz.py`` (a key deleted or
retyped, lines duplicated, the file cut short, stray bytes, deep nesting, hostile keys and
values...): whenever the fast path answers, its values and its key lines are exactly the exact
parser's, and the exact parser does not refuse that file.  And the fast path does answer the
plain files it is for (the examples, the 10,000-machine bench file), so the speed is real.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from anklume.errors import InvalidInfra
from anklume.model import yamlsafe
from anklume.model.load import load_infra
from bench.synthetic import synthetic_infra
from tests.support.hyp import examples

from .test_fuzz import FUZZ, MUTATIONS, SOURCES


def agree(data: bytes) -> bool:
    """Whether the fast path answered; asserts that it answered what the exact parser does."""
    fast = yamlsafe._load_fast(data)
    if fast is None:
        return False
    try:
        exact = yamlsafe.load_yaml_exact(data, "infra.yml")
    except InvalidInfra as exc:  # pragma: no cover - the failure this test exists to show
        pytest.fail(f"the fast path accepted what the exact parser refuses: {exc.render()}")
    assert fast[0] == exact[0]
    assert _typed(fast[0]) == _typed(exact[0])  # 1 and True and 1.0 are equal in Python: compare types too
    assert fast[1] == exact[1]
    return True


def _typed(value):
    if isinstance(value, dict):
        return {k: _typed(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_typed(v) for v in value]
    return (type(value).__name__, repr(value))


@pytest.mark.parametrize("name", list(SOURCES))
def test_the_examples_take_the_fast_path(name):
    assert agree(SOURCES[name])


def test_the_bench_file_takes_the_fast_path():
    assert agree(synthetic_infra(5, 4).encode())


@pytest.mark.parametrize("text", [
    "a: &x 1\nb: *x\n",  # anchors and aliases: the exact parser counts their expansion
    "base: &b {x: 1}\nm:\n  <<: *b\n",  # merge keys
    "a: !!str 1\n",  # explicit tags
    "a: 1\na: 2\n",  # a duplicate key
    "~: 1\n",  # a null key
    "? [a, b]\n: 1\n",  # a list as a key
    "a: 99999999999999999999\n",  # beyond 64 bits
    'a: "\\ud800"\n',  # a lone surrogate (libyaml refuses the escape)
    "- a\n- b\n",  # not a mapping
    "",  # empty
    "a: 1\n---\nb: 2\n",  # two documents
    "a: [" + "[" * 120 + "]" * 121 + "\n",  # nesting past the bound
    "a: b: c\n",  # a syntax error
    "a: 2001-02-30\n",  # a value its constructor refuses
    "a: \x01\n",  # a control character
    # where libyaml is more lenient than PyYAML's scanner
    "a: 1\t\n",  # a tab
    "a: 1\n\ufeffb: 2\n",  # a byte order mark past the start
    "a: |#\n  x\n",  # a comment right after a block scalar's indicator
    "a: {b?: 1}\n",  # '?' in a plain scalar of a flow collection
])
def test_unusual_or_wrong_files_go_to_the_exact_parser(text):
    assert yamlsafe._load_fast(text.encode()) is None


def test_problems_still_name_their_line():
    data = b"project_name: x\nglobal: {}\ndomains:\n  a:\n    subnet_id: 1\n    subnet_id: 2\n"
    with pytest.raises(InvalidInfra) as err:
        load_infra(data, "infra.yml")
    problem = err.value.problems[0]
    assert (problem.path, problem.message, problem.line) == ("domains.a.subnet_id", "duplicate key", 6)


@pytest.mark.parametrize("text", [
    "a: yes\nb: No\nc: ~\nd: null\ne: 0x1F\nf: 0o17\ng: 1_000\nh: 1:30\ni: .inf\nj: -.NaN\nk: 2024-01-01\n"
    "l: 2024-01-01 10:00:00\nm: 1e3\nn: '1'\no: \"true\"\np:\nq: []\nr: {}\ns: -0\nt: +1\n",
    "yes: 1\nno: 2\n1: a\n1.5: b\n\"null\": c\n'<<': d\ntrue: e\n",  # keys are their text
    "a: |\n  x\n  y\nb: >-\n  folded\n  text\nc: \"esc\\t\\u00e9\\x41\\N\"\nd: 'it''s'\n",
    "a:\n- 1\n- - 2\n  - 3\n- {x: [4, {y: 5}]}\n",
    "\ufeffa: 1\r\nb: 2\r\n",
])
def test_scalars_keys_and_layouts_agree(text):
    assert agree(text.encode())


@pytest.mark.parametrize("mutation", list(MUTATIONS))
@FUZZ
@given(data=st.data())
def test_mutated_files_agree(mutation, data):
    source = SOURCES[data.draw(st.sampled_from(sorted(SOURCES)), label="example")]
    agree(MUTATIONS[mutation](data.draw, source))


@settings(FUZZ, max_examples=examples(60))
@given(data=st.data())
def test_stacked_mutations_agree(data):
    text = SOURCES[data.draw(st.sampled_from(sorted(SOURCES)), label="example")]
    for name in data.draw(st.lists(st.sampled_from(sorted(MUTATIONS)), min_size=2, max_size=3), label="mutations"):
        text = MUTATIONS[name](data.draw, text)
    agree(text)


_TEXT = st.text(st.sampled_from(list("ab:- \n\t#'\"[]{},?&*!|>%@`~.0123456789yYnN\\\r") + ["\x85", "é", "\u2028"]),
                max_size=40)


@settings(FUZZ, max_examples=examples(2000))
@given(text=_TEXT)
def test_random_text_agrees(text):
    agree(("a: 1\n" + text).encode())

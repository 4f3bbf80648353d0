"""``merge_managed``: only the first managed section is anklume's; every other byte is the user's."""

from __future__ import annotations

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.support.hyp import examples

from anklume.render.managed import (MANAGED_BEGIN, MANAGED_END, MANAGED_NOTICE, NEW_FILE_TAIL, V1_NOTICE,
                                    UnmergeableFile, extract_managed, managed_block, managed_keys_outside,
                                    merge_managed)
from anklume.render.yamlout import dump

BLOCK = managed_block("instance_name: m1\ninstance_ephemeral: false\n")
BLOCK2 = managed_block("instance_name: m1\ninstance_ephemeral: true\ninstance_ip: 10.100.1.3\n")


def test_block_layout():
    assert BLOCK == (f"{MANAGED_BEGIN}\n{MANAGED_NOTICE}\ninstance_name: m1\ninstance_ephemeral: false\n"
                     f"{MANAGED_END}")


def test_new_file():
    assert merge_managed(None, BLOCK) == f"---\n{BLOCK}\n\n# Your custom variables below:\n"
    assert NEW_FILE_TAIL == "\n\n# Your custom variables below:\n"


def test_existing_section_replaced_rest_kept():
    before = f"# top comment\n---\n{BLOCK}\n\n# Your custom variables below:\nfoo: 1\nbar: [1, 2]\n"
    after = merge_managed(before, BLOCK2)
    assert after == before.replace(BLOCK, BLOCK2)
    assert yaml.safe_load(after)["foo"] == 1


def test_the_originals_notice_is_recognised():
    v1 = f"---\n{BLOCK.replace(MANAGED_NOTICE, V1_NOTICE)}\n\n# Your custom variables below:\nx: 1\n"
    assert merge_managed(v1, BLOCK) == f"---\n{BLOCK}\n\n# Your custom variables below:\nx: 1\n"


# -- markers are whole lines; a section is one BEGIN .. END pair ---------------------------------


@pytest.mark.parametrize("text", [
    "before # === END MANAGED === after", "# === END MANAGED ===", "# === MANAGED BY infra.yml ===",
    "x\n# === END MANAGED ===\ny", "\n# === MANAGED BY infra.yml ===\n", "a\r# === END MANAGED ===",
    "a\u2028# === END MANAGED ===\u2028b", "# === END MANAGED === # === MANAGED BY infra.yml ===",
])
def test_marker_text_inside_a_value_is_not_a_marker(text):
    """A description holding the end marker used to end the section early: every build appended
    another stale copy of the rest, and never converged."""
    block = managed_block(dump({"instance_name": "m1", "instance_description": text, "x": [text]}))
    once = merge_managed(None, block)
    assert merge_managed(once, block) == once
    assert extract_managed(once) == block
    assert merge_managed(merge_managed(once, BLOCK), block) == once


def test_marker_text_inside_a_user_comment_is_not_a_marker():
    before = (f"---\n# the managed part starts at '{MANAGED_BEGIN}' below\nmine: 1\n"
              f"# and ends with {MANAGED_END}\n{BLOCK}\n# after {MANAGED_END}: mine\nother: 2\n")
    after = merge_managed(before, BLOCK2)
    assert after == before.replace(BLOCK, BLOCK2)
    assert extract_managed(after) == BLOCK2
    # a file whose only "marker" is inside a comment has no section: it gets one
    merged = merge_managed(f"# {MANAGED_BEGIN}\nfoo: 1\n", BLOCK)
    assert merged == f"---\n{BLOCK}\n\n# {MANAGED_BEGIN}\nfoo: 1\n"
    assert merge_managed(merged, BLOCK) == merged


def test_a_marker_line_may_end_in_a_carriage_return_or_blanks():
    before = f"---\r\n{MANAGED_BEGIN}\r\n{MANAGED_NOTICE}\r\nold: 1\r\n{MANAGED_END} \t\r\nmine: 1\r\n"
    assert merge_managed(before, BLOCK) == f"---\r\n{BLOCK}\r\nmine: 1\r\n"


@pytest.mark.parametrize("text, line, words", [
    (f"---\n{MANAGED_NOTICE}\nx: 1\n{MANAGED_END}\nmine: 1\n", 4, "no '# === MANAGED BY infra.yml ===' line"),
    (f"---\n{MANAGED_END}\n{BLOCK}\n", 2, "no '# === MANAGED BY infra.yml ===' line"),
    (f"---\n{BLOCK}\nx: 1\n{BLOCK}\n", 8, "appears twice (lines 2 and 8)"),
    (f"---\n{MANAGED_BEGIN}\n{BLOCK}\n", 3, "appears twice (lines 2 and 3)"),
    (f"---\n{BLOCK}\nx: 1\n{MANAGED_END}\n", 8, "a second '# === END MANAGED ===' line (the first is line 6)"),
    (f"---\n{MANAGED_BEGIN}\nx: 1\n", 2, "no '# === END MANAGED ===' line"),
])
def test_a_lone_or_repeated_marker_is_refused_with_its_line(text, line, words):
    """Deleting the BEGIN line, or a section pasted twice, left stale managed keys after END
    that override the new ones; now the file is refused, with the line to fix."""
    with pytest.raises(UnmergeableFile) as err:
        merge_managed(text, BLOCK)
    assert f"line {line}:" in err.value.message and words in err.value.message, err.value.message
    assert err.value.hint
    with pytest.raises(UnmergeableFile):
        extract_managed(text)


def test_managed_keys_outside_the_section():
    body = "instance_name: m1\ninstance_ip: 10.100.1.3\n"
    text = (f"---\ninstance_ip: 10.0.0.1\n{managed_block(body)}\n# instance_name: no\nmine: 1\n"
            f"'instance_name': m2\nnested:\n  instance_ip: ok\n")
    assert managed_keys_outside(text, body) == [("instance_ip", 2), ("instance_name", 10)]
    assert managed_keys_outside(merge_managed(None, managed_block(body)), body) == []
    # a key continuing a quoted scalar is not a key
    assert managed_keys_outside(f'---\n{managed_block(body)}\nmine: "a\ninstance_ip: b"\n', body) == []


def test_backslashes_in_the_block_are_not_regex_escapes():
    block = managed_block("instance_description: C:\\new\\1 \\g<0>\n")
    assert block in merge_managed(merge_managed(None, BLOCK), block)


@pytest.mark.parametrize("existing", [
    "---\nfoo: 1\n", "---\n", "---", "--- # a comment\nfoo: 1\n", "# header\n\n---\nfoo: 1\n",
    "%YAML 1.1\n---\nfoo: 1\n", "---\r\nfoo: 1\r\n",
])
def test_no_section_with_a_document_start_gives_one_document(existing):
    """The original prepended the block *before* the ``---`` (two YAML documents); not here."""
    merged = merge_managed(existing, BLOCK)
    docs = list(yaml.safe_load_all(merged))
    assert len(docs) == 1
    assert docs[0]["instance_name"] == "m1"
    if "foo" in existing:
        assert docs[0]["foo"] == 1
    head = existing[:existing.index("---") + 3]
    assert merged.startswith(head)


@pytest.mark.parametrize("existing", ["foo: 1\n", "", "# only a comment\n", "foo: 1"])
def test_no_section_without_a_document_start(existing):
    merged = merge_managed(existing, BLOCK)
    assert merged == f"---\n{BLOCK}\n\n{existing}"
    assert len(list(yaml.safe_load_all(merged))) == 1


@pytest.mark.parametrize("existing", [
    "foo: [\n", "a: \x1f\n", "- a\n- b\n", "{a: 1}\n", "foo: 1\n---\nbar: 2\n", "just a scalar\n", "---\n- a\n", "--- {a: 1}\n",
])
def test_files_that_cannot_take_a_section_are_refused(existing):
    with pytest.raises(UnmergeableFile):
        merge_managed(existing, BLOCK)


def test_extract_managed():
    text = merge_managed("foo: 1\n", BLOCK)
    assert extract_managed(text) == BLOCK
    assert yaml.safe_load(extract_managed(text)) == {"instance_name": "m1", "instance_ephemeral": False}
    assert extract_managed("foo: 1\n") is None


# -- properties ---------------------------------------------------------------------

#: Marker text that is not a marker line: inside a comment, a value, or with more on its line.
_marker_text = st.sampled_from([MANAGED_BEGIN, MANAGED_END]).flatmap(lambda m: st.sampled_from([
    f"# see {m}", f"{m} and more", f"#{m}", f" {m}", f"note: '{m}'", f"# {m} {m}"]))
_user_line = st.one_of(
    st.from_regex(r"[a-z_]{1,10}: [A-Za-z0-9]{0,20}", fullmatch=True),
    st.text("abc XYZ019:#-_'\"é—{}[]*&!%@`|>=", max_size=30).map(lambda s: "# " + s),
    _marker_text,
    st.just(""),
).filter(lambda s: s.rstrip(" \t") not in (MANAGED_BEGIN, MANAGED_END))  # a whole marker line is a marker
_user_text = st.lists(_user_line, max_size=8).map(lambda lines: "".join(line + "\n" for line in lines))
_values = st.one_of(st.from_regex(r"[a-z0-9.]{1,12}", fullmatch=True), st.text(max_size=40),
                    _marker_text, st.sampled_from([MANAGED_BEGIN, MANAGED_END]).map(lambda m: f"x\n{m}\ny"))
_bodies = st.dictionaries(st.from_regex(r"[a-z_]{1,12}", fullmatch=True), st.one_of(_values, st.lists(_values, max_size=2)),
                          min_size=1, max_size=6).map(dump)


@settings(max_examples=examples(200), deadline=None)
@given(before=_user_text, after=_user_text, bodies=st.lists(_bodies, min_size=1, max_size=5))
def test_user_content_survives_any_number_of_merges(before, after, bodies):
    text = f"{before}---\n{managed_block(bodies[0])}\n{after}"
    for body in bodies:
        text = merge_managed(text, managed_block(body))
        assert text == f"{before}---\n{managed_block(body)}\n{after}"


@settings(max_examples=examples(200), deadline=None)
@given(existing=st.one_of(st.none(), _user_text, _user_text.map(lambda t: "---\n" + t)), body=_bodies,
       other=_bodies)
def test_merge_is_idempotent_and_keeps_user_keys(existing, body, other):
    once = merge_managed(existing, managed_block(body))
    assert merge_managed(once, managed_block(body)) == once
    assert extract_managed(once) == managed_block(body)
    docs = list(yaml.safe_load_all(once))
    assert len(docs) == 1
    if existing:
        # everything the user wrote is still there, in order, after the section
        assert once.endswith(existing.removeprefix("---\n"))
    again = merge_managed(merge_managed(once, managed_block(other)), managed_block(body))
    assert again == once


@pytest.mark.parametrize("depth", [200, 3000])
def test_a_file_nested_too_deep_is_refused_not_a_crash(depth):
    """PyYAML recurses once per level: a user file nested 3,000 deep raised RecursionError."""
    deep = "x: " + "[" * depth + "]" * depth + "\n"
    with pytest.raises(UnmergeableFile, match="nested"):
        merge_managed(deep, BLOCK)
    text = merge_managed(None, BLOCK) + "instance_name: 2\n" + deep
    assert managed_keys_outside(text, "instance_name: m1\n") == [("instance_name", 9)]

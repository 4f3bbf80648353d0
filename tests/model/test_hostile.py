"""Hostile values in infra.yml: each is a problem with its key path and line, never a crash,
never a name that reaches a file name or an Incus object."""

from __future__ import annotations

import re

import pytest

from anklume.model import names

from .conftest import edit, problems

M1 = "domains.admin.machines.adm-ctrl"


# -- names ending in a newline ('$' matches before a final newline) -----------------------------

@pytest.mark.parametrize("data, path", [
    (edit("  admin:\n", '  "admin\\n":\n'), "domains.admin\n"),
    (edit("      adm-ctrl:\n", '      "adm-ctrl\\n":\n'), "domains.admin.machines.adm-ctrl\n"),
    (edit("      nesting:\n", '      "nesting\\n":\n').replace("[default, nesting]", '[default, "nesting\\n"]'),
     "domains.admin.profiles.nesting\n"),
    (edit("roles: [base_system]", 'roles: ["base_system\\n"]'), f"{M1}.roles[0]"),
    (edit("        roles: [base_system]\n", "        roles: [base_system]\n        devices:\n"
                                             '          "eth1\\n": {type: nic}\n'), f"{M1}.devices.eth1\n"),
    (edit("        roles: [base_system]\n", "        roles: [base_system]\n        vars:\n"
                                             '          "x\\n": 1\n'), f"{M1}.vars.x\n"),
    (edit("        roles: [base_system]\n", "        roles: [base_system]\n        storage_volumes:\n"
                                             '          "v\\n": {path: /x}\n'), f"{M1}.storage_volumes.v\n"),
])
def test_a_name_with_a_trailing_newline_is_refused(data, path):
    found = problems(data)
    assert [p.path for p in found] == [path], "\n".join(p.render() for p in found) or "no problem found"


@pytest.mark.parametrize("pattern", [names.DOMAIN_RE, names.MACHINE_RE, names.PROFILE_RE, names.DEVICE_RE,
                                     names.ROLE_RE, names.ANSIBLE_VAR_RE])
def test_name_patterns_refuse_a_trailing_newline_even_with_match(pattern: re.Pattern):
    """Other modules (the role runner) call ``.match``: the patterns themselves must be anchored."""
    assert pattern.match("abc") and not pattern.match("abc\n")


def test_image_alias_with_a_trailing_newline_is_refused():
    assert names.parse_image_ref("images:debian/13\n")[2] is not None


# -- text no file can hold, numbers nothing downstream can hold ---------------------------------

def _m1(text: str) -> str:
    """BASE with ``text`` (lines at the machine's indentation) added to adm-ctrl."""
    return edit("        roles: [base_system]\n", "        roles: [base_system]\n" + text)


@pytest.mark.parametrize("data, path, line", [
    (_m1('        description: "\\ud800"\n'), f"{M1}.description", 18),
    (_m1('        vars: {x: ["ok", "a\\udfffb"]}\n'), f"{M1}.vars.x[1]", 18),
    (_m1('        config:\n          "\\ud800x": "1"\n'), f"{M1}.config.\\ud800x", 19),
    (edit("project_name: demo", 'project_name: "\\udc80"'), "project_name", 1),
])
def test_a_lone_surrogate_is_a_problem_not_a_crash(data, path, line):
    """A YAML escape can make a lone surrogate, which UTF-8 cannot encode: it crashed the
    infra hash and the memo with a UnicodeEncodeError."""
    found = problems(data)
    assert [(p.path, p.line) for p in found] == [(path, line)], "\n".join(p.render() for p in found)
    assert "surrogate" in found[0].message
    found[0].render().encode("utf-8")  # the problem itself can be printed


@pytest.mark.parametrize("value, ok", [
    ("9223372036854775807", True), ("-9223372036854775808", True), ("9223372036854775808", False),
    ("-9223372036854775809", False), ("99999999999999999999999999", False), ("0x1" + "0" * 40, False),
    ("1" + "0" * 5000, False),
])
def test_integers_beyond_64_bits_are_a_problem(value, ok):
    """They crashed the memo's msgpack encoder (OverflowError) before any message."""
    for text, path in ((_m1(f"        vars: {{big: {value}}}\n"), f"{M1}.vars.big"),
                       (_m1(f"        config: {{limits.x: {value}}}\n"), f"{M1}.config.limits.x"),
                       (_m1(f"        storage_volumes: {{v: {{path: /x, size: {value}}}}}\n"),
                        f"{M1}.storage_volumes.v.size")):
        found = problems(text)
        if ok:
            assert found == [], "\n".join(p.render() for p in found)
        else:
            assert [p.path for p in found] == [path], "\n".join(p.render() for p in found)
            assert found[0].line == 18


@pytest.mark.parametrize("base", ["10.\u00b2", "\u00b9\u2070.100", "1\u0663.100", "10.1\u00b2"])
def test_a_base_subnet_of_unicode_digits_is_a_problem(base):
    """``str.isdigit`` takes '²' for a digit, then ``int('²')`` raised ValueError."""
    found = problems(edit('base_subnet: "10.100"', f'base_subnet: "{base}"'))
    assert [p.path for p in found] == ["global.base_subnet"], "\n".join(p.render() for p in found)

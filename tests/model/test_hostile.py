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

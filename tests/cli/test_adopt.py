"""`build --adopt NAME`: which units a name takes over."""

from __future__ import annotations

import pytest

from anklume.actions.build import adopted_units
from anklume.errors import AnklumeError
from anklume.units.build import build_units
from tests.units.infra import make_infra, make_lock, two_domains


def graph():
    infra = make_infra(two_domains())
    return build_units(infra, make_lock(infra))


def test_a_unit_a_machine_or_a_domain():
    g = graph()
    assert adopted_units(g, ["network:alpha", "profile:beta/default"]) == {"network:alpha", "profile:beta/default"}
    assert adopted_units(g, ["alpha-web"]) == {"instance:alpha-web"}
    assert adopted_units(g, ["beta"]) == {"project:beta", "acl:beta", "network:beta", "profile:beta/default",
                                              "instance:beta-app"}
    assert adopted_units(g, []) == frozenset()


def test_anything_else_is_an_error():
    with pytest.raises(AnklumeError, match="--adopt gamma: no such unit, machine or domain"):
        adopted_units(graph(), ["gamma"])

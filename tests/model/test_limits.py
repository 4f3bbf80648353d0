"""The declared limits placement weighs (anklume/model/needs.py), read as Incus reads them."""

from __future__ import annotations

import pytest

from anklume.model.load import load_infra
from anklume.model.needs import cpu_count, declared_limit, machine_target, memory_demand


@pytest.mark.parametrize(("value", "count"), [
    ("4", 4), (4, 4), ("0-3", 4), ("1,3", 2), ("0-3,2,8-9", 6), (" 2 ", 2), ("7", 7),
])
def test_cpu_count(value, count):
    assert cpu_count(value) == count


@pytest.mark.parametrize("value", ["0", "-1", "a", "1-", "3-1", "1.5", True, "", "0-99999", "٣"])
def test_cpu_count_refuses_what_incus_refuses(value):
    with pytest.raises(ValueError):
        cpu_count(value)


@pytest.mark.parametrize(("value", "demand"), [
    ("2GiB", ("bytes", 2 * 2**30)), ("512MB", ("bytes", 512 * 10**6)), ("1073741824", ("bytes", 2**30)),
    (1073741824, ("bytes", 2**30)), ("100B", ("bytes", 100)), ("50%", ("percent", 50)), ("1kB", ("bytes", 1000)),
])
def test_memory_demand(value, demand):
    assert memory_demand(value) == demand


@pytest.mark.parametrize("value", ["2 GiB", "2gib", "2G", "1.5GiB", "0%", "101%", "x", 1.5, True, "-1GiB"])
def test_memory_demand_refuses_what_incus_refuses(value):
    with pytest.raises(ValueError):
        memory_demand(value)


INFRA = b"""\
project_name: p
global: {}
domains:
  pro:
    subnet_id: 1
    target: m2
    profiles:
      small: {config: {limits.cpu: "1", limits.memory: 1GiB}}
      big: {config: {limits.cpu: "8"}}
    machines:
      a: {profiles: [small, big]}
      b: {profiles: [big, small], config: {limits.cpu: "0-3"}, target: m1}
"""


def test_limits_are_expanded_as_incus_does_profiles_in_order_then_the_machine():
    infra = load_infra(INFRA)
    domain = infra.domains["pro"]
    a, b = domain.machines["a"], domain.machines["b"]
    assert declared_limit(domain, a, "limits.cpu", "pro", "a") == ("8", "domains.pro.profiles.big.config.limits.cpu")
    assert declared_limit(domain, b, "limits.cpu", "pro", "b") == ("0-3", "domains.pro.machines.b.config.limits.cpu")
    assert declared_limit(domain, b, "limits.memory", "pro", "b") == (
        "1GiB", "domains.pro.profiles.small.config.limits.memory")
    assert declared_limit(domain, a, "limits.disk", "pro", "a") is None
    assert machine_target("pro", domain, "a", a) == ("m2", "domains.pro.target")
    assert machine_target("pro", domain, "b", b) == ("m1", "domains.pro.machines.b.target")

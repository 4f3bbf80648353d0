"""Every rule of infra.yml, as data: (input, key path, line, part of the message).

The original's rules (anklume v1 at b859608, reference section 1a, and its tests in 5a) come
first, then the ones anklume adds, then what the YAML reader refuses.  Each case is BASE
(tests/model/conftest.py) with one edit, or a whole file; each must give exactly one problem
unless it says otherwise.
"""

from __future__ import annotations

import time
from typing import NamedTuple

import pytest
import yaml

from anklume.errors import InvalidInfra, Problem
from anklume.model.load import load_infra
from anklume.model.schema import Infra

from .conftest import BASE, EXAMPLES, OWN_EXAMPLES, V1_EXAMPLES, edit, problems

M1 = "domains.admin.machines.adm-ctrl"
M2 = "domains.work.machines.dev-ws"
#: Lines of BASE, for the cases below.
L_GLOBAL, L_BASE_SUBNET, L_ADMIN, L_SUBNET0, L_NESTING, L_M1, L_IP1, L_PROFILES1 = 2, 3, 6, 8, 10, 14, 15, 16
L_WORK, L_SUBNET1, L_M2, L_IP2 = 18, 19, 21, 22


class Case(NamedTuple):
    id: str
    data: str | bytes
    path: str
    line: int | None
    message: str
    count: int = 1  # problems expected in all


def add_to_m1(text: str) -> str:
    """BASE with ``text`` (lines at the machine's indentation) added to adm-ctrl, after line 17."""
    return edit("        roles: [base_system]\n", "        roles: [base_system]\n" + text)


def add_to_global(text: str) -> str:
    """BASE with ``text`` added under global, after line 4."""
    return edit('  default_os_image: "images:debian/13"\n', '  default_os_image: "images:debian/13"\n' + text)


def lines(text: str, *numbers: int) -> str:
    """``text`` without the given (1-based) lines."""
    return "".join(line for i, line in enumerate(text.splitlines(True), 1) if i not in numbers)


ORIGINAL = [
    # -- top level: required keys --
    Case("missing-project_name", lines(BASE, 1), "project_name", None, "missing required key"),
    Case("missing-global", lines(BASE, 2, 3, 4), "global", None, "missing required key"),
    Case("missing-domains", "project_name: demo\nglobal: {}\n", "domains", None, "missing required key"),
    Case("global-null", "project_name: demo\nglobal:\ndomains:\n", "global", 2, "expected a mapping"),
    # -- global --
    Case("gpu_policy-invalid", add_to_global("  gpu_policy: both\n"), "global.gpu_policy", 5,
         "must be 'exclusive' or 'shared', got a string ('both')"),
    Case("firewall_mode-invalid", add_to_global("  firewall_mode: router\n"), "global.firewall_mode", 5,
         "must be 'host' or 'vm'"),
    # -- domains --
    Case("domain-name-uppercase", edit("  admin:\n", "  Admin:\n"), "domains.Admin", L_ADMIN,
         "Domain 'Admin': invalid name (lowercase alphanumeric + hyphen)"),
    Case("domain-name-underscore", edit("  work:\n", "  my_work:\n"), "domains.my_work", L_WORK,
         "invalid name"),
    Case("domain-name-leading-hyphen", edit("  work:\n", "  -work:\n"), "domains.-work", L_WORK,
         "invalid name"),
    Case("domain-name-trailing-hyphen", edit("  work:\n", "  work-:\n"), "domains.work-", L_WORK,
         "invalid name"),  # the original accepted 'a-'; a bridge name should not end with '-'
    Case("domain-name-default", edit("  work:\n", "  default:\n"), "domains.default", L_WORK,
         "a domain cannot be named 'default'"),
    Case("subnet_id-missing", lines(BASE, L_SUBNET1), "domains.work.subnet_id", L_WORK,
         "missing required key"),
    Case("subnet_id-too-big", edit("subnet_id: 1\n", "subnet_id: 255\n"), "domains.work.subnet_id",
         L_SUBNET1, "must be an integer 0-254, got an integer (255)"),
    Case("subnet_id-negative", edit("subnet_id: 1\n", "subnet_id: -1\n"), "domains.work.subnet_id",
         L_SUBNET1, "0-254"),
    Case("subnet_id-string", edit("subnet_id: 1\n", "subnet_id: '1'\n"), "domains.work.subnet_id",
         L_SUBNET1, "0-254, got a string ('1')"),
    Case("subnet_id-bool", edit("subnet_id: 1\n", "subnet_id: true\n"), "domains.work.subnet_id",
         L_SUBNET1, "0-254"),
    Case("subnet_id-duplicate", edit("subnet_id: 1\n", "subnet_id: 0\n").replace("10.100.1.10", "10.100.0.11"),
         "domains.work.subnet_id", L_SUBNET1, "Domain 'work': subnet_id 0 already used by 'admin'"),
    Case("domain-ephemeral-string", edit("    subnet_id: 1\n", "    subnet_id: 1\n    ephemeral: 'yes'\n"),
         "domains.work.ephemeral", L_SUBNET1 + 1, "expected true or false, got a string ('yes')"),
    # -- machines --
    Case("machine-duplicate-across-domains", edit("      dev-ws:\n", "      adm-ctrl:\n"),
         "domains.work.machines.adm-ctrl", L_M2, "Machine 'adm-ctrl': duplicate (already in 'admin')"),
    Case("ip-duplicate", add_to_m1('      other:\n        ip: "10.100.0.10"\n'),
         "domains.admin.machines.other.ip", 19, "Machine 'other': IP 10.100.0.10 already used by 'adm-ctrl'"),
    Case("ip-not-in-subnet", edit('ip: "10.100.1.10"', 'ip: "10.100.0.20"'), f"{M2}.ip", L_IP2,
         "Machine 'dev-ws': IP 10.100.0.20 not in subnet 10.100.1.0/24"),
    Case("type-invalid", add_to_m1("        type: docker\n"), f"{M1}.type", 18,
         "must be 'lxc' or 'vm', got a string ('docker')"),
    Case("machine-ephemeral-string", add_to_m1("        ephemeral: 'no'\n"), f"{M1}.ephemeral", 18,
         "expected true or false"),
    Case("machine-ephemeral-int", add_to_m1("        ephemeral: 1\n"), f"{M1}.ephemeral", 18,
         "expected true or false, got an integer (1)"),
    Case("profile-not-defined", edit("[default, nesting]", "[default, nonexistent]"), f"{M1}.profiles[1]",
         L_PROFILES1, "Machine 'adm-ctrl': profile 'nonexistent' not defined in domain 'admin'"),
    Case("profile-of-another-domain", edit("      dev-ws:\n", "      dev-ws:\n        profiles: [nesting]\n"),
         f"{M2}.profiles[0]", L_M2 + 1, "profile 'nesting' not defined in domain 'work'"),
]

ADDED = [
    # -- IPv4 addresses --
    Case("ip-octet-too-big", edit('"10.100.0.10"', '"10.100.0.256"'), f"{M1}.ip", L_IP1,
         "'10.100.0.256' is not an IPv4 address"),
    Case("ip-three-octets", edit('"10.100.0.10"', '"10.100.0"'), f"{M1}.ip", L_IP1, "not an IPv4 address"),
    Case("ip-words", edit('"10.100.0.10"', "localhost"), f"{M1}.ip", L_IP1, "not an IPv4 address"),
    Case("ip-leading-zero", edit('"10.100.0.10"', '"10.100.0.010"'), f"{M1}.ip", L_IP1, "not an IPv4 address"),
    Case("ip-cidr", edit('"10.100.0.10"', '"10.100.0.10/24"'), f"{M1}.ip", L_IP1, "not an IPv4 address"),
    Case("ip-not-a-string", edit('"10.100.0.10"', "10"), f"{M1}.ip", L_IP1, "expected a string, got an integer"),
    Case("ip-network-address", edit('"10.100.0.10"', '"10.100.0.0"'), f"{M1}.ip", L_IP1,
         "IP 10.100.0.0 is the network address of 10.100.0.0/24"),
    Case("ip-broadcast", edit('"10.100.0.10"', '"10.100.0.255"'), f"{M1}.ip", L_IP1,
         "IP 10.100.0.255 is the broadcast address"),
    Case("ip-gateway", edit('"10.100.0.10"', '"10.100.0.254"'), f"{M1}.ip", L_IP1,
         "IP 10.100.0.254 is the gateway of 10.100.0.0/24"),
    # -- global.base_subnet --
    Case("base_subnet-three-octets", edit('"10.100"', '"10.100.1"'), "global.base_subnet", L_BASE_SUBNET,
         "expected the first two octets"),
    Case("base_subnet-out-of-range", edit('"10.100"', '"10.300"'), "global.base_subnet", L_BASE_SUBNET,
         "expected the first two octets"),
    # An unquoted 172.16 is a float: one problem, not one more per IP checked against the default.
    Case("base_subnet-float", edit('"10.100"', "172.16").replace('"10.100.', '"172.16.'),
         "global.base_subnet", L_BASE_SUBNET, "expected a string, got a number (172.16)"),
    # -- names that become Incus objects, interfaces and paths --
    Case("bridge-name-too-long", edit("  work:\n", "  abcdefghijkl:\n"), "domains.abcdefghijkl", L_WORK,
         "the bridge 'net-abcdefghijkl' would have 16 characters, Linux allows 15"),
    Case("machine-name-dotdot", edit("      dev-ws:\n", "      ../x:\n"), "domains.work.machines.../x", L_M2,
         "Machine '../x': invalid name"),
    Case("machine-name-slash", edit("      dev-ws:\n", "      a/b:\n"), "domains.work.machines.a/b", L_M2,
         "invalid name"),
    Case("machine-name-uppercase-underscore", edit("      dev-ws:\n", "      Bad_Name:\n"),
         "domains.work.machines.Bad_Name", L_M2, "Machine 'Bad_Name': invalid name"),
    Case("machine-name-leading-digit", edit("      dev-ws:\n", "      1ws:\n"), "domains.work.machines.1ws",
         L_M2, "invalid name"),
    Case("machine-name-too-long", edit("      dev-ws:\n", "      " + "a" * 64 + ":\n"),
         "domains.work.machines." + "a" * 64, L_M2, "invalid name"),
    Case("profile-name-dotdot", edit("      nesting:\n", "      nesting:\n        config: {}\n      ../x:\n"),
         "domains.admin.profiles.../x", L_NESTING + 2, "invalid profile name '../x'"),
    Case("profile-name-slash", edit("      nesting:\n", "      nesting:\n        config: {}\n      a/b:\n"),
         "domains.admin.profiles.a/b", L_NESTING + 2, "invalid profile name 'a/b'"),
    Case("profile-device-name",
         edit("        config:\n", "        devices:\n          a/b: {type: gpu}\n        config:\n"),
         "domains.admin.profiles.nesting.devices.a/b", L_NESTING + 2, "invalid device name 'a/b'"),
    Case("machine-device-name", add_to_m1("        devices:\n          ../x: {type: disk}\n"),
         f"{M1}.devices.../x", 19, "invalid device name '../x'"),
    Case("volume-name", add_to_m1("        storage_volumes:\n          ../x: {path: /data}\n"),
         f"{M1}.storage_volumes.../x", 19, "invalid storage volume name '../x'"),
    Case("volume-path-relative", add_to_m1("        storage_volumes:\n          data:\n            path: data\n"),
         f"{M1}.storage_volumes.data.path", 20, "the mount path must be absolute"),
    Case("volume-path-missing", add_to_m1("        storage_volumes:\n          data:\n            size: 10GiB\n"),
         f"{M1}.storage_volumes.data.path", 19, "missing required key"),
    Case("role-name", edit("[base_system]", "[base_system, ../evil]"),
         f"{M1}.roles[1]", 17, "invalid role name '../evil'"),
    # -- lists must be lists --
    Case("profiles-not-a-list", edit("[default, nesting]", "default"), f"{M1}.profiles", L_PROFILES1,
         "expected a list, got a string ('default')"),
    Case("roles-not-a-list", edit("[base_system]", "base_system"), f"{M1}.roles", 17,
         "expected a list, got a string ('base_system')"),
    Case("roles-entry-not-a-string", edit("[base_system]", "[base_system, {x: 1}]"), f"{M1}.roles[1]", 17,
         "expected a string, got a mapping"),
    Case("roles-two-bad-entries", edit("roles: [base_system]", "roles:\n          - 1\n          - [b]"),
         f"{M1}.roles[1]", 19, "expected a string, got a list", count=2),
    # -- wrong shapes --
    Case("config-value-null", edit('security.nesting: "true"', "security.nesting:"),
         "domains.admin.profiles.nesting.config.security.nesting", 12,
         "expected a scalar (string, number or boolean), got nothing (null)"),
    Case("machine-config-value-list", add_to_m1("        config:\n          limits.cpu: [1]\n"),
         f"{M1}.config.limits.cpu", 19, "expected a scalar"),
    Case("device-null", add_to_m1("        devices:\n          gpu:\n"), f"{M1}.devices.gpu", 19,
         "expected a mapping, got nothing (null)"),
    Case("domains-a-list", "project_name: demo\nglobal: {}\ndomains: [admin]\n", "domains", 3,
         "expected a mapping of names, got a list"),
    Case("machines-a-list",
         edit('    machines:\n      dev-ws:\n        ip: "10.100.1.10"\n', "    machines: [dev-ws]\n"),
         "domains.work.machines", 20, "expected a mapping of names, got a list"),
    Case("machine-null", edit('      dev-ws:\n        ip: "10.100.1.10"\n', "      dev-ws:\n"), M2, L_M2,
         "expected a mapping, got nothing (null)"),
    Case("project_name-not-a-string", edit("project_name: demo", "project_name: [demo]"), "project_name", 1,
         "expected a string, got a list"),
    Case("ollama-null", add_to_global("  ollama:\n"), "global.ollama", 5, "expected a mapping"),
    # -- unknown keys, at every level, with "did you mean" --
    Case("unknown-top", BASE + "domain: {}\n", "domain", 23, "unknown key"),
    Case("unknown-global", add_to_global("  gpu_polcy: shared\n"), "global.gpu_polcy", 5, "unknown key"),
    Case("unknown-ollama", add_to_global("  ollama:\n    versoin: 0.13.1\n"), "global.ollama.versoin", 6,
         "unknown key"),
    Case("unknown-sources", add_to_global("  sources:\n    image: https://mirror.example\n"),
         "global.sources.image", 6, "unknown key"),
    Case("unknown-domain", edit("    subnet_id: 1\n", "    subnet_id: 1\n    subnet: 2\n"), "domains.work.subnet",
         L_SUBNET1 + 1, "unknown key"),
    Case("unknown-machine", add_to_m1("        rolse: [x]\n"), f"{M1}.rolse", 18, "unknown key"),
    Case("unknown-profile", edit("        config:\n", "        confg:\n"), "domains.admin.profiles.nesting.confg",
         11, "unknown key"),
    Case("unknown-volume",
         add_to_m1("        storage_volumes:\n          data:\n            path: /d\n            sise: 1G\n"),
         f"{M1}.storage_volumes.data.sise", 21, "unknown key"),
    # -- Ollama models --
    Case("model-too-many-parts", add_to_m1("        models: [a/b/c/d]\n"), f"{M1}.models[0]", 18,
         "invalid model reference: model 'a/b/c/d'"),
    Case("model-bad-tag", add_to_m1("        models: ['llama3.2:bad tag']\n"), f"{M1}.models[0]", 18,
         "invalid tag 'bad tag'"),
    Case("model-empty-part", add_to_m1("        models: ['library//x']\n"), f"{M1}.models[0]", 18,
         "invalid model reference"),
    Case("model-duplicate", add_to_m1("        models: ['llama3.2:3b', 'llama3.2:3b']\n"), f"{M1}.models[1]", 18,
         "the same model is listed twice"),
    Case("model-duplicate-spelled-differently",
         add_to_m1("        models:\n          - llama3.2\n"
                   "          - registry.ollama.ai/library/llama3.2:latest\n"),
         f"{M1}.models[1]", 20, "the same model is listed twice: 'registry.ollama.ai/library/llama3.2:latest' is "
                                "'llama3.2'"),
    # -- Ansible variables --
    Case("var-name-invalid", add_to_m1("        vars:\n          1abc: x\n"), f"{M1}.vars.1abc", 19,
         "'1abc' is not a valid Ansible variable name"),
    Case("var-name-dash", add_to_m1("        vars:\n          my-var: x\n"), f"{M1}.vars.my-var", 19,
         "not a valid Ansible variable name"),
    Case("var-reserved-instance", add_to_m1("        vars:\n          instance_ip: x\n"), f"{M1}.vars.instance_ip",
         19, "'instance_ip' is reserved"),
    Case("var-reserved-anklume", add_to_m1("        vars:\n          anklume_pins: x\n"),
         f"{M1}.vars.anklume_pins", 19, "is reserved for the generated variables"),
    Case("vars-not-a-mapping", add_to_m1("        vars: [a]\n"), f"{M1}.vars", 18, "expected a mapping"),
    # -- image references --
    Case("image-unknown-remote", add_to_m1("        os_image: docker:debian\n"), f"{M1}.os_image", 18,
         "unknown remote 'docker' (known: images, local)"),
    Case("image-global-unknown-remote", edit('"images:debian/13"', '"ubuntu:24.04"'), "global.default_os_image",
         4, "unknown remote 'ubuntu'"),
    Case("image-space", add_to_m1("        os_image: 'images:debian 13'\n"), f"{M1}.os_image", 18,
         "the alias must be letters"),
    Case("image-dotdot", add_to_m1("        os_image: 'images:../x'\n"), f"{M1}.os_image", 18,
         "invalid image reference"),
]

YAML = [
    Case("not-utf8", b"project_name: d\xe9mo\nglobal: {}\ndomains:\n", "", 1,
         "not UTF-8 text (byte 0xe9 at offset 15)"),
    Case("not-utf8-later-line", BASE.encode() + b"# caf\xe9\n", "", 23, "not UTF-8"),
    Case("latin-1-file", BASE.replace("Admin", "Syst\xe8me").encode("latin-1"), "", 7, "not UTF-8"),
    Case("empty", b"", "", None, "the file is empty"),
    Case("only-comments", b"# nothing yet\n\n", "", None, "the file is empty"),
    Case("top-level-list", b"- project_name: demo\n", "", 1,
         "the top level must be a mapping of keys, got a list"),
    Case("top-level-scalar", b"\n\ninfra\n", "", 3, "got a scalar ('infra')"),
    Case("duplicate-key", add_to_m1('        ip: "10.100.0.11"\n'), f"{M1}.ip", 18, "duplicate key"),
    Case("duplicate-domain", BASE + "  work:\n    subnet_id: 2\n", "domains.work", 23, "duplicate key"),
    Case("duplicate-top", BASE + "project_name: other\n", "project_name", 23, "duplicate key"),
    Case("syntax-error", edit("Admin", "Admin: x"), "", 7, "invalid YAML: mapping values are not allowed here"),
    Case("syntax-unclosed-bracket", edit("[default, nesting]", "[default, nesting"), "", L_PROFILES1 + 1,
         "invalid YAML: expected ',' or ']'"),
    Case("syntax-unclosed-quote", edit('"10.100.1.10"', '"10.100.1.10'), "", 23, "invalid YAML"),
    Case("syntax-bad-indent", edit("        roles:", "       roles:"), "", 17, "invalid YAML"),
    Case("tab-indent", edit("    subnet_id: 1\n", "\tsubnet_id: 1\n"), "", L_SUBNET1, "invalid YAML"),
    Case("two-documents", BASE + "---\nproject_name: b\n", "", 23, "but found another document"),
    Case("nul-character", edit("Admin", "Ad\x00min"), "", 7, "character U+0000 is not allowed"),
    Case("unknown-tag", edit("Admin", "!foo Admin"), "domains.admin.description", 7,
         "could not determine a constructor for the tag '!foo'"),
    Case("bad-int-tag", edit("subnet_id: 1", "subnet_id: !!int one"), "domains.work.subnet_id", L_SUBNET1,
         "invalid value 'one'"),
    Case("bad-date", edit("Admin", "2024-13-01"), "domains.admin.description", 7, "month must be in 1..12"),
    Case("bad-binary", edit("Admin", "!!binary x"), "domains.admin.description", 7, "base64"),
    Case("merge-of-a-scalar", "x: &x 1\n" + edit("global:\n", "global:\n  <<: *x\n"), "global", 4,
         "invalid merge key (<<): expected a mapping or a list of mappings"),  # YAML first: 'x' unchecked
    Case("null-key", edit("  work:\n", "  ~:\n"), "domains", L_WORK, "keys must be plain names"),
    Case("list-key", "? [a, b]\n: 1\n" + BASE, "", 1, "keys must be plain names"),
    Case("recursive-alias", BASE + "x: &a [*a]\n", "", 23, "recursive alias"),
    Case("too-deep", BASE + "x: " + "[" * 200 + "]" * 200 + "\n", "", 23, "nested more than 100 levels deep"),
]


def policy(text: str) -> str:
    """BASE with one network policy (line 24)."""
    return BASE + "network_policies:\n  - " + text + "\n"


NETWORK = [
    Case("firewall_mode-vm", add_to_global("  firewall_mode: vm\n"), "global.firewall_mode", 5,
         "firewall_mode 'vm' (a firewall VM routing between the domains) is not implemented"),
    Case("trust_level-invalid", edit("    subnet_id: 1\n", "    subnet_id: 1\n    trust_level: root\n"),
         "domains.work.trust_level", L_SUBNET1 + 1, "must be 'admin' or 'trusted'"),
    Case("policy-unknown-to", policy("{from: work, to: wrok, ports: [80]}"), "network_policies[0].to", 24,
         "'to: wrok' is not a known domain or machine"),
    Case("policy-missing-from", policy("{to: work}"), "network_policies[0].from", 24, "missing required key"),
    Case("policy-bad-port", policy("{from: admin, to: work, ports: [80, 70000]}"), "network_policies[0].ports[1]",
         24, "invalid port 70000 (must be 1-65535)"),
    Case("policy-ports-scalar", policy("{from: admin, to: work, ports: 80}"), "network_policies[0].ports", 24,
         "ports must be a non-empty list or 'all'"),
    Case("policy-protocol", policy("{from: admin, to: work, protocol: icmp}"), "network_policies[0].protocol", 24,
         "must be 'tcp' or 'udp'"),
    Case("policy-unknown-key", policy("{from: admin, to: work, port: [80]}"), "network_policies[0].port", 24,
         "unknown key"),
    Case("policy-same-domain", policy("{from: adm-ctrl, to: admin}"), "network_policies[0]", 24,
         "both ends are in domain 'admin'"),
    Case("policy-machine-without-ip", edit('        ip: "10.100.1.10"\n', "        description: x\n",
                                               policy("{from: dev-ws, to: admin}")),
         "network_policies[0].from", 24, "machine 'dev-ws' has no ip"),
    Case("policies-not-a-list", BASE + "network_policies: {from: a}\n", "network_policies", 23,
         "expected a list of policies"),
]

CASES = ORIGINAL + ADDED + YAML + NETWORK


def _as_bytes(data: str | bytes) -> bytes:
    return data if isinstance(data, bytes) else data.encode()


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_rule(case: Case):
    found = problems(case.data)
    assert any(p.path == case.path and p.line == case.line and case.message in p.message for p in found), \
        "\n".join(p.render() for p in found) or "no problem found"
    assert len(found) == case.count, "\n".join(p.render() for p in found)
    for p in found:
        assert p.file == "infra.yml"


def test_case_ids_are_unique():
    assert len({c.id for c in CASES}) == len(CASES)


def test_base_is_valid():
    infra = load_infra(BASE.encode(), "infra.yml")
    assert list(infra.domains) == ["admin", "work"]
    assert infra.domains["admin"].machines["adm-ctrl"].profiles == ["default", "nesting"]


# -- what the original accepted, and what anklume keeps accepting ------------------------

VALID = {
    "domains-null": "project_name: demo\nglobal: {}\ndomains:\n",
    "domains-empty": "project_name: demo\nglobal: {}\ndomains: {}\n",
    "domain-without-machines": "project_name: demo\nglobal: {}\ndomains:\n  lab:\n    subnet_id: 3\n",
    "machines-null": "project_name: demo\nglobal: {}\ndomains:\n  lab:\n    subnet_id: 3\n    machines:\n",
    "default-profile-undeclared": edit("[default, nesting]", "[default]"),
    "subnet_id-bounds": edit("subnet_id: 1\n", "subnet_id: 254\n").replace("10.100.1.10", "10.100.254.10"),
    "subnet_id-zero-and-ip-1": edit('"10.100.0.10"', '"10.100.0.1"'),
    "ip-253": edit('"10.100.0.10"', '"10.100.0.253"'),
    "no-ip-dhcp": edit('      dev-ws:\n        ip: "10.100.1.10"\n', "      dev-ws:\n        roles: []\n"),
    "vm-type": add_to_m1("        type: vm\n"),
    "lxc-type": add_to_m1("        type: lxc\n"),
    "vm-and-lxc": add_to_m1("        type: vm\n").replace("      dev-ws:\n", "      dev-ws:\n        type: lxc\n"),
    "gpu_policy-shared": add_to_global("  gpu_policy: shared\n"),
    "firewall_mode-host": add_to_global("  firewall_mode: host\n"),
    "ephemeral-both-levels": edit("    subnet_id: 1\n", "    subnet_id: 1\n    ephemeral: true\n")
    .replace("      dev-ws:\n", "      dev-ws:\n        ephemeral: false\n"),
    "bridge-name-15": edit("  work:\n", "  abcdefghijk:\n"),
    "domain-name-digits": edit("  work:\n", "  2nd-lab:\n"),
    "domain-named-no": edit("  work:\n", "  no:\n"),
    "machine-name-63": edit("      dev-ws:\n", "      " + "a" * 63 + ":\n"),
    "names-with-dots": edit("      nesting:\n", "      nvidia.compute_1:\n")
    .replace("nesting]", "nvidia.compute_1]")
    + "        devices:\n          gpu.0: {type: gpu}\n        storage_volumes:\n"
      "          data.v1: {path: /srv/data, pool: default, size: 10GiB}\n",
    "models-and-vars": add_to_m1("        models: [llama3.2:3b, 'ghcr.io/team/model:v1', qwen/qwen3]\n"
                                 "        vars:\n          open_webui_port: 8080\n"
                                 "          nested: {a: [1, 2]}\n"),
    "images-and-local": add_to_m1("        os_image: local:my-golden\n")
    .replace('"images:debian/13"', "debian/13"),  # no remote: the Incus server's own images
    "sources-and-ollama": add_to_global("  architecture: aarch64\n  ollama:\n    version: 0.13.1\n"
                                        "  sources:\n    images: https://images.example\n"),
    "flow-style": "{project_name: demo, global: {},\n"
                  " domains: {lab: {subnet_id: 2, machines: {m: {ip: 10.100.2.5}}}}}",
    "bom": "\ufeff" + BASE,
    "policies": BASE + "network_policies:\n  - {from: work, to: adm-ctrl, ports: [22, 80], protocol: udp}\n"
                       "  - {from: admin, to: work, ports: all, bidirectional: true, description: x}\n"
                       "  - {from: work, to: admin}\n",
    "policies-null": BASE + "network_policies:\n",
    "trust_levels": edit("    subnet_id: 1\n", "    subnet_id: 1\n    trust_level: disposable\n",
                         edit("    subnet_id: 0\n", "    subnet_id: 0\n    trust_level: admin\n")),
    "crlf": BASE.replace("\n", "\r\n"),
    "document-markers": "---\n" + BASE + "...\n",
}


@pytest.mark.parametrize("name", list(VALID))
def test_valid(name: str):
    found = problems(VALID[name])
    assert found == [], "\n".join(p.render() for p in found)


def test_defaults():
    infra = load_infra(BASE.encode(), "infra.yml")
    glob = infra.global_
    assert (glob.base_subnet, glob.gpu_policy, glob.firewall_mode, glob.architecture) == \
        ("10.100", "exclusive", "host", "x86_64")
    assert glob.ollama.version == "latest"
    assert infra.domains["work"].ephemeral is False
    assert infra.domains["work"].description == ""
    machine = infra.domains["work"].machines["dev-ws"]
    assert machine.type == "lxc"
    assert machine.ephemeral is None  # inherits the domain's
    assert machine.description == ""
    assert (machine.profiles, machine.roles, machine.models, machine.vars, machine.os_image) == (None,) * 5


def test_domain_names_are_read_as_written():
    """``no:`` is the domain 'no', not the boolean false of YAML 1.1."""
    infra = load_infra(VALID["domain-named-no"].encode(), "infra.yml")
    assert list(infra.domains) == ["admin", "no"]


# -- merge keys and anchors ----------------------------------------------------------------

MERGE = """\
project_name: demo
global: {}
domains:
  lab:
    subnet_id: 2
    machines:
      templates:
        vars:
          small: &small
            type: lxc
            roles: [base_system]
            config: {limits.cpu: "1"}
          vm: &vm
            type: vm
            description: a VM
      a:
        <<: *small
      b:
        <<: [*vm, *small]
        roles: [base_system, extra]
      c:
        <<: *small
        config: {limits.cpu: "4"}
"""


def test_merge_keys():
    infra = load_infra(MERGE.encode(), "infra.yml")
    lab = infra.domains["lab"].machines
    assert (lab["a"].type, lab["a"].roles, lab["a"].config) == ("lxc", ["base_system"], {"limits.cpu": "1"})
    # the first mapping listed wins over later ones; an explicit key wins over all of them
    assert (lab["b"].type, lab["b"].description, lab["b"].roles) == ("vm", "a VM", ["base_system", "extra"])
    assert lab["c"].config == {"limits.cpu": "4"}


def test_merged_keys_are_checked_like_written_ones():
    [problem] = problems(MERGE.replace("            description: a VM\n", "            descripton: a VM\n"))
    assert (problem.path, problem.line, problem.hint) == \
        ("domains.lab.machines.b.descripton", 15, "did you mean 'description'?")


def test_merge_keeps_the_anchor_intact():
    """A mapping merged somewhere reads the same where it is used again later."""
    text = edit("        roles: [base_system]\n", "        roles: [base_system]\n        vars:\n"
                "          base: &b {x: 1}\n          mid: &m {<<: *b, y: 2}\n          top: {<<: *m, x: 3}\n"
                "          again: *m\n")
    infra = load_infra(text.encode(), "infra.yml")
    assert infra.domains["admin"].machines["adm-ctrl"].vars == {
        "base": {"x": 1}, "mid": {"x": 1, "y": 2}, "top": {"x": 3, "y": 2}, "again": {"x": 1, "y": 2}}


def test_duplicate_explicit_key_next_to_a_merge_is_still_an_error():
    text = "d: &d {a: 1}\n" + add_to_m1("        vars: {<<: *d, a: 2, a: 3}\n")
    found = problems(text)
    assert [(p.path, p.message) for p in found if p.path.startswith("domains")] == \
        [(f"{M1}.vars.a", "duplicate key")]


def _laughs(levels: int, width: int = 10) -> bytes:
    out = ["project_name: demo", "global: {}", "domains: {}", "l0: &l0 [" + ", ".join(["lol"] * width) + "]"]
    for i in range(1, levels):
        out.append(f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * width) + "]")
    return ("\n".join(out) + "\n").encode()


@pytest.mark.parametrize("levels", [9, 30])
def test_alias_bomb_is_refused_quickly(levels: int):
    start = time.perf_counter()
    with pytest.raises(InvalidInfra) as err:
        load_infra(_laughs(levels), "infra.yml")
    assert time.perf_counter() - start < 1.0
    [problem] = err.value.problems
    assert "anchors and aliases" in problem.message and problem.line is not None


def test_merge_bomb_is_refused_quickly():
    out = ["project_name: demo", "global: {}", "domains: {}",
           "m0: &m0 {" + ", ".join(f"k{j}: v" for j in range(10)) + "}"]
    for i in range(1, 40):
        out.append(f"m{i}: &m{i} {{<<: [" + ", ".join([f"*m{i - 1}"] * 10) + "]}")
    start = time.perf_counter()
    with pytest.raises(InvalidInfra) as err:
        load_infra(("\n".join(out) + "\n").encode(), "infra.yml")
    assert time.perf_counter() - start < 1.0
    assert "anchors and aliases" in err.value.problems[0].message


def test_small_aliases_are_fine():
    assert problems(_laughs(3).replace(b"l0:", b"domains-x:").replace(b"domains: {}\n", b"")) != []
    text = add_to_m1("        vars:\n          l0: &l0 [1, 2]\n          l1: [*l0, *l0]\n")
    infra = load_infra(text.encode(), "infra.yml")
    assert infra.domains["admin"].machines["adm-ctrl"].vars["l1"] == [[1, 2], [1, 2]]


# -- all at once, and how a problem reads -------------------------------------------------

FIVE = """\
project_name: demo
global:
  gpu_policy: both
domains:
  admin:
    subnet_id: 0
    colour: blue
    machines:
      a1:
        ip: "10.100.0.10"
        storage_volumes:
          data: {path: srv/data}
      a2:
        ip: "10.100.0.10"
        vars:
          instance_name: x
"""


def test_all_problems_are_reported_at_once():
    found = problems(FIVE)
    assert sorted((p.path, p.line) for p in found) == [
        ("domains.admin.colour", 7),
        ("domains.admin.machines.a1.storage_volumes.data.path", 12),
        ("domains.admin.machines.a2.ip", 14),
        ("domains.admin.machines.a2.vars.instance_name", 16),
        ("global.gpu_policy", 3),
    ]


def test_rendered_message():
    with pytest.raises(InvalidInfra) as err:
        load_infra(FIVE.encode(), "lab/infra.yml")
    text = err.value.render()
    assert "lab/infra.yml:7: domains.admin.colour: unknown key\n    hint: known keys: " in text
    assert ("lab/infra.yml:3: global.gpu_policy: must be 'exclusive' or 'shared', got a string ('both')\n"
            in text)
    assert text.endswith("\nerror: 5 problems found; nothing was written")
    assert err.value.exit_code == 1


def test_did_you_mean():
    [problem] = problems(add_to_m1("        rolse: [x]\n"))
    assert problem.render() == (f"infra.yml:18: {M1}.rolse: unknown key\n    hint: did you mean 'roles'?")
    [problem] = problems(BASE + "domain: {}\n")
    assert problem.hint == "did you mean 'domains'?"
    [problem] = problems(add_to_global("  gpu_polcy: shared\n"))
    assert problem.hint == "did you mean 'gpu_policy'?"
    [problem] = problems(edit("    subnet_id: 1\n", "    subnet_id: 1\n    subnet: 2\n"))
    assert problem.hint == "did you mean 'subnet_id'?"
    [problem] = problems(add_to_global("  ollama:\n    versoin: 0.13.1\n"))
    assert problem.hint == "did you mean 'version'?"
    [problem] = problems(edit("        config:\n", "        confg:\n"))
    assert problem.hint == "did you mean 'config'?"


def test_problem_without_line_or_path():
    assert Problem("infra.yml", "", "the file is empty").render() == "infra.yml: (top level): the file is empty"
    [problem] = problems(lines(BASE, 1))
    assert problem.render() == ("infra.yml: project_name: missing required key\n"
                                "    hint: add 'project_name:' under the top level")


def test_duplicate_key_hint_names_the_first_line():
    [problem] = problems(add_to_m1('        ip: "10.100.0.11"\n'))
    assert problem.hint == "first defined on line 15"


# -- the examples: the original's six and the project's own --------------------------------

def test_there_are_six_original_examples():
    assert len(V1_EXAMPLES) == 6 and len(OWN_EXAMPLES) >= 6


@pytest.mark.parametrize("name", list(EXAMPLES))
def test_example_loads(name: str):
    path = EXAMPLES[name]
    assert isinstance(load_infra(path.read_bytes(), path.name), Infra)


@pytest.mark.parametrize("name", list(EXAMPLES))
def test_example_defaults(name: str):
    """Every value the file leaves out takes the original's default."""
    path = EXAMPLES[name]
    raw = yaml.safe_load(path.read_bytes())
    infra = load_infra(path.read_bytes(), path.name)
    glob = raw["global"] or {}
    assert infra.project_name == raw["project_name"]
    assert infra.global_.base_subnet == glob.get("base_subnet", "10.100")
    assert infra.global_.gpu_policy == glob.get("gpu_policy", "exclusive")
    assert infra.global_.firewall_mode == glob.get("firewall_mode", "host")
    assert infra.global_.default_os_image == glob.get("default_os_image")
    assert list(infra.domains) == list(raw["domains"] or {})
    for dname, rdomain in (raw["domains"] or {}).items():
        domain = infra.domains[dname]
        assert domain.subnet_id == rdomain["subnet_id"]
        assert domain.ephemeral is rdomain.get("ephemeral", False)
        assert domain.description == rdomain.get("description", "")
        for mname, rmachine in (rdomain.get("machines") or {}).items():
            machine = domain.machines[mname]
            assert machine.type == rmachine.get("type", "lxc")
            assert machine.ephemeral is rmachine.get("ephemeral")  # None: inherits the domain's
            effective = machine.ephemeral if machine.ephemeral is not None else domain.ephemeral
            assert effective is rmachine.get("ephemeral", rdomain.get("ephemeral", False))
            assert machine.ip == rmachine.get("ip")
            assert machine.roles == rmachine.get("roles")
            assert machine.profiles == rmachine.get("profiles")


def test_known_example_values():
    def load(name: str) -> Infra:
        return load_infra(EXAMPLES[name].read_bytes(), "infra.yml")

    pro = load("v1/pro-workstation")
    assert pro.global_.gpu_policy == "exclusive" and pro.global_.base_subnet == "10.100"
    assert pro.domains["homelab"].machines["pw-llm"].profiles == ["default", "nvidia-compute"]
    assert pro.domains["homelab"].profiles["nvidia-compute"]["devices"]["gpu"] == {"type": "gpu",
                                                                                   "gputype": "physical"}
    assert load("v1/llm-supervisor").global_.gpu_policy == "shared"
    sandbox = load("v1/sandbox-isolation").domains["sandbox"]
    assert sandbox.ephemeral is True
    assert {m.type for m in sandbox.machines.values()} == {"lxc", "vm"}
    own = load("examples/sandbox-isolation")
    assert own.global_.base_subnet == "172.16"
    assert own.domains["sandbox"].ephemeral is True
    assert own.domains["sandbox"].machines["sbx-monitor"].ephemeral is False
    assert own.domains["sandbox"].machines["sbx-test"].ephemeral is None
    assert own.domains["sandbox"].machines["sbx-dhcp"].ip is None
    developer = load("v1/developer")
    assert all(m.type == "lxc" for d in developer.domains.values() for m in (d.machines or {}).values())

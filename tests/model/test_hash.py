"""The infra hash (``anklume.lock.codec.infra_hash``) follows meaning, not bytes.

Comments, whitespace, key order, quoting and spelling out a default keep it; any semantic
change moves it; where things are fetched from (``global.sources``) does not count; the same
file gives the same hash in another process with another hash seed.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.support.hyp import examples

from anklume.lock.codec import infra_hash
from anklume.model.load import load_infra

from .conftest import BASE, EXAMPLES, ROOT, edit

M1_ROLES = "        roles: [base_system]\n"


def h(text: str | bytes) -> str:
    return infra_hash(load_infra(text.encode() if isinstance(text, str) else text, "infra.yml"))


BASE_HASH = h(BASE)

SAME = {
    "comments": "# my lab\n" + BASE.replace("domains:\n", "domains:  # all of them\n") + "# end\n",
    "blank-lines-and-indent": BASE.replace("\n  admin:", "\n\n  admin:").replace("  ", "    "),
    "quoting": BASE.replace("description: Admin", "description: 'Admin'").replace('"10.100"', "'10.100'"),
    "flow-vs-block": BASE.replace(M1_ROLES, "        roles:\n          - base_system\n"),
    "top-level-order": BASE[BASE.index("domains:"):] + BASE[:BASE.index("domains:")],
    "machine-key-order": BASE.replace('        ip: "10.100.0.10"\n        profiles: [default, nesting]\n',
                                      '        profiles: [default, nesting]\n        ip: "10.100.0.10"\n'),
    "domain-order": ("project_name: demo\nglobal:\n  base_subnet: \"10.100\"\n"
                     "  default_os_image: \"images:debian/13\"\ndomains:\n" + BASE[BASE.index("  work:"):]
                     + BASE[BASE.index("  admin:"):BASE.index("  work:")]),
    "explicit-type-lxc": BASE.replace(M1_ROLES, M1_ROLES + "        type: lxc\n"),
    "explicit-domain-ephemeral-false": edit("    subnet_id: 1\n", "    subnet_id: 1\n    ephemeral: false\n"),
    "explicit-description-empty": edit("    subnet_id: 1\n", "    subnet_id: 1\n    description: ''\n"),
    "explicit-global-defaults": edit('  base_subnet: "10.100"\n',
                                     '  base_subnet: "10.100"\n  gpu_policy: exclusive\n  firewall_mode: host\n'
                                     '  architecture: x86_64\n  ollama: {version: latest}\n'),
    "sources-added": edit('  base_subnet: "10.100"\n', '  base_subnet: "10.100"\n  sources:\n'
                          "    images: https://mirror.example/images\n"
                          "    ollama_registry: https://registry.example\n"),
    "crlf": BASE.replace("\n", "\r\n"),
    "merge-key": edit("    machines:\n      dev-ws:\n        ip: \"10.100.1.10\"\n",
                      "    machines:\n      dev-ws:\n        <<: {ip: \"10.100.1.10\"}\n"),
}

DIFFERENT = {
    "description": edit("description: Admin", "description: Admins"),
    "domain-description-added": edit("    subnet_id: 1\n", "    subnet_id: 1\n    description: Work\n"),
    "ip": edit('"10.100.1.10"', '"10.100.1.11"'),
    "config-value": edit('security.nesting: "true"', 'security.nesting: "false"'),
    "config-value-type": edit('security.nesting: "true"', "security.nesting: true"),
    "roles-added": BASE.replace(M1_ROLES, "        roles: [base_system, extra]\n"),
    "roles-reordered": BASE.replace(M1_ROLES, "        roles: [extra, base_system]\n"),
    "profiles-order": edit("[default, nesting]", "[nesting, default]"),
    "type-vm": BASE.replace(M1_ROLES, M1_ROLES + "        type: vm\n"),
    "machine-ephemeral-explicit": BASE.replace(M1_ROLES, M1_ROLES + "        ephemeral: false\n"),
    "subnet_id": edit("subnet_id: 1\n", "subnet_id: 2\n").replace("10.100.1.10", "10.100.2.10"),
    "project_name": edit("project_name: demo", "project_name: demo2"),
    "image": edit('"images:debian/13"', '"images:debian/12"'),
    "gpu_policy": edit('  base_subnet: "10.100"\n', '  base_subnet: "10.100"\n  gpu_policy: shared\n'),
    "ollama-version": edit('  base_subnet: "10.100"\n', '  base_subnet: "10.100"\n  ollama: {version: 0.13.1}\n'),
    "machine-renamed": edit("dev-ws:", "dev-ws2:"),
    "models": BASE.replace(M1_ROLES, M1_ROLES + "        models: [llama3.2:3b]\n"),
    "vars": BASE.replace(M1_ROLES, M1_ROLES + "        vars: {port: 8080}\n"),
    "vars-value": BASE.replace(M1_ROLES, M1_ROLES + "        vars: {port: 8081}\n"),
}


@pytest.mark.parametrize("name", list(SAME))
def test_hash_kept(name: str):
    assert h(SAME[name]) == BASE_HASH


@pytest.mark.parametrize("name", list(DIFFERENT))
def test_hash_changed(name: str):
    assert h(DIFFERENT[name]) != BASE_HASH


def test_every_change_gives_its_own_hash():
    hashes = {h(text) for text in DIFFERENT.values()}
    assert len(hashes) == len(DIFFERENT)


def test_sources_never_count():
    one = edit('  base_subnet: "10.100"\n', '  base_subnet: "10.100"\n  sources: {images: https://a.example}\n')
    two = edit('  base_subnet: "10.100"\n', '  base_subnet: "10.100"\n  sources: {images: https://b.example,'
               ' incus: https://c.example, ollama_releases: https://d.example}\n')
    assert h(one) == h(two) == BASE_HASH


def test_hash_format():
    assert BASE_HASH.startswith("blake3:") and len(BASE_HASH) == len("blake3:") + 64


# -- shuffled key order, re-dumped: the same hash --------------------------------------------

def _shuffled(node, rnd: random.Random):
    if isinstance(node, dict):
        items = list(node.items())
        rnd.shuffle(items)
        return {k: _shuffled(v, rnd) for k, v in items}
    if isinstance(node, list):
        return [_shuffled(v, rnd) for v in node]  # list order is meaning: kept
    return node


@settings(max_examples=examples(30), derandomize=True, deadline=None, database=None)
@given(name=st.sampled_from(sorted(EXAMPLES)), rnd=st.randoms(use_true_random=False),
       flow=st.sampled_from([None, True, False]))
def test_shuffled_key_order_keeps_the_hash(name: str, rnd: random.Random, flow: bool | None):
    source = EXAMPLES[name].read_bytes()
    tree = _shuffled(yaml.safe_load(source), rnd)
    dumped = yaml.safe_dump(tree, sort_keys=False, default_flow_style=flow, width=rnd.choice([40, 80, 1000]))
    assert h(dumped) == h(source)


# -- two processes, two hash seeds: the same hash ---------------------------------------------

_SCRIPT = ("import sys\n"
           "from anklume.lock.codec import infra_hash\n"
           "from anklume.model.load import load_infra\n"
           "for path in sys.argv[1:]:\n"
           "    with open(path, 'rb') as f:\n"
           "        print(infra_hash(load_infra(f.read(), path)))\n")


def test_same_hash_in_other_processes():
    paths = [str(p) for p in EXAMPLES.values()]
    expected = [h(p.read_bytes()) for p in EXAMPLES.values()]
    for seed in ("0", "1", "12345"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        run = subprocess.run([sys.executable, "-c", _SCRIPT, *paths], cwd=ROOT, env=env, capture_output=True,
                             text=True, check=True, timeout=60)
        assert run.stdout.split() == expected, f"PYTHONHASHSEED={seed}"


def test_list_order_is_meaning():
    roles = BASE.replace(M1_ROLES, "        roles: [a, b]\n")
    assert h(roles) != h(roles.replace("[a, b]", "[b, a]"))

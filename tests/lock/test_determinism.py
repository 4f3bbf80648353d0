"""Same inputs, same bytes: key order, runs and processes do not change the
lock or the tree; the infra memo returns exactly what parsing returns."""

from __future__ import annotations

import random
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.hyp import examples

from anklume.lock.assemble import lock_infra
from anklume.lock.codec import encode_lock
from anklume.model.load import load_infra
from anklume.project import load_infra_memo
from anklume.render.tree import render_tree
from anklume.resolve.resolver import LiveResolver
from tests.support.lockfiles import EXAMPLES, H200_INVENTORY, H200_SMI, LOCKFILES, example_names
from tests.support.mirror import RecordedMirror


def _shuffle(mapping: dict, rng: random.Random) -> dict:
    items = list(mapping.items())
    rng.shuffle(items)
    return dict(items)


def shuffled(doc: dict, rng: random.Random, everything: bool = False) -> dict:
    """``doc`` with the order of its schema keys shuffled (top level, global, each
    domain's and each machine's keys); with ``everything``, user-named maps too
    (domains, machines, config, devices, profiles, vars...).  List order is meaning
    (roles, models) and is kept."""
    def deep(value):
        if isinstance(value, dict):
            return {k: deep(v) for k, v in (_shuffle(value, rng) if everything else value).items()}
        if isinstance(value, list):
            return [deep(v) for v in value]
        return value

    doc = deep(doc)
    domains = {}
    for dname, domain in (doc.get("domains") or {}).items():
        domain = dict(domain)
        if domain.get("machines"):
            domain["machines"] = {m: _shuffle(spec, rng) for m, spec in domain["machines"].items()}
        domains[dname] = _shuffle(domain, rng)
    doc["domains"] = domains
    doc["global"] = _shuffle(doc["global"], rng)
    return _shuffle(doc, rng)


def _lock_and_tree(text: bytes, env, cache):
    infra = load_infra(text, "infra.yml")
    resolver = LiveResolver(infra, env, gpu_inventory=H200_INVENTORY, nvidia_smi=H200_SMI, cache_dir=cache)
    lock = lock_infra(infra, None, resolver)
    return encode_lock(lock), render_tree(infra, lock)


@settings(max_examples=examples(12), deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**32 - 1), name=st.sampled_from(example_names()), everything=st.booleans())
def test_shuffled_key_order_gives_identical_lock_and_tree(seed, name, everything, tmp_path_factory):
    """The lock never depends on key order.  The tree does not depend on the order
    of infra.yml's own keys; it keeps the order of the maps the user names
    (domains, machines, config, devices...), which the original copied verbatim,
    so with those shuffled too the files hold the same values."""
    original = (EXAMPLES / name / "infra.yml").read_bytes()
    doc = shuffled(yaml.safe_load(original), random.Random(seed), everything)
    text = yaml.safe_dump(doc, sort_keys=False, default_flow_style=bool(seed % 2)).encode()
    cache = tmp_path_factory.mktemp("cache")
    with RecordedMirror() as mirror:
        lock_a, tree_a = _lock_and_tree(original, mirror.env(), cache)
        lock_b, tree_b = _lock_and_tree(text, mirror.env(), cache)
    assert lock_a == lock_b == (LOCKFILES / f"{name}.lock").read_bytes()
    if not everything:
        assert tree_a == tree_b
    assert sorted(tree_a) == sorted(tree_b)
    assert {k: yaml.safe_load(v) for k, v in tree_a.items()} == {k: yaml.safe_load(v) for k, v in tree_b.items()}


def test_two_runs_give_identical_bytes(tmp_path):
    text = (EXAMPLES / "llm-supervisor" / "infra.yml").read_bytes()
    with RecordedMirror() as mirror:
        first = _lock_and_tree(text, mirror.env(), tmp_path / "a")
        second = _lock_and_tree(text, mirror.env(), tmp_path / "b")
    assert first == second


def test_memo_returns_what_parsing_returns_and_misses_on_any_edit(tmp_path):
    text = (EXAMPLES / "gpu-workstation" / "infra.yml").read_bytes()
    parsed = load_infra(text, "infra.yml")
    assert load_infra_memo(text, "infra.yml", tmp_path) == parsed  # miss: parses, records
    assert len(list(tmp_path.glob("*.msgpack"))) == 1
    assert load_infra_memo(text, "infra.yml", tmp_path) == parsed  # hit
    edited = text.replace(b'"Personal environment"', b'"Personal desktop"')
    assert load_infra_memo(edited, "infra.yml", tmp_path) == load_infra(edited, "infra.yml")
    assert len(list(tmp_path.glob("*.msgpack"))) == 2


def test_a_corrupt_memo_is_ignored(tmp_path):
    text = (EXAMPLES / "gpu-workstation" / "infra.yml").read_bytes()
    load_infra_memo(text, "infra.yml", tmp_path)
    (memo,) = tmp_path.glob("*.msgpack")
    memo.write_bytes(b"\x00garbage")
    assert load_infra_memo(text, "infra.yml", tmp_path) == load_infra(text, "infra.yml")


def test_invalid_files_are_not_memoised(tmp_path):
    import pytest

    from anklume.errors import InvalidInfra

    with pytest.raises(InvalidInfra):
        load_infra_memo(b"project_name: x\nglobal: {}\ndomains: {a: {}}\n", "infra.yml", tmp_path)
    assert not list(tmp_path.glob("*.msgpack"))


def _tamper_ip(memo_file, old: str, new: str) -> None:
    """Rewrite the memoised model with one machine's address changed, as a valid memo of the
    previous format would hold it (the payload after any header the memo has)."""
    import msgspec

    raw = memo_file.read_bytes()
    for offset in range(len(raw)):
        try:
            doc = msgspec.msgpack.decode(raw[offset:])
        except msgspec.DecodeError:
            continue
        if isinstance(doc, dict) and "domains" in doc:
            break
    else:
        raise AssertionError("no msgpack payload in the memo")
    patched = msgspec.msgpack.encode(doc).replace(old.encode(), new.encode())
    assert patched != msgspec.msgpack.encode(doc)
    memo_file.write_bytes(raw[:offset] + patched)


def test_an_edited_memo_is_not_trusted(tmp_path):
    text = (EXAMPLES / "gpu-workstation" / "infra.yml").read_bytes()
    parsed = load_infra(text, "infra.yml")
    load_infra_memo(text, "infra.yml", tmp_path)
    (memo,) = tmp_path.glob("*.msgpack")
    _tamper_ip(memo, "10.100.0.10", "10.100.0.99")
    assert load_infra_memo(text, "infra.yml", tmp_path) == parsed
    assert load_infra_memo(text, "infra.yml", tmp_path) == parsed  # and the memo was written again


def test_an_edited_memo_changes_neither_the_lock_nor_the_tree(project):
    from tests.lock.conftest import GPU_ARGS

    assert project("lock", *GPU_ARGS).exit_code == 0
    assert project("build", "--no-apply").exit_code == 0
    (memo,) = (Path(project.env["ANKLUME_CACHE_DIR"]) / "infra").glob("*.msgpack")
    _tamper_ip(memo, "10.100.0.10", "10.100.0.99")
    assert project("lock", "--check").exit_code == 0
    assert project("lock", *GPU_ARGS).exit_code == 0
    assert project("build", "--no-apply").exit_code == 0
    tree = b"".join(p.read_bytes() for p in sorted(project.root.rglob("*.yml")) if p.name != "infra.yml")
    assert b"10.100.0.99" not in tree and b"10.100.0.99" not in project.lock_bytes
    assert b"10.100.0.10" in tree
    assert project("verify").exit_code == 0

"""The generated tree of every example of this project, rendered from its
committed lock (lockfiles/), one byte-exact snapshot per file."""

from __future__ import annotations

import shutil

import pytest
from click.testing import CliRunner

from anklume.cli import main
from tests.support.lockfiles import EXAMPLES, LOCKFILES, example_names

TREE_DIRS = ("inventory", "group_vars", "host_vars")


def build(name: str, root) -> dict[str, bytes]:
    shutil.copy(EXAMPLES / name / "infra.yml", root / "infra.yml")
    shutil.copy(LOCKFILES / f"{name}.lock", root / "anklume.lock")
    result = CliRunner().invoke(main, ["build", "-f", str(root / "infra.yml"), "--no-apply"])
    assert result.exit_code == 0, result.output
    return {p.relative_to(root).as_posix(): p.read_bytes()
            for d in TREE_DIRS for p in sorted((root / d).glob("*.yml"))}


@pytest.fixture(scope="module")
def trees(tmp_path_factory) -> dict[str, dict[str, bytes]]:
    return {name: build(name, tmp_path_factory.mktemp(name)) for name in example_names()}


def _files() -> list[tuple[str, str]]:
    from anklume.lock.codec import decode_lock
    from anklume.model.load import load_infra
    from anklume.render.tree import render_tree

    out = []
    for name in example_names():
        infra = load_infra((EXAMPLES / name / "infra.yml").read_bytes())
        lock = decode_lock((LOCKFILES / f"{name}.lock").read_bytes())
        out += [(name, rel) for rel in render_tree(infra, lock)]
    return out


@pytest.mark.parametrize("name", example_names())
def test_example_file_list(name, trees, snapshot):
    assert sorted(trees[name]) == snapshot


@pytest.mark.parametrize(("name", "rel"), _files(), ids=[f"{n}__{r.replace('/', '__')}" for n, r in _files()])
def test_example_file(name, rel, trees, file_snapshot):
    assert trees[name][rel] == file_snapshot


def test_a_second_build_writes_nothing_and_verify_is_clean(tmp_path):
    build("gpu-workstation", tmp_path)
    mtimes = {p: p.stat().st_mtime_ns for d in TREE_DIRS for p in (tmp_path / d).glob("*.yml")}
    result = CliRunner().invoke(main, ["build", "-f", str(tmp_path / "infra.yml"), "--no-apply"])
    assert "0 file(s) written" in result.output
    assert mtimes == {p: p.stat().st_mtime_ns for d in TREE_DIRS for p in (tmp_path / d).glob("*.yml")}
    result = CliRunner().invoke(main, ["verify", "-f", str(tmp_path / "infra.yml")])
    assert result.exit_code == 0, result.output


def test_verify_prints_a_diff_and_fails_when_a_managed_value_was_edited(tmp_path):
    build("gpu-workstation", tmp_path)
    path = tmp_path / "host_vars" / "gw-webui.yml"
    path.write_text(path.read_text().replace("http://10.100.3.10:11434", "http://10.100.3.99:11434")
                    + "my_var: kept\n")
    result = CliRunner().invoke(main, ["verify", "-f", str(tmp_path / "infra.yml")])
    assert result.exit_code == 1
    assert "-open_webui_ollama_url: http://10.100.3.99:11434" in result.output
    assert "+open_webui_ollama_url: http://10.100.3.10:11434" in result.output
    CliRunner().invoke(main, ["build", "-f", str(tmp_path / "infra.yml"), "--no-apply"])
    assert path.read_text().endswith("my_var: kept\n")
    assert CliRunner().invoke(main, ["verify", "-f", str(tmp_path / "infra.yml")]).exit_code == 0

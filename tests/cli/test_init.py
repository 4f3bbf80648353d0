"""`anklume init`: a starter or an example where there is no infra.yml, never an overwrite,
`.gitignore` entries, and in a git work tree `.gitattributes` and the drivers in the
repository's own config; a second run changes nothing.  The examples ship in the package."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from anklume.actions.init import ATTRIBUTES_LINE, STARTER, driver_config
from anklume.cli import main
from anklume.model.load import load_infra

REPO = Path(__file__).resolve().parents[2]
GIT_ENV = {"GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}


def init(root: Path, *args: str):
    return CliRunner().invoke(main, ["init", "-f", str(root / "infra.yml"), *args], env=GIT_ENV,
                              catch_exceptions=False)


def files(root: Path) -> dict[str, tuple[bytes, int]]:
    return {p.relative_to(root).as_posix(): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*")) if p.is_file() and ".git/" not in p.as_posix() + "/"
            and not p.relative_to(root).as_posix().startswith(".git/")}


def git(root: Path, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    return subprocess.run(["git", *args], cwd=root, env={**env, **GIT_ENV}, check=True, capture_output=True,
                          text=True).stdout


def test_an_empty_folder_gets_a_starter_that_validates_and_gitignore_entries(tmp_path):
    result = init(tmp_path)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "infra.yml").read_text() == STARTER
    infra = load_infra(STARTER.encode(), "infra.yml")
    assert list(infra.domains) == ["lab"] and list(infra.domains["lab"].machines) == ["lab-box"]
    assert ".*.anklume-tmp\n" in (tmp_path / ".gitignore").read_text()
    assert "not in a git work tree" in result.output
    assert not (tmp_path / ".gitattributes").exists()


def test_a_second_run_changes_nothing_and_an_existing_infra_yml_is_never_touched(tmp_path):
    (tmp_path / "infra.yml").write_text("project_name: mine\ndomains: {}\n")
    (tmp_path / ".gitignore").write_text("*.pyc")  # no final newline
    assert init(tmp_path).exit_code == 0
    assert (tmp_path / "infra.yml").read_text() == "project_name: mine\ndomains: {}\n"
    assert (tmp_path / ".gitignore").read_text().startswith("*.pyc\n# anklume")
    before = files(tmp_path)
    again = init(tmp_path)
    assert again.exit_code == 0 and "wrote" not in again.output and "added" not in again.output
    assert files(tmp_path) == before


def test_in_a_git_work_tree_the_drivers_are_registered_once(tmp_path):
    git(tmp_path, "init", "-q")
    (tmp_path / ".gitattributes").write_text("*.png binary\n")
    result = init(tmp_path)
    assert result.exit_code == 0, result.output
    assert (tmp_path / ".gitattributes").read_text() == f"*.png binary\n{ATTRIBUTES_LINE}\n"
    config = {key: git(tmp_path, "config", "--local", "--get", key).strip() for key in driver_config()}
    assert config == driver_config()
    assert config["merge.anklume.driver"].endswith(" -m anklume lock-merge %O %A %B %P")
    assert config["merge.anklume.driver"].startswith(sys.executable)
    assert git(tmp_path, "check-attr", "merge", "diff", "--", "anklume.lock") == (
        "anklume.lock: merge: anklume\nanklume.lock: diff: anklume\n")
    before, config_before = files(tmp_path), (tmp_path / ".git/config").read_bytes()
    again = init(tmp_path)
    assert "kept the lock's merge and diff drivers" in again.output
    assert files(tmp_path) == before and (tmp_path / ".git/config").read_bytes() == config_before


def test_a_project_in_a_subfolder_gets_its_own_gitattributes(tmp_path):
    git(tmp_path, "init", "-q")
    project = tmp_path / "infra" / "lab"
    assert init(project).exit_code == 0
    assert (project / ".gitattributes").read_text() == f"{ATTRIBUTES_LINE}\n"
    assert not (tmp_path / ".gitattributes").exists()
    assert git(project, "check-attr", "merge", "--", "anklume.lock") == "anklume.lock: merge: anklume\n"


def test_an_example_is_copied(tmp_path):
    result = init(tmp_path, "--example", "gpu-workstation")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "infra.yml").read_bytes() == (REPO / "examples/gpu-workstation/infra.yml").read_bytes()
    assert (tmp_path / "README.md").read_bytes() == (REPO / "examples/gpu-workstation/README.md").read_bytes()
    before = files(tmp_path)
    assert init(tmp_path, "--example", "gpu-workstation").exit_code == 0  # the same file: nothing to do
    assert files(tmp_path) == before


def test_an_example_never_overwrites(tmp_path):
    (tmp_path / "infra.yml").write_text("project_name: mine\ndomains: {}\n")
    before = files(tmp_path)
    result = init(tmp_path, "--example", "developer")
    assert result.exit_code == 1
    assert "exists: --example never overwrites it; nothing was written" in result.output
    assert files(tmp_path) == before


def test_unknown_example_and_the_list(tmp_path):
    result = init(tmp_path, "--example", "nope")
    assert result.exit_code == 1 and "no example named 'nope'" in result.output and "developer" in result.output
    assert not (tmp_path / "infra.yml").exists()
    listed = init(tmp_path, "--example", "list")
    assert listed.output.split() == sorted(p.parent.name for p in (REPO / "examples").glob("*/infra.yml"))


def test_the_examples_ship_inside_the_package(tmp_path):
    """What a wheel holds: setup.py's build_py copies examples/ into anklume/examples."""
    build = tmp_path / "lib"
    subprocess.run([sys.executable, "setup.py", "-q", "build_py", "--build-lib", str(build)], cwd=REPO,
                   check=True, capture_output=True)
    shipped = sorted(p.parent.name for p in (build / "anklume/examples").glob("*/infra.yml"))
    assert shipped == sorted(p.parent.name for p in (REPO / "examples").glob("*/infra.yml"))
    found = subprocess.run([sys.executable, "-c", "from anklume.actions.init import examples_dir; print(examples_dir())"],
                           cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(build)}, check=True, capture_output=True,
                           text=True).stdout.strip()
    assert found == str(build / "anklume" / "examples")

"""``.pre-commit-hooks.yaml``: the two hooks docs/git.md promises, each an anklume command that
passes on a fresh project and fails on the problem it is for."""

from __future__ import annotations

import re
import shlex
import shutil
from pathlib import Path

import yaml
from click.testing import CliRunner

from anklume.cli import main
from tests.support.lockfiles import EXAMPLES, LOCKFILES

HOOKS = {h["id"]: h for h in yaml.safe_load((Path(__file__).resolve().parents[2] / ".pre-commit-hooks.yaml").read_text())}


def run_hook(hook_id: str, root: Path):
    argv = shlex.split(HOOKS[hook_id]["entry"])
    assert argv[0] == "anklume"
    return CliRunner().invoke(main, [*argv[1:], "-f", str(root / "infra.yml")])  # the `args:` a sub-folder adds


def test_the_hooks_and_what_they_run():
    assert set(HOOKS) == {"anklume-lock-check", "anklume-verify"}
    assert HOOKS["anklume-lock-check"]["entry"] == "anklume lock --check"
    assert HOOKS["anklume-verify"]["entry"] == "anklume verify"
    for hook in HOOKS.values():
        assert hook["language"] == "python" and hook["pass_filenames"] is False
    files = re.compile(HOOKS["anklume-verify"]["files"])
    assert files.search("lab/infra.yml") and files.search("host_vars/m.yml") and not files.search("README.md")
    assert not re.compile(HOOKS["anklume-lock-check"]["files"]).search("host_vars/m.yml")


def test_the_hooks_pass_on_a_fresh_project_and_fail_on_a_stale_lock_or_an_edited_tree(tmp_path):
    shutil.copy(EXAMPLES / "developer" / "infra.yml", tmp_path / "infra.yml")
    shutil.copy(LOCKFILES / "developer.lock", tmp_path / "anklume.lock")
    assert CliRunner().invoke(main, ["build", "-f", str(tmp_path / "infra.yml"), "--no-apply"]).exit_code == 0
    assert run_hook("anklume-lock-check", tmp_path).exit_code == 0
    assert run_hook("anklume-verify", tmp_path).exit_code == 0
    managed = next((tmp_path / "host_vars").glob("*.yml"))
    managed.write_text(managed.read_text().replace("instance_name:", "instance_name: x", 1))
    assert run_hook("anklume-verify", tmp_path).exit_code == 1
    infra = tmp_path / "infra.yml"
    infra.write_text(infra.read_text().replace('subnet_id: 0', 'subnet_id: 9', 1))
    assert run_hook("anklume-lock-check", tmp_path).exit_code == 1

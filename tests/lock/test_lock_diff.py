"""`anklume lock --diff [REV|PATH]`: the pins changed between two locks, grouped, one line each;
`--json` for tools; the git diff driver's view of a lock.  The outputs are syrupy snapshots
(tests/lock/__snapshots__/test_lock_diff.ambr: `pytest --snapshot-update` rewrites them)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import msgspec
import pytest
from click.testing import CliRunner

from anklume.cli import main
from anklume.lock.codec import decode_lock, encode_lock
from anklume.lock.schema import GpuLocked, OllamaLocked
from tests.support.lockfiles import LOCKFILES

BASE = LOCKFILES / "gpu-workstation.lock"


def changed_lock() -> bytes:
    """gpu-workstation's lock after a day of changes: every kind of pin change."""
    lock = decode_lock(BASE.read_bytes())
    other = decode_lock((LOCKFILES / "developer.lock").read_bytes())
    buster = lock.images["images:debian/buster"]
    moved = msgspec.structs.replace(buster, locked=msgspec.structs.replace(
        buster.locked, serial="20200305_22:10", fingerprint="f" * 64))
    ollama = msgspec.structs.replace(lock.ollama, locked=OllamaLocked(
        version="0.13.0", asset="ollama-linux-amd64.tgz", sha256="c" * 64,
        url="https://github.com/ollama/ollama/releases/download/v0.13.0/ollama-linux-amd64.tgz"))
    gpu = lock.gpus["gw-llm"]
    gpu = msgspec.structs.replace(gpu, locked=GpuLocked(pci="0000:00:07.0", vendor_id="10de", product_id="2335",
                                                        model="NVIDIA H200", uuid="GPU-0b2d6e1a-aaaa", vram_mib=143771))
    new = msgspec.structs.replace(
        lock, images={"images:debian/buster": moved, "images:debian/stretch": other.images["images:debian/stretch"]},
        ollama=ollama, open_webui=None, models={"llama3.2:3b": lock.models["llama3.2:3b"]}, gpus={"gw-llm": gpu})
    return encode_lock(new)


@pytest.fixture
def project(tmp_path):
    root = tmp_path / "proj"
    root.mkdir()
    (root / "anklume.lock").write_bytes(changed_lock())
    shutil.copy(BASE, tmp_path / "old.lock")
    return root


def lock_diff(root: Path, *args: str):
    return CliRunner().invoke(main, ["lock", "-f", str(root / "infra.yml"), "--diff", *args], catch_exceptions=False)


def test_diff_against_a_lock_file(project, snapshot):
    result = lock_diff(project, str(project.parent / "old.lock"))
    assert result.exit_code == 0, result.output
    assert result.output.replace(str(project.parent), "TMP") == snapshot


def test_diff_as_json(project, snapshot):
    result = lock_diff(project, str(project.parent / "old.lock"), "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert [(c["group"], c["name"], c["change"]) for c in doc["changes"]] == [
        ("images", "images:debian/buster", "changed"), ("images", "images:debian/stretch", "added"),
        ("ollama", "ollama", "changed"), ("open_webui", "open-webui", "removed"), ("models", "gemma:2b", "removed"),
        ("gpus", "gw-llm", "changed")]
    assert doc["changes"][4]["old"]["pin"]["locked"]["digest"].startswith("sha256:b50d6c999e59")
    assert result.output.replace(str(project.parent), "TMP") == snapshot


def test_no_change(project):
    (project / "anklume.lock").write_bytes(BASE.read_bytes())
    result = lock_diff(project, str(project.parent / "old.lock"))
    assert result.exit_code == 0
    assert result.output == f"no pin changed between {project.parent / 'old.lock'} and anklume.lock\n"


def test_diff_against_git_revisions(project, snapshot):
    def git(*args):
        subprocess.run(["git", *args], cwd=project, check=True, capture_output=True,
                       env={"GIT_CONFIG_GLOBAL": "/dev/null", "GIT_CONFIG_NOSYSTEM": "1", "PATH": "/usr/bin:/bin",
                            "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@x", "GIT_COMMITTER_NAME": "t",
                            "GIT_COMMITTER_EMAIL": "t@x"})
    new = (project / "anklume.lock").read_bytes()
    git("init", "-q", "-b", "main")
    (project / "anklume.lock").write_bytes(BASE.read_bytes())
    git("add", "anklume.lock")
    git("commit", "-q", "-m", "base")
    (project / "anklume.lock").write_bytes(new)
    assert lock_diff(project).output == lock_diff(project, str(project.parent / "old.lock")).output.replace(
        str(project.parent / "old.lock"), "HEAD:anklume.lock")  # the default: HEAD
    git("commit", "-q", "-am", "day of changes")
    first = lock_diff(project, "HEAD~1")
    assert first.exit_code == 0 and "6 pins changed" in first.output
    assert lock_diff(project).output == "no pin changed between HEAD:anklume.lock and anklume.lock\n"
    (project / "anklume.lock").rename(project / "x")
    git("commit", "-q", "-am", "no lock")
    (project / "x").rename(project / "anklume.lock")
    every = lock_diff(project)  # a revision without a lock: every pin is added
    assert every.output == snapshot
    bad = lock_diff(project, "nosuchrev")
    assert bad.exit_code == 1 and "nosuchrev: neither a file nor a git revision" in bad.output


def test_diff_outside_git_names_the_problem(project):
    result = lock_diff(project)
    assert result.exit_code == 1
    assert "HEAD: not a file" in result.output


def test_textconv_reads_as_pins(snapshot):
    result = CliRunner().invoke(main, ["lock-textconv", str(BASE)])
    assert result.exit_code == 0
    assert result.output == snapshot
    garbage = CliRunner().invoke(main, ["lock-textconv", str(LOCKFILES.parent / "README.md")])
    assert garbage.exit_code == 0 and garbage.output.startswith("# ")  # not a lock: shown as it is

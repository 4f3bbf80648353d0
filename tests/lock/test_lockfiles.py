"""The committed locks of the examples are reproducible to the byte."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.support.lockfiles import LOCKFILES, REPO, example_names, lock_example


@pytest.mark.parametrize("name", example_names())
def test_relocking_an_example_gives_the_committed_bytes(name, mirror, tmp_path):
    assert lock_example(name, mirror.env(), tmp_path) == (LOCKFILES / f"{name}.lock").read_bytes()


def test_every_example_has_a_committed_lock():
    assert sorted(p.stem for p in LOCKFILES.glob("*.lock")) == example_names()


def test_another_process_and_another_mirror_port_give_the_same_bytes(tmp_path):
    """A fresh interpreter (other hash seed), its own mirror on another port, its own cache."""
    code = ("import sys; from pathlib import Path; from tests.support.mirror import RecordedMirror;"
            "from tests.support.lockfiles import lock_example\n"
            "with RecordedMirror() as m: sys.stdout.buffer.write(lock_example('llm-supervisor', m.env(), Path(sys.argv[1])))")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], cwd=REPO, capture_output=True,
                         check=True, env={"PYTHONHASHSEED": "12345", "PATH": "/usr/bin:/bin"}).stdout
    assert out == (LOCKFILES / "llm-supervisor.lock").read_bytes()

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from anklume.cli import main
from tests.support.lockfiles import EXAMPLES, H200_INVENTORY, H200_SMI
from tests.support.mirror import RecordedMirror


@pytest.fixture
def mirror():
    with RecordedMirror() as m:
        yield m


class Cli:
    """Runs ``anklume`` in-process against a project directory, with the mirror's environment."""

    def __init__(self, root: Path, env: dict[str, str]):
        self.root = root
        self.env = env

    def __call__(self, *args: str, env: dict[str, str] | None = None):
        command, *rest = args
        result = CliRunner().invoke(main, [command, "-f", str(self.root / "infra.yml"), *rest],
                                    env={**self.env, **(env or {})}, catch_exceptions=False)
        return result

    @property
    def lock_bytes(self) -> bytes:
        return (self.root / "anklume.lock").read_bytes()


@pytest.fixture
def project(tmp_path, mirror):
    """A copy of examples/gpu-workstation, the mirror's env and a private cache."""
    root = tmp_path / "proj"
    shutil.copytree(EXAMPLES / "gpu-workstation", root)
    env = {**mirror.env(), "ANKLUME_CACHE_DIR": str(tmp_path / "cache")}
    return Cli(root, env)


GPU_ARGS = ("--gpu-inventory", str(H200_INVENTORY), "--nvidia-smi", str(H200_SMI))

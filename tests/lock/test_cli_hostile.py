"""Hostile input through the command line: every case is a one-screen error, exit 1, no
traceback, and nothing written."""

from __future__ import annotations

import shutil

import msgspec
import pytest
from click.testing import CliRunner

from anklume.cli import main
from anklume.model.schema import Infra
from anklume.project import load_infra_memo
from tests.support.lockfiles import EXAMPLES, LOCKFILES

COMMANDS = (["lock", "--check"], ["build", "--no-apply"], ["verify"], ["graph"])


def files(root) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def built(tmp_path):
    """examples/gpu-workstation with its committed lock, built (--no-apply)."""
    root = tmp_path / "proj"
    root.mkdir()
    shutil.copy(EXAMPLES / "gpu-workstation" / "infra.yml", root / "infra.yml")
    shutil.copy(LOCKFILES / "gpu-workstation.lock", root / "anklume.lock")
    assert CliRunner().invoke(main, ["build", "-f", str(root / "infra.yml"), "--no-apply"]).exit_code == 0
    return root


def run(root, argv, env=None):
    command, *rest = argv
    return CliRunner().invoke(main, [command, "-f", str(root / "infra.yml"), *rest],
                              env={"ANKLUME_CACHE_DIR": str(root.parent / "cache"), **(env or {})})


def assert_clean_failure(root, argv, before, *words, env=None):
    result = run(root, argv, env)
    assert result.exit_code == 1, (argv, result.output, result.exception)
    assert result.exception is None or isinstance(result.exception, SystemExit), (argv, result.exception)
    assert "Traceback" not in result.output
    for word in words:
        assert word in result.output, (argv, result.output)
    assert files(root) == before, argv
    return result


@pytest.mark.parametrize("old, new, words", [
    ('description: "Ansible controller"', 'description: "\\ud800"', ("surrogate", "infra.yml:24")),
    ("roles: [base_system]\n\n  perso:", "roles: [base_system]\n        vars: {big: 99999999999999999999999999}\n"
                                         "\n  perso:", ("64 bits", "vars.big")),
    ('limits.cpu: "4"', "limits.cpu: 18446744073709551616", ("64 bits", "config.limits.cpu")),
    ("size: 50GiB", "size: 1000000000000000000000000000000", ("64 bits", "storage_volumes.ollama-models.size")),
])
def test_values_no_encoder_can_hold_are_problems(built, old, new, words):
    text = (built / "infra.yml").read_text()
    assert text.count(old) == 1
    (built / "infra.yml").write_text(text.replace(old, new))
    before = files(built)
    for argv in COMMANDS:
        assert_clean_failure(built, argv, before, *words)


def test_the_memo_skips_a_model_it_cannot_encode(tmp_path, monkeypatch):
    """Loading refuses such values; if one got through, it would cost the memo, not the command."""
    import anklume.project as project

    good = msgspec.json.decode(b'{"project_name": "p", "global": {}, "domains": {}}', type=Infra)
    odd = msgspec.structs.replace(good, project_name="\ud800")
    monkeypatch.setattr(project, "load_infra", lambda data, file: odd)
    assert load_infra_memo(b"x", "infra.yml", tmp_path) is odd
    assert list(tmp_path.iterdir()) == []

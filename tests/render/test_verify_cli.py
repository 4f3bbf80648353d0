"""``anklume verify`` on a tree whose files were tampered with: a readable diff, and a
clear error (no traceback) for a file it cannot or will not read."""

from __future__ import annotations

import shutil

import pytest

from click.testing import CliRunner

from anklume.cli import main
from tests.support.lockfiles import EXAMPLES, LOCKFILES


def _built(root):
    shutil.copy(EXAMPLES / "gpu-workstation" / "infra.yml", root / "infra.yml")
    shutil.copy(LOCKFILES / "gpu-workstation.lock", root / "anklume.lock")
    assert CliRunner().invoke(main, ["build", "-f", str(root / "infra.yml"), "--no-apply"]).exit_code == 0
    return root


def _verify(root):
    return CliRunner().invoke(main, ["verify", "-f", str(root / "infra.yml")])


def test_a_difference_on_the_last_managed_line_keeps_the_diff_and_summary_apart(tmp_path):
    root = _built(tmp_path)
    path = root / "host_vars" / "gw-webui.yml"
    text = path.read_text()
    sha = text.split("open_webui_wheel_sha256: ", 1)[1].split("\n", 1)[0]  # the last managed line
    path.write_text(text.replace(sha, "0" * 64))
    result = _verify(root)
    assert result.exit_code == 1
    lines = result.output.splitlines()
    assert " # === END MANAGED ===" in lines
    assert "verify: 1 of 14 generated file(s) differ from the lock" in lines


def test_a_generated_path_that_is_a_folder_or_a_link_is_an_error_not_a_traceback(tmp_path):
    root = _built(tmp_path)
    path = root / "host_vars" / "gw-perso.yml"
    path.unlink()
    path.mkdir()
    result = _verify(root)
    assert result.exit_code == 1
    assert "host_vars/gw-perso.yml is a folder" in result.output and "Traceback" not in result.output
    path.rmdir()
    path.symlink_to(root / "host_vars" / "gw-dev.yml")
    result = _verify(root)
    assert result.exit_code == 1
    assert "host_vars/gw-perso.yml is a symbolic link" in result.output


def test_names_are_printed_as_they_are_not_as_console_markup(tmp_path):
    root = _built(tmp_path)
    (root / "host_vars" / "[bold]old.yml").write_text("a: 1\n")
    result = CliRunner().invoke(main, ["build", "-f", str(root / "infra.yml"), "--no-apply"])
    assert result.exit_code == 0
    assert "host_vars/[bold]old.yml" in result.output


def test_an_unreadable_lock_names_the_file(tmp_path):
    root = _built(tmp_path)
    (root / "anklume.lock").unlink()
    (root / "anklume.lock").mkdir()
    for command in (["verify"], ["lock", "--check"]):
        result = CliRunner().invoke(main, [command[0], "-f", str(root / "infra.yml"), *command[1:]])
        assert result.exit_code == 1
        assert "anklume.lock: cannot read it" in result.output and "Traceback" not in result.output


def _build(root):
    return CliRunner().invoke(main, ["build", "-f", str(root / "infra.yml"), "--no-apply"])


def _tree(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*.yml"))}


@pytest.mark.parametrize("damage, line, words", [
    (lambda text: text.replace("# === MANAGED BY infra.yml ===\n", "", 1), 16, "no '# === MANAGED BY"),
    (lambda text: text + text.removeprefix("---\n"), 20, "appears twice (lines 2 and 20)"),
])
def test_a_deleted_begin_line_or_a_pasted_section_is_refused_by_build_and_reported_by_verify(
        tmp_path, damage, line, words):
    """Both used to leave stale managed keys after END (overriding the new ones) while
    build appended a new section and verify passed."""
    root = _built(tmp_path)
    path = root / "host_vars" / "gw-dev.yml"
    path.write_text(damage(path.read_text()))
    before = _tree(root)
    result = _build(root)
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert f"host_vars/gw-dev.yml: line {line}: " in result.output and words in result.output, result.output
    assert _tree(root) == before
    result = _verify(root)
    assert result.exit_code == 1, result.output
    assert f"host_vars/gw-dev.yml: line {line}: " in result.output and words in result.output, result.output


def test_verify_reports_managed_keys_set_outside_the_section(tmp_path):
    root = _built(tmp_path)
    path = root / "host_vars" / "gw-dev.yml"
    text = path.read_text()
    path.write_text(text + "mine: 1\ninstance_ip: 10.100.2.99\n")
    result = _verify(root)
    assert result.exit_code == 1, result.output
    line = len(text.splitlines()) + 2
    assert (f"host_vars/gw-dev.yml:{line}: the managed key 'instance_ip' is also set outside the managed "
            "section") in result.output, result.output
    assert "verify: 1 of 14 generated file(s) differ from the lock" in result.output


def test_marker_text_in_a_description_converges(tmp_path):
    from tests.lock.conftest import GPU_ARGS
    from tests.support.mirror import RecordedMirror

    root = _built(tmp_path)
    infra = root / "infra.yml"
    infra.write_text(infra.read_text().replace('"Development workspace"',
                                               '"before # === END MANAGED === after\\n# === END MANAGED ===\\n"'))
    with RecordedMirror() as mirror:
        env = {**mirror.env(), "ANKLUME_CACHE_DIR": str(tmp_path / "cache")}
        assert CliRunner().invoke(main, ["lock", "-f", str(infra), *GPU_ARGS], env=env).exit_code == 0
    assert _build(root).exit_code == 0
    first = _tree(root)
    result = _build(root)
    assert result.exit_code == 0 and "tree: 0 file(s) written, 14 unchanged" in result.output
    assert _tree(root) == first
    assert _verify(root).exit_code == 0

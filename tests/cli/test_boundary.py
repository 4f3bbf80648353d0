"""The CLI's error boundary: a user error is one screen; a bug says it is one, and shows its
traceback only with -v."""

from __future__ import annotations

from click.testing import CliRunner

from anklume.cli import main


def _broken(*_args, **_kwargs):
    return {}["pool"]


def test_a_bug_is_named_as_one_without_a_traceback(monkeypatch, tmp_path):
    monkeypatch.setattr("anklume.actions.explain.do_graph", _broken)
    result = CliRunner().invoke(main, ["graph", "-f", str(tmp_path / "infra.yml")])
    assert result.exit_code == 1
    assert "error: KeyError: 'pool'" in result.output and "this is a bug in anklume" in result.output
    assert "Traceback" not in result.output


def test_verbose_shows_the_bug_s_traceback(monkeypatch, tmp_path):
    monkeypatch.setattr("anklume.actions.explain.do_graph", _broken)
    result = CliRunner().invoke(main, ["-v", "graph", "-f", str(tmp_path / "infra.yml")])
    assert isinstance(result.exception, KeyError)


def test_a_user_error_stays_one_line(tmp_path):
    result = CliRunner().invoke(main, ["graph", "-f", str(tmp_path / "infra.yml")])
    assert result.exit_code == 1
    assert result.output.startswith("error: ") and "no such file" in result.output
    assert "bug" not in result.output and "Traceback" not in result.output

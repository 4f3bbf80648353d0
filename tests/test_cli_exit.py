"""Exit codes of the command line: 2 means "changes pending" (``build --plan``) and nothing
else; a usage error (unknown option, bad value, no such command) exits 3."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from anklume.cli import main
from anklume.errors import EXIT_CHANGES, EXIT_USAGE


@pytest.mark.parametrize("argv", [[], ["nope"], ["build", "--jobs", "0"], ["build", "--jobs", "x"],
                                  ["lock", "--bogus"], ["--bogus"], ["verify", "-f"],
                                  ["lock", "--gpu-inventory", "/no/such/file"], ["lock", "--diff", "--check"],
                                  ["lock", "--json"], ["lock", "--diff", "HEAD", "--update"], ["init", "--bogus"]])
def test_usage_errors_exit_3_not_the_2_of_changes_pending(argv):
    result = CliRunner().invoke(main, argv)
    assert EXIT_USAGE == 3 and EXIT_CHANGES == 2
    assert result.exit_code == EXIT_USAGE, (result.output, result.exception)
    assert "Traceback" not in result.output


@pytest.mark.parametrize("argv", [["--help"], ["--version"], ["build", "--help"]])
def test_help_and_version_exit_0(argv):
    assert CliRunner().invoke(main, argv).exit_code == 0


def test_the_readme_documents_every_exit_code():
    from tests.support.lockfiles import REPO

    readme = (REPO / "README.md").read_text()
    rows = readme.split("## Commands and exit codes", 1)[1].split("\n## ", 1)[0].splitlines()
    assert any("usage error" in row and row.rstrip().endswith("| 3 |") for row in rows)
    assert any("Ctrl-C" in row and row.rstrip().endswith("| 130 |") for row in rows)

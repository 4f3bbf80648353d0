"""Packaging hook: the examples (``examples/`` at the repository's root) ship inside the package
as ``anklume/examples``, so that ``anklume init --example NAME`` works from a pip-installed
anklume (a source checkout, editable installs included, reads ``examples/`` itself).  Everything
else is in pyproject.toml."""

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

EXAMPLES = Path(__file__).resolve().parent / "examples"


class BuildWithExamples(build_py):
    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False) or not EXAMPLES.is_dir():
            return
        for source in sorted(EXAMPLES.glob("*/*")):
            if source.is_file() and not source.name.startswith("."):
                target = Path(self.build_lib, "anklume", "examples", source.parent.name, source.name)
                self.mkpath(str(target.parent))
                self.copy_file(str(source), str(target))


setup(cmdclass={"build_py": BuildWithExamples})

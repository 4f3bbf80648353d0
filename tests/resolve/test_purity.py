"""The parsers stay pure: they import no network, process or Incus client code."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import anklume

PURE = ["resolve/simplestreams.py", "resolve/ollama.py", "resolve/gpus.py", "resolve/sources.py",
        "resolve/fetched.py"]
FORBIDDEN = ("urllib", "socket", "ssl", "subprocess", "pylxd", "http", "requests", "anklume.backends",
             "anklume.resolve.http", "anklume.resolve.inventory")


class _RuntimeImports(ast.NodeVisitor):
    """Modules imported at run time (``if TYPE_CHECKING:`` blocks are type-only, skipped)."""

    def __init__(self) -> None:
        self.names: set[str] = set()

    def visit_If(self, node: ast.If) -> None:  # noqa: N802
        if not (isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"):
            self.generic_visit(node)

    def visit_Import(self, node: ast.Import) -> None:  # noqa: N802
        self.names |= {alias.name for alias in node.names}

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:  # noqa: N802
        self.names.add(node.module or "")


def is_forbidden(module: str) -> bool:
    return any(module == bad or module.startswith(bad + ".") for bad in FORBIDDEN)


@pytest.mark.parametrize("relative", PURE)
def test_pure_modules_import_no_io_modules(relative):
    visitor = _RuntimeImports()
    visitor.visit(ast.parse((Path(anklume.__file__).parent / relative).read_text()))
    assert sorted(m for m in visitor.names if is_forbidden(m)) == []


def test_importing_them_loads_no_io_module():
    modules = [f"anklume.{p.removesuffix('.py').replace('/', '.')}" for p in PURE]
    io_modules = ["urllib.request", "http.client", "socket", "ssl", "subprocess", "pylxd", "requests"]
    code = (
        "import sys\n"
        f"for name in {modules!r}: __import__(name)\n"
        f"print(sorted(m for m in {io_modules!r} if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"

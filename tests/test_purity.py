"""The pure core must not reach the network, the host or a daemon: every module of model/, lock/,
units/, render/ and resolve/ unless it is on the SHELL list (render's file writer, the HTTP
fetcher, the resolvers' wiring), plus ``sources.py``, ``executor.py``, ``jsonsafe.py`` and ``markers.py``.  Two checks per module: its own imports (read from its
source, so a lazy import inside a function is caught too), and what importing
it loads, in a fresh interpreter."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

import anklume

PACKAGE = Path(anklume.__file__).parent
#: The modules of the pure folders that do I/O, each for a reason.
SHELL = {
    "render/write.py": "writes the tree atomically",
    "resolve/http.py": "fetches over HTTP (urllib) with the cache",
    "resolve/inventory.py": "asks the host (Incus, nvidia-smi, ldconfig, the driver's files)",
    "resolve/resolver.py": "wires the fetcher and the Incus reader to the parsers",
}
PURE = sorted(
    rel for folder in ("model", "lock", "units", "render", "resolve")
    for rel in (f"{folder}/{p.name}" for p in (PACKAGE / folder).glob("*.py")) if rel not in SHELL
) + ["executor.py", "sources.py", "jsonsafe.py", "markers.py"]
FORBIDDEN = ("urllib", "socket", "ssl", "subprocess", "pylxd", "ansible_runner", "http", "requests",
             "anklume.backends", "anklume.store", "anklume.provision", "anklume.engine",
             *(f"anklume.{rel.removesuffix('.py').replace('/', '.')}" for rel in SHELL))
LOADED = ["pylxd", "ansible_runner", "urllib.request", "http.client", "socket", "ssl", "subprocess", "requests"]


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


def _forbidden(module: str) -> bool:
    return any(module == bad or module.startswith(bad + ".") for bad in FORBIDDEN)


@pytest.mark.parametrize("relative", PURE)
def test_pure_module_source_imports_no_io(relative):
    visitor = _RuntimeImports()
    visitor.visit(ast.parse((PACKAGE / relative).read_text()))
    assert sorted(m for m in visitor.names if _forbidden(m)) == []


@pytest.mark.parametrize("relative", PURE)
def test_importing_a_pure_module_loads_no_io(relative):
    module = "anklume." + relative.removesuffix(".py").replace("/", ".")
    code = (f"import sys, json, importlib; importlib.import_module({module!r}); "
            f"print(json.dumps([m for m in {LOADED!r} if m in sys.modules]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert json.loads(out) == []

"""The units package stays pure: no network, process or Incus client code."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import anklume
from tests.resolve.test_purity import _RuntimeImports, is_forbidden

UNITS = sorted(p.name for p in (Path(anklume.__file__).parent / "units").glob("*.py"))


@pytest.mark.parametrize("name", UNITS)
def test_units_import_no_io_module(name):
    import ast

    visitor = _RuntimeImports()
    visitor.visit(ast.parse((Path(anklume.__file__).parent / "units" / name).read_text()))
    assert sorted(m for m in visitor.names if is_forbidden(m)) == []


def test_importing_units_loads_no_io_module():
    code = ("import sys\nimport anklume.units.graph, anklume.units.plan, anklume.executor\n"
            "print(sorted(m for m in ['pylxd', 'requests', 'socket', 'subprocess', 'urllib.request'] "
            "if m in sys.modules))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"

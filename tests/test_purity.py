"""The pure core (model, lock, render) must not reach the network, the host or
a daemon: importing it must not import pylxd, ansible_runner, urllib, socket or
subprocess.  Checked in a fresh interpreter, module by module."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

PURE = [
    "anklume.model.load", "anklume.model.validate", "anklume.model.names",
    "anklume.lock.assemble", "anklume.lock.codec", "anklume.lock.gpu", "anklume.lock.keys",
    "anklume.render.tree", "anklume.render.managed", "anklume.render.yamlout",
    "anklume.resolve.gpus", "anklume.resolve.fetched",
]
FORBIDDEN = ["pylxd", "ansible_runner", "urllib.request", "http.client", "socket", "subprocess", "requests"]


@pytest.mark.parametrize("module", PURE)
def test_pure_module_imports_no_io(module):
    code = (f"import sys, json, importlib; importlib.import_module({module!r}); "
            f"print(json.dumps([m for m in {FORBIDDEN!r} if m in sys.modules]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert json.loads(out) == []

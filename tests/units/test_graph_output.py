"""`anklume graph`: the units, their keys and edges (no daemon needed)."""

from __future__ import annotations

import io
import json

from rich.console import Console

from anklume.actions.explain import graph_of
from anklume.backends.incus import IncusBackend
from anklume.units.build import build_units
from anklume.units.key import short
from tests.units.infra import make_infra, make_lock, two_domains


def run(**kw):
    infra = make_infra(two_domains())
    lock = make_lock(infra)
    buf = io.StringIO()
    assert graph_of(None, infra, lock, console=Console(file=buf, width=300), **kw) == 0
    return buf.getvalue(), build_units(infra, lock)


def test_text():
    text, g = run()
    lines = text.splitlines()
    assert lines[0] == f"project:alpha  {short(g['project:alpha'].key)}"
    assert f"instance:beta-app  {short(g['instance:beta-app'].key)}  after project:beta, network:beta, " \
           "profile:beta/default" in lines


def test_dot():
    text, g = run(dot=True)
    assert text.startswith("digraph anklume {")
    assert '"profile:alpha/default" -> "instance:alpha-web";' in text
    assert text.rstrip().endswith("}")


def test_json():
    text, g = run(as_json=True)
    data = json.loads(text)
    assert [d["unit"] for d in data] == [u.uid for u in g]
    assert data[0]["key"] == g["project:alpha"].key


def test_image_sources():
    infra = make_infra(two_domains(image="images:debian/13"))
    lock = make_lock(infra, server="https://images.linuxcontainers.org")
    unit = build_units(infra, lock)["instance:beta-app"]
    backend = IncusBackend("/nonexistent.socket")  # nothing is contacted
    assert backend.instances.source(unit) == {"type": "image", "mode": "pull", "server": "https://images.linuxcontainers.org",
                                     "protocol": "simplestreams", "fingerprint": unit.spec["image"]["fingerprint"]}
    local = build_units(make_infra(two_domains()), make_lock(make_infra(two_domains())))["instance:beta-app"]
    assert backend.instances.source(local) == {"type": "image", "fingerprint": local.spec["image"]["fingerprint"]}

"""run_role: a real role, through ansible-runner and the anklume_incus connection plugin, into a
minimal Debian container of the private incusd."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import pytest

from anklume.backends.incus.reader import IncusReader
from anklume.backends.incus.files import InstanceIO
from anklume.errors import AnklumeError
from anklume.provision.runner import RoleFailed, RoleResult, run_role
from anklume.render.tree import render_tree
from anklume.render.write import apply_tree, diff_tree
from tests.units.infra import make_infra

DOMAIN = "prov"
MACHINE = "prov-m1"
ROLES = Path(__file__).resolve().parents[1] / "fixtures" / "roles"
ROLE_FILES = ROLES / "anklume_probe"
TASKS = ["Create the app directory", "Copy a static text", "Copy a file of the role", "Render the template",
         "Read the static text back", "Stat the rendered file", "Check what the earlier tasks saw",
         "Create the marker once", "Run the broken command"]


def infra_doc() -> dict:
    return {"project_name": "runner-test",
            "global": {"base_subnet": "10.100", "default_os_image": "local:debian-python"},
            "domains": {DOMAIN: {"subnet_id": 60, "machines": {
                MACHINE: {"ip": "10.100.60.10", "roles": ["anklume_probe"], "vars": {"probe_greeting": "world"}},
                "prov-m2": {"ip": "10.100.60.11"}}}}}


@pytest.fixture(scope="module")
def machine(incus, tmp_path_factory):
    """The generated Ansible tree of a one-domain infra, and its machine running in Incus."""
    tree = tmp_path_factory.mktemp("tree")
    apply_tree(diff_tree(tree, render_tree(make_infra(infra_doc()))))
    incus.purge_project(DOMAIN)
    incus.create_project(DOMAIN)
    incus.ensure_debian_python_image(project=DOMAIN)
    incus.incus("launch", "debian-python", MACHINE, "--project", DOMAIN)
    try:
        yield incus, tree
    finally:
        incus.purge_project(DOMAIN)


def _run(incus, tree: Path, work: Path, **kwargs) -> RoleResult:
    options = {"tree_root": tree, "domain": DOMAIN, "machine": MACHINE, "role": "anklume_probe",
               "roles_path": [ROLES], "endpoint": incus.socket, "work_dir": work}
    options.update(kwargs)
    return run_role(**options)


def _cat(io_: InstanceIO, path: str) -> bytes:
    out = io.BytesIO()
    io_.pull(path, out)
    return out.getvalue()


def test_role_runs_then_is_idempotent(machine, tmp_path):
    incus, tree = machine
    events: list[str] = []
    first = _run(incus, tree, tmp_path, extravars={"probe_extra": "from extravars"}, on_event=events.append)
    assert first.tasks == TASKS
    assert first.changed == 5 and first.ok == 8  # directory, 2 copies, template, marker
    assert events[:4] == [f"{t} changed" for t in TASKS[:4]]
    assert events[4:] == ["Read the static text back ok", "Stat the rendered file ok",
                          "Check what the earlier tasks saw ok", "Create the marker once changed",
                          "Run the broken command skipped"]

    inside = InstanceIO(IncusReader(incus.socket), DOMAIN, MACHINE)
    assert _cat(inside, "/opt/probe/static.txt") == b"static content\n"
    assert _cat(inside, "/opt/probe/payload.bin") == (ROLE_FILES / "files" / "payload.bin").read_bytes()
    # host_vars (the machine's vars), group_vars (domain) and extravars all reached the template
    assert _cat(inside, "/opt/probe/greeting.txt") == (
        b"hello world from prov-m1\nproject prov, domain prov, image local:debian-python\nextra from extravars\n")
    modes = inside.exec(["stat", "-c", "%a %n", "/opt/probe/static.txt", "/opt/probe/payload.bin"]).stdout
    assert modes.split(b"\n")[:2] == [b"640 /opt/probe/static.txt", b"600 /opt/probe/payload.bin"]
    assert inside.sha256(["/opt/probe/marker"])["/opt/probe/marker"] == hashlib.sha256(b"").hexdigest()

    again = _run(incus, tree, tmp_path, extravars={"probe_extra": "from extravars"})
    assert again.changed == 0 and again.ok == 8 and again.tasks == TASKS


def test_failed_task_raises_role_failed(machine, tmp_path):
    incus, tree = machine
    events: list[str] = []
    with pytest.raises(RoleFailed) as info:
        _run(incus, tree, tmp_path, extravars={"break_me": True}, on_event=events.append)
    err = info.value
    assert err.task == "Run the broken command" and err.machine == MACHINE and err.role == "anklume_probe"
    assert err.message.startswith("role anklume_probe on prov-m1: task 'Run the broken command' failed: ")
    assert "non-zero return code" in err.message and "rc 4" in err.message
    assert "disk on fire" in err.message
    assert events[-1] == "Run the broken command failed"


def test_unknown_role_is_a_clear_error(machine, tmp_path):
    incus, tree = machine
    with pytest.raises(RoleFailed) as info:
        _run(incus, tree, tmp_path, role="no_such_role")
    assert "role no_such_role on prov-m1: ansible-playbook failed" in info.value.message
    assert "no_such_role" in info.value.reason and "not found" in info.value.reason


def test_machine_not_running_is_unreachable(machine, tmp_path):
    """prov-m2 is in the inventory but has no instance: the plugin's error reaches the message."""
    incus, tree = machine
    with pytest.raises(RoleFailed) as info:
        _run(incus, tree, tmp_path, machine="prov-m2")
    assert info.value.machine == "prov-m2"
    assert "instance 'prov-m2' (project 'prov')" in info.value.message
    assert "not found" in info.value.message.lower()


def test_names_and_inventory_are_checked_first(machine, tmp_path):
    incus, tree = machine
    for field, bad in (("role", "../evil"), ("machine", "../x"), ("domain", "a/b"), ("role", "x y")):
        with pytest.raises(AnklumeError, match=f"invalid {field} name"):
            _run(incus, tree, tmp_path, **{field: bad})
    with pytest.raises(AnklumeError, match="machine ghost is not a host of domain prov"):
        _run(incus, tree, tmp_path, machine="ghost")
    with pytest.raises(AnklumeError, match="cannot read the inventory"):
        _run(incus, tree, tmp_path, domain="other")

"""The Open WebUI pin through ``anklume lock``: examples/gpu-workstation (an ``open_webui``
machine) against the loopback mirror, whose PyPI answers are the recorded open-webui JSON."""

from __future__ import annotations

import json

import pytest

from anklume.errors import InvalidInfra, ResolveError
from anklume.lock.assemble import known_pin_names, lock_infra
from anklume.lock.codec import decode_lock
from anklume.lock.schema import OpenWebUILocked
from anklume.model.load import load_infra
from tests.lock.conftest import GPU_ARGS
from tests.support.recorded import pypi_files, pypi_project

PROJECT = "/pypi/pypi/open-webui/json"
SHA_0_12_4 = "02e9caba96234db3fa17a92e56163b3f7f2b8ca8227fa886b85c178d696483f6"


def edit_infra(project, old: str, new: str) -> None:
    infra = project.root / "infra.yml"
    text = infra.read_text()
    assert old in text
    infra.write_text(text.replace(old, new, 1))


def latest_moved_to(mirror, version: str) -> str:
    """The project answer as if ``version`` were the newest release (a real, recorded one)."""
    doc = pypi_project()
    doc["info"]["version"] = version
    doc["urls"] = doc["releases"][version]
    mirror.files.update(pypi_files(doc, per_version=False, prefix="/pypi"))
    return next(f["digests"]["sha256"] for f in doc["urls"] if f["packagetype"] == "bdist_wheel")


def test_lock_pins_the_wheel_of_the_latest_release(project, mirror):
    result = project("lock", *GPU_ARGS)
    assert result.exit_code == 0, result.output
    assert f"+ open-webui: v0.12.4 {SHA_0_12_4[:12]}" in result.output
    pin = decode_lock(project.lock_bytes).open_webui
    assert pin.original.version == "latest"
    assert pin.locked.filename == "open_webui-0.12.4-py3-none-any.whl" and pin.locked.size == 106366595
    assert mirror.hits(PROJECT) == 1


def test_latest_moving_upstream_changes_nothing_until_update_names_it(project, mirror):
    project("lock", *GPU_ARGS)
    before = project.lock_bytes
    sha = latest_moved_to(mirror, "0.12.3")
    result = project("lock")
    assert result.exit_code == 0 and "up to date" in result.output
    assert project.lock_bytes == before
    mirror.requests.clear()
    result = project("lock", "--update", "open-webui")
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0] == f"~ open-webui: v0.12.4 {SHA_0_12_4[:12]} -> v0.12.3 {sha[:12]}"
    assert mirror.requests == [PROJECT]  # only PyPI was asked
    old, new = decode_lock(before), decode_lock(project.lock_bytes)
    assert new.open_webui.locked.sha256 == sha
    assert (new.images, new.ollama, new.models, new.gpus) == (old.images, old.ollama, old.models, old.gpus)


def test_other_updates_keep_the_pin_byte_identical(project, mirror):
    project("lock", *GPU_ARGS)
    before = json.loads(project.lock_bytes)["open_webui"]
    latest_moved_to(mirror, "0.12.3")
    assert project("lock", "--update", "gemma:2b", "ollama").exit_code == 0
    assert json.loads(project.lock_bytes)["open_webui"] == before


def test_a_new_version_in_infra_yml_makes_the_lock_stale_and_is_resolved_alone(project, mirror):
    project("lock", *GPU_ARGS)
    old = decode_lock(project.lock_bytes)
    edit_infra(project, 'ollama:\n    version: "0.13.1"\n',
               'ollama:\n    version: "0.13.1"\n  open_webui:\n    version: "0.12.3"\n')
    assert project("lock", "--check").exit_code == 1
    mirror.requests.clear()
    result = project("lock")
    assert result.exit_code == 0, result.output
    assert mirror.requests == ["/pypi/pypi/open-webui/0.12.3/json"]
    new = decode_lock(project.lock_bytes)
    assert (new.open_webui.original.version, new.open_webui.locked.version) == ("0.12.3", "0.12.3")
    assert (new.images, new.ollama, new.models, new.gpus) == (old.images, old.ollama, old.models, old.gpus)
    assert project("lock", "--check").exit_code == 0


def test_spelling_out_the_default_keeps_the_lock_fresh(project):
    project("lock", *GPU_ARGS)
    edit_infra(project, 'ollama:\n    version: "0.13.1"\n',
               'ollama:\n    version: "0.13.1"\n  open_webui: {version: latest}\n')
    assert project("lock", "--check").exit_code == 0


def test_an_unknown_version_names_where_it_is_asked_and_the_closest(project):
    edit_infra(project, 'ollama:\n    version: "0.13.1"\n',
               'ollama:\n    version: "0.13.1"\n  open_webui:\n    version: "0.12.9"\n')
    result = project("lock", *GPU_ARGS)
    assert result.exit_code == 1
    assert ("error: infra.yml: global.open_webui.version (needed by domains.homelab.machines.gw-webui): "
            "open-webui 0.12.9 is not on PyPI") in result.output
    assert "the closest versions PyPI lists: 0.12.3, 0.12.4" in result.output
    assert "Traceback" not in result.output
    assert not (project.root / "anklume.lock").exists()


def test_dropping_the_role_drops_the_pin_and_its_name(project):
    project("lock", *GPU_ARGS)
    edit_infra(project, "roles: [base_system, open_webui]", "roles: [base_system]")
    result = project("lock")
    assert result.exit_code == 0, result.output
    assert f"- open-webui: v0.12.4 {SHA_0_12_4[:12]}" in result.output
    assert decode_lock(project.lock_bytes).open_webui is None
    result = project("lock", "--update", "open-webui")
    assert result.exit_code == 1 and "no pin named open-webui" in result.output


def test_the_pypi_source_comes_from_infra_yml_when_the_environment_is_silent(project, mirror):
    edit_infra(project, "  default_user: root\n", f"  default_user: root\n  sources:\n    pypi: {mirror.url}/pypi/\n")
    assert project("lock", *GPU_ARGS, env={"ANKLUME_PYPI": ""}).exit_code == 0
    assert decode_lock(project.lock_bytes).open_webui.locked.sha256 == SHA_0_12_4
    edit_infra(project, f"pypi: {mirror.url}/pypi/", "pypi: ftp://mirror")
    result = project("lock", "--update", "open-webui", env={"ANKLUME_PYPI": ""})
    assert result.exit_code == 1
    assert "global.sources.pypi: 'ftp://mirror' is not an http(s) URL" in result.output


def test_offline_relock_of_the_pin_answers_from_the_cache(project, mirror):
    project("lock", *GPU_ARGS)
    before = project.lock_bytes
    mirror.stop()
    result = project("lock", "--offline", "--update", "open-webui")
    assert result.exit_code == 0, result.output
    assert project.lock_bytes == before


@pytest.mark.parametrize(("snippet", "message"), [
    ("open_webui: {version: 3}", "infra.yml:3: global.open_webui.version: expected a string, got an integer (3)"),
    ("open_webui: {versoin: latest}", ("infra.yml:3: global.open_webui.versoin: unknown key\n"
                                       "    hint: did you mean 'version'?")),
    ("open_webui: latest", "infra.yml:3: global.open_webui: expected a mapping, got a string ('latest')"),
])
def test_a_malformed_setting_is_a_clear_infra_error(snippet, message):
    with pytest.raises(InvalidInfra) as info:
        load_infra(f"project_name: p\nglobal:\n  {snippet}\ndomains: {{}}\n".encode())
    assert message in info.value.render()


class _Resolver:
    """Answers every pin; Open WebUI by version (``bad`` refused)."""

    def __init__(self):
        self.asked: list[str] = []

    def image(self, original):
        from anklume.lock.schema import ImageLocked

        return ImageLocked(fingerprint="0" * 64)

    def cluster(self):
        return None

    def open_webui(self, original):
        self.asked.append(original.version)
        if original.version == "bad":
            raise ResolveError("nope", "try another")
        return OpenWebUILocked(version="1.0", filename="w-1.0-py3-none-any.whl", url="https://example.org/w-1.0-py3-none-any.whl", sha256="1" * 64, size=1)


INFRA = """\
project_name: p
global: {open_webui: {version: "%s"}}
domains:
  lab:
    subnet_id: 1
    machines:
      ui: {roles: [open_webui]}
      other: {}
"""


def test_assembly_asks_only_when_a_machine_has_the_role():
    resolver = _Resolver()
    lock = lock_infra(load_infra((INFRA % "latest").encode()), None, resolver)
    assert lock.open_webui.original.version == "latest" and resolver.asked == ["latest"]
    plain = load_infra((INFRA % "latest").replace("roles: [open_webui]", "roles: [base_system]").encode())
    assert lock_infra(plain, lock, resolver).open_webui is None and resolver.asked == ["latest"]
    assert "open-webui" in known_pin_names(None, load_infra((INFRA % "latest").encode()))
    assert "open-webui" in known_pin_names(lock, plain) and "open-webui" not in known_pin_names(None, plain)
    with pytest.raises(ResolveError) as info:
        lock_infra(load_infra((INFRA % "bad").encode()), None, resolver)
    assert info.value.message == "infra.yml: global.open_webui.version (needed by domains.lab.machines.ui): nope"
    assert info.value.hint == "try another"

"""What the role units' keys are made of (roles on disk, the host's variables), and where artefacts
are fetched from: no daemon needed."""

from __future__ import annotations

import hashlib
import os

import pytest

from anklume.provision.artefacts import ArtefactSources
from anklume.provision.inputs import dir_digest, find_role, provision_inputs
from anklume.errors import AnklumeError
from anklume.project import Project
from tests.units.infra import make_infra

DOC = {"project_name": "t", "global": {}, "domains": {"ai": {"subnet_id": 3, "machines": {
    "ai-llm": {"ip": "10.100.3.10", "roles": ["base_system"]},
    "ai-box": {"ip": "10.100.3.11"}}}}}


@pytest.fixture
def project(tmp_path):
    (tmp_path / "infra.yml").write_text("# passed as a model\n")
    for rel, text in {"group_vars/all.yml": "project_name: t\n", "group_vars/ai.yml": "domain_name: ai\n",
                      "inventory/ai.yml": "all: {}\n", "host_vars/ai-llm.yml": "instance_name: ai-llm\n"}.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    return Project(tmp_path / "infra.yml")


def test_only_provisioned_hosts_and_listed_roles(project):
    inputs = provision_inputs(project, make_infra(DOC))
    assert set(inputs["vars_digests"]) == {"ai-llm"} and set(inputs["role_digests"]) == {"base_system"}


def test_host_variables_count_by_value_not_layout(project):
    infra = make_infra(DOC)
    first = provision_inputs(project, infra)["vars_digests"]["ai-llm"]
    host = project.root / "host_vars" / "ai-llm.yml"
    host.write_text("# a comment\ninstance_name:   ai-llm\n")
    assert provision_inputs(project, infra)["vars_digests"]["ai-llm"] == first
    host.write_text("instance_name: ai-llm\nollama_models: [{name: x, digest: y}]\n")  # placed by model units
    assert provision_inputs(project, infra)["vars_digests"]["ai-llm"] == first
    host.write_text("instance_name: ai-llm\nbase_system_timezone: UTC\n")
    assert provision_inputs(project, infra)["vars_digests"]["ai-llm"] != first
    (project.root / "group_vars" / "ai.yml").write_text("domain_name: other\n")
    assert provision_inputs(project, infra)["vars_digests"]["ai-llm"] != first


def test_broken_user_yaml_is_a_clear_error(project):
    (project.root / "host_vars" / "ai-llm.yml").write_text("instance_name: ai-llm\nmine: [unclosed\n")
    with pytest.raises(AnklumeError) as err:
        provision_inputs(project, make_infra(DOC))
    assert "host_vars/ai-llm.yml" in err.value.message and "not valid YAML" in err.value.message


def test_user_roles_come_first_and_unknown_roles_name_both_places(project):
    shipped = dir_digest(find_role(project, "base_system"))
    mine = project.root / "roles" / "base_system" / "tasks"
    mine.mkdir(parents=True)
    (mine / "main.yml").write_text("- ansible.builtin.debug: {msg: mine}\n")
    assert find_role(project, "base_system") == project.root / "roles" / "base_system"
    assert dir_digest(project.root / "roles" / "base_system") != shipped
    with pytest.raises(AnklumeError) as err:
        find_role(project, "no_such_role")
    assert str(project.root / "roles" / "no_such_role") in err.value.message
    assert "base_system" in (err.value.hint or "")


def test_role_digest_sees_content_names_and_the_exec_bit(tmp_path):
    role = tmp_path / "r"
    (role / "files").mkdir(parents=True)
    script = role / "files" / "run.sh"
    script.write_text("echo hi\n")
    first = dir_digest(role)
    os.chmod(script, 0o755)
    assert dir_digest(role) != first
    os.chmod(script, 0o644)
    assert dir_digest(role) == first
    script.rename(role / "files" / "other.sh")
    assert dir_digest(role) != first


def test_artefacts_come_from_the_mirrors_first():
    s = ArtefactSources(ollama_releases="http://127.0.0.1:9/rel", ollama_registry="http://127.0.0.1:9/reg",
                        pypi="http://127.0.0.1:9/pypi")
    url = "https://github.com/ollama/ollama/releases/download/v0.13.1/ollama-linux-amd64.tgz"
    assert s.release_urls(url) == ["http://127.0.0.1:9/rel/v0.13.1/ollama-linux-amd64.tgz", url]
    digest = "sha256:" + "a" * 64
    assert s.blob_urls("llama3.2:3b", digest) == [
        f"http://127.0.0.1:9/reg/v2/library/llama3.2/blobs/{digest}",
        f"https://registry.ollama.ai/v2/library/llama3.2/blobs/{digest}"]
    # another registry than Ollama's is fetched from itself
    assert s.blob_urls("example.org/ns/m:1", digest) == [f"https://example.org/v2/ns/m/blobs/{digest}"]
    wheel = "https://files.pythonhosted.org/packages/aa/bb/cc/open_webui-0.12.4-py3-none-any.whl"
    assert s.wheel_urls(wheel) == ["http://127.0.0.1:9/pypi/packages/aa/bb/cc/open_webui-0.12.4-py3-none-any.whl",
                                   wheel]
    canonical = ArtefactSources(ollama_releases="https://github.com/ollama/ollama/releases/download",
                                ollama_registry="https://registry.ollama.ai", pypi="https://pypi.org")
    assert canonical.release_urls(url) == [url] and canonical.wheel_urls(wheel) == [wheel]
    assert canonical.blob_urls("llama3.2:3b", digest) == [f"https://registry.ollama.ai/v2/library/llama3.2/blobs/{digest}"]


def test_wheelhouse_listing_and_its_errors(tmp_path):
    from anklume.provision.inputs import wheelhouse_files

    with pytest.raises(AnklumeError, match="is not a directory"):
        wheelhouse_files(tmp_path / "none", memo_dir=tmp_path)
    house = tmp_path / "house"
    house.mkdir()
    with pytest.raises(AnklumeError, match="holds no wheel"):
        wheelhouse_files(house, memo_dir=tmp_path)
    (house / "b-1.0-py3-none-any.whl").write_bytes(b"bbb")
    (house / "a-1.0-py3-none-any.whl").write_bytes(b"aa")
    (house / "notes.txt").write_text("not a wheel")
    listed = wheelhouse_files(house, memo_dir=tmp_path)
    assert listed == [["a-1.0-py3-none-any.whl", hashlib.sha256(b"aa").hexdigest(), 2],
                      ["b-1.0-py3-none-any.whl", hashlib.sha256(b"bbb").hexdigest(), 3]]
    assert (tmp_path / "wheelhouse-sha256.json").exists()  # memoised by path, size and mtime
    (house / "a-1.0-py3-none-any.whl").write_bytes(b"AA")
    os.utime(house / "a-1.0-py3-none-any.whl", ns=(1, 1))
    assert wheelhouse_files(house, memo_dir=tmp_path)[0][1] == hashlib.sha256(b"AA").hexdigest()

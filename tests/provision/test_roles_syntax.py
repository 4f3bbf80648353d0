"""The shipped roles (anklume/provision/roles): Ansible accepts them, they use only
ansible.builtin modules, keep the original's variables, and their README lists every variable."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import anklume.provision

ROLES_DIR = Path(anklume.provision.__file__).parent / "roles"
ROLES = sorted(p.name for p in ROLES_DIR.iterdir() if (p / "tasks" / "main.yml").is_file())

#: Task keywords (everything else on a task is its module).
KEYWORDS = {
    "name", "when", "register", "changed_when", "failed_when", "check_mode", "notify", "vars",
    "block", "rescue", "always", "until", "retries", "delay", "loop", "loop_control", "tags",
    "become", "ignore_errors", "no_log", "listen", "run_once", "delegate_to",
}


def _ansible_playbook() -> str:
    candidate = Path(sys.executable).parent / "ansible-playbook"
    found = str(candidate) if candidate.exists() else shutil.which("ansible-playbook")
    if found is None:
        pytest.fail("ansible-playbook not installed: run scripts/setup.sh (pip install -e '.[provision]')", pytrace=False)
    return found


def _syntax_check(tmp_path: Path, roles: list[str]) -> subprocess.CompletedProcess:
    playbook = tmp_path / "play.yml"
    playbook.write_text(yaml.safe_dump([{"hosts": "all", "gather_facts": False, "roles": roles}]))
    env = dict(os.environ, ANSIBLE_ROLES_PATH=str(ROLES_DIR), ANSIBLE_NOCOLOR="1",
               ANSIBLE_LOCAL_TEMP=str(tmp_path / "ansible-tmp"))
    return subprocess.run(
        [_ansible_playbook(), "--syntax-check", "-i", "localhost,", str(playbook)],
        env=env, capture_output=True, text=True, timeout=120, check=False)


def test_the_three_roles_are_shipped():
    assert ROLES == ["base_system", "ollama_server", "open_webui"]


@pytest.mark.parametrize("role", ROLES)
def test_syntax_check(tmp_path, role):
    proc = _syntax_check(tmp_path, [role])
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_syntax_check_all_roles_in_one_play(tmp_path):
    proc = _syntax_check(tmp_path, ROLES)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _tasks(tasks: list[dict]):
    for task in tasks:
        yield task
        for section in ("block", "rescue", "always"):
            yield from _tasks(task.get(section, []))


@pytest.mark.parametrize("path", sorted(
    str(p.relative_to(ROLES_DIR)) for p in ROLES_DIR.glob("*/*/main.yml") if p.parent.name in ("tasks", "handlers")))
def test_only_fully_qualified_builtin_modules(path):
    for task in _tasks(yaml.safe_load((ROLES_DIR / path).read_text())):
        if "block" in task:
            continue
        modules = set(task) - KEYWORDS
        assert len(modules) == 1 and next(iter(modules)).startswith("ansible.builtin."), (
            f"{path}: task {task.get('name')!r} uses {sorted(modules)}")


def _defaults(role: str) -> dict:
    return yaml.safe_load((ROLES_DIR / role / "defaults" / "main.yml").read_text())


def test_the_originals_variables_and_defaults():
    ollama = _defaults("ollama_server")
    assert (ollama["ollama_host"], ollama["ollama_service_enabled"]) == ("0.0.0.0:11434", True)
    assert ollama["ollama_models_dir"] == "/root/.ollama/models"
    webui = _defaults("open_webui")
    assert (webui["open_webui_port"], webui["open_webui_ollama_url"]) == (3000, "http://localhost:11434")
    assert (webui["open_webui_venv"], webui["open_webui_wheelhouse_src"]) == ("/opt/open-webui-venv", "")
    assert "/var/cache/anklume/wheels" in webui["open_webui_wheelhouse"]  # only when a wheelhouse was pushed
    base = _defaults("base_system")
    assert base["base_system_packages"][:3] == ["curl", "wget", "ca-certificates"]
    assert len(base["base_system_packages"]) == 15
    assert base["base_system_extra_packages"] == []
    assert (base["base_system_locale"], base["base_system_timezone"]) == ("en_US.UTF-8", "Europe/Paris")
    for defaults in (ollama, webui, base):
        assert defaults["anklume_require_systemd"] is True


def test_readme_lists_every_variable():
    readme = (ROLES_DIR / "README.md").read_text()
    missing = sorted(name for role in ROLES for name in _defaults(role) if f"`{name}`" not in readme)
    assert missing == []


def test_not_started_message_is_worded_once_per_service():
    for role, unit in (("ollama_server", "ollama.service"), ("open_webui", "open-webui.service")):
        text = " ".join((ROLES_DIR / role / "tasks" / "main.yml").read_text().split())
        assert text.count(f"not systemd: {unit} is configured but not started (anklume_require_systemd=false)") == 1

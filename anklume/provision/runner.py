"""``run_role``: one Ansible role on one machine, through ansible-runner and the ``anklume_incus``
connection plugin (the Incus REST API; no SSH).

Each run gets a private data dir of its own under ``work_dir``: a two-line playbook
(``hosts: <machine>``, ``roles: [<role>]``, no fact gathering: roles gather what they need) beside
symlinks to the generated tree's ``group_vars`` and ``host_vars`` (so Ansible loads them as
playbook vars), with the tree's ``inventory/<domain>.yml`` as inventory.  The connection vars are
play vars: a machine's own vars cannot point the run elsewhere.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import yaml

from anklume.errors import AnklumeError
from anklume.model.names import DOMAIN_RE, MACHINE_RE, ROLE_RE
from anklume.model.yamlsafe import BoundedLoader

CONNECTION_PLUGINS = Path(__file__).resolve().parent / "connection_plugins"
CONNECTION = "anklume_incus"
PYTHON_INTERPRETER = "/usr/bin/python3"


class RoleResult(NamedTuple):
    changed: int  # tasks that reported a change
    ok: int  # tasks that succeeded, changed ones included (Ansible's recap "ok")
    tasks: list[str]  # the tasks that ran or were skipped, in order


class RoleFailed(AnklumeError):
    """A role run failed: names the role, the machine (host) and the failed task."""

    def __init__(self, role: str, machine: str, task: str | None, reason: str, hint: str | None = None):
        what = f"task '{task}' failed" if task else "ansible-playbook failed"
        super().__init__(f"role {role} on {machine}: {what}: {reason}", hint)
        self.role = role
        self.machine = machine
        self.task = task
        self.reason = reason


def run_role(*, tree_root: Path, domain: str, machine: str, role: str, roles_path: Sequence[Path],
             endpoint: str | None, work_dir: Path, extravars: Mapping[str, Any] | None = None,
             on_event: Callable[[str], None] | None = None) -> RoleResult:
    """Run ``role`` on ``machine`` (an instance of project ``domain``) and return what it did.

    ``roles_path``: where roles are looked up, first match wins (user roles first).
    ``endpoint``: the Incus server (socket path or https URL); None: ``ANKLUME_INCUS``, else the
    local socket.  ``on_event`` receives one line per task: ``"<task> ok|changed|skipped|failed"``.
    Raises RoleFailed (task, host, Ansible's message and a failed command's output).
    """
    _check_name("domain", domain, DOMAIN_RE)
    _check_name("machine", machine, MACHINE_RE)
    _check_name("role", role, ROLE_RE)
    tree_root = Path(tree_root).resolve()
    inventory = tree_root / "inventory" / f"{domain}.yml"
    _check_host(inventory, domain, machine)
    try:
        import ansible_runner
        from ansible_runner.exceptions import AnsibleRunnerException
    except ImportError:
        raise AnklumeError("ansible-runner is not installed: provisioning needs it",
                           "reinstall anklume (`pipx install --force ...` or `pip install .`): it depends on "
                           "ansible-runner and ansible-core") from None

    data_dir = Path(work_dir).resolve() / "ansible" / f"{domain}.{machine}.{role}"
    _fresh_dir(data_dir)
    project = data_dir / "project"
    project.mkdir(parents=True)
    for name in ("group_vars", "host_vars"):
        if (tree_root / name).is_dir():
            (project / name).symlink_to(tree_root / name, target_is_directory=True)
    play_vars: dict[str, Any] = {"ansible_connection": CONNECTION, "ansible_incus_project": domain,
                                 "ansible_python_interpreter": PYTHON_INTERPRETER}
    if endpoint:
        play_vars["ansible_incus_endpoint"] = endpoint
    play = [{"name": f"{role} on {machine}", "hosts": machine, "gather_facts": False, "vars": play_vars,
             "roles": [role]}]
    (project / "play.yml").write_text(yaml.safe_dump(play, sort_keys=False))

    envvars = _environment(roles_path, data_dir)
    events = _Events(role, machine, on_event)
    try:
        runner = ansible_runner.run(
            private_data_dir=str(data_dir), playbook="play.yml", inventory=str(inventory), envvars=envvars,
            extravars=dict(extravars or {}), quiet=True, suppress_env_files=True, event_handler=events,
            ident="run", settings={"suppress_ansible_output": True})
    except (AnsibleRunnerException, OSError) as err:  # ansible-runner refusing its own setup
        raise RoleFailed(role, machine, None, f"ansible-runner could not start: {err}") from None
    if events.failure is not None:
        raise events.failure
    if runner.status != "successful":
        raise RoleFailed(role, machine, None, f"{runner.status} (rc {runner.rc}): {_stdout_tail(runner)}")
    if events.no_hosts:
        raise RoleFailed(role, machine, None, f"host {machine} is not in {inventory}")
    return RoleResult(events.changed, events.ok, events.tasks)


class _Events:
    """ansible-runner's event handler: counts, forwards one line per task, keeps the failure."""

    def __init__(self, role: str, machine: str, on_event: Callable[[str], None] | None):
        self.role, self.machine, self.on_event = role, machine, on_event
        self.changed = self.ok = 0
        self.tasks: list[str] = []
        self.failure: RoleFailed | None = None
        self.no_hosts = False

    def __call__(self, event: Mapping[str, Any]) -> bool:
        kind = event.get("event")
        data = event.get("event_data") or {}
        task = str(data.get("task") or "?")
        res = data.get("res") or {}
        if kind == "playbook_on_no_hosts_matched":
            self.no_hosts = True
        elif kind == "runner_on_ok":
            changed = bool(res.get("changed"))
            self.ok += 1
            self.changed += changed
            self._task(task, "changed" if changed else "ok")
        elif kind == "runner_on_skipped":
            self._task(task, "skipped")
        elif kind == "runner_on_failed" and data.get("ignore_errors"):
            self._task(task, "failed (ignored)")
        elif kind in ("runner_on_failed", "runner_on_unreachable"):
            self._task(task, "failed" if kind == "runner_on_failed" else "unreachable")
            if self.failure is None:
                host = data.get("host") or self.machine
                reason = _failure_text(res, unreachable=kind == "runner_on_unreachable")
                self.failure = RoleFailed(self.role, str(host), task, reason)
        return True

    def _task(self, task: str, status: str) -> None:
        self.tasks.append(task)
        if self.on_event is not None:
            self.on_event(f"{task} {status}")


def _failure_text(res: Mapping[str, Any], *, unreachable: bool) -> str:
    """Ansible's ``msg``, then what a failed command or module printed."""
    msg = str(res.get("msg") or ("unreachable" if unreachable else "failed")).strip()
    parts = [msg]
    if res.get("rc") not in (None, 0) and "rc" not in msg:
        parts.append(f"rc {res['rc']}")
    for key in ("stderr", "stdout", "module_stderr", "module_stdout"):
        text = str(res.get(key) or "").strip()
        if text and text not in msg:
            parts.append(f"{key}: {_tail(text)}")
    return "; ".join(parts)


def _environment(roles_path: Sequence[Path], data_dir: Path) -> dict[str, str]:
    bin_dir = str(Path(sys.executable).parent)  # ansible-playbook of this environment
    package_root = str(Path(__file__).resolve().parents[2])  # the plugin imports anklume
    pythonpath = os.environ.get("PYTHONPATH")
    return {
        "PATH": bin_dir + os.pathsep + os.environ.get("PATH", os.defpath),
        "PYTHONPATH": package_root + (os.pathsep + pythonpath if pythonpath else ""),
        "ANSIBLE_ROLES_PATH": os.pathsep.join(str(Path(p).resolve()) for p in roles_path),
        "ANSIBLE_CONNECTION_PLUGINS": str(CONNECTION_PLUGINS),
        "ANSIBLE_PIPELINING": "True",
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_FORCE_COLOR": "0",
        "ANSIBLE_RETRY_FILES_ENABLED": "False",
        "ANSIBLE_LOCAL_TEMP": str(data_dir / "tmp"),
        "ANSIBLE_HOST_KEY_CHECKING": "False",
        "ANSIBLE_DEPRECATION_WARNINGS": "False",
    }


def _check_name(kind: str, value: str, pattern) -> None:
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise AnklumeError(f"invalid {kind} name {value!r}", f"a {kind} name must match {pattern.pattern}")


def _check_host(inventory: Path, domain: str, machine: str) -> None:
    """The machine is a host of the domain's inventory (else Ansible would silently do nothing)."""
    try:
        doc = yaml.load(inventory.read_text(), Loader=BoundedLoader)  # nesting bounded
    except OSError as err:
        raise AnklumeError(f"cannot read the inventory {inventory}: {err.strerror}",
                           "run `anklume build` to write the Ansible tree") from None
    except yaml.YAMLError as err:
        raise AnklumeError(f"{inventory}: not valid YAML: {err}") from None
    try:
        hosts = doc["all"]["children"][domain]["hosts"] or {}
    except (KeyError, TypeError):
        hosts = {}
    if machine not in hosts:
        raise AnklumeError(f"machine {machine} is not a host of domain {domain} in {inventory}")


def _fresh_dir(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)


def _stdout_tail(runner: Any) -> str:
    try:
        text = runner.stdout.read()
    except Exception:  # noqa: BLE001 - the artefacts may be gone: the status alone then
        return "no output"
    return _tail(text) or "no output"


def _tail(text: str, lines: int = 8, chars: int = 1200) -> str:
    text = text.strip()
    return "\n".join(text.splitlines()[-lines:])[-chars:]

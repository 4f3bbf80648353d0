"""Ansible connection plugin ``anklume_incus``: tasks run in an Incus instance through the Incus
REST API (anklume's ``InstanceIO`` on pylxd), over the local unix socket or a remote https
endpoint: no SSH in the instance, no ``incus`` CLI on the controller.

``community.general.incus`` would do the same job, but it ships only inside the full ``ansible``
package (547 MB installed) and shells out to the ``incus`` CLI.
"""

from __future__ import annotations

DOCUMENTATION = r"""
name: anklume_incus
short_description: Run tasks in Incus instances through the Incus REST API
description:
  - Runs commands in an Incus instance and copies files to and from it through the Incus REST API
    (exec with recorded output, the files API), over the local unix socket or a remote https
    endpoint, without SSH and without the incus command line client.
author: anklume
options:
  instance:
    description:
      - The Incus instance. anklume names instances after their machine, so this is the inventory
        host name; ansible_host is not used (anklume's inventory sets it to the machine's IP).
    type: str
    vars:
      - name: inventory_hostname
      - name: ansible_incus_instance
  incus_endpoint:
    description:
      - The Incus server, a unix socket path or an https URL (client certificate of the incus CLI,
        INCUS_CONF). Default, the local socket (/var/lib/incus/unix.socket, /run/incus/unix.socket).
    type: str
    env:
      - name: ANKLUME_INCUS
    vars:
      - name: ansible_incus_endpoint
  project:
    description: The Incus project holding the instance (anklume's domain).
    type: str
    default: default
    env:
      - name: ANKLUME_INCUS_PROJECT
    vars:
      - name: ansible_incus_project
  command_timeout:
    description:
      - Seconds one command may run (not C(timeout), which Ansible fills with its 10 s connection
        timeout).
    type: int
    default: 3600
    vars:
      - name: ansible_incus_timeout
  pipelining:
    description:
      - Send modules on stdin instead of copying them first (stdin travels as a pushed file,
        one request instead of several).
    type: bool
    default: true
    env:
      - name: ANSIBLE_PIPELINING
    vars:
      - name: ansible_pipelining
"""

import os
from pathlib import Path

from ansible.errors import AnsibleConnectionFailure, AnsibleError, AnsibleFileNotFound
from ansible.module_utils.common.text.converters import to_bytes, to_text
from ansible.plugins.connection import ConnectionBase
from ansible.utils.display import Display

display = Display()


class Connection(ConnectionBase):
    """Commands and files in an Incus instance through anklume's InstanceIO."""

    transport = "anklume_incus"
    has_pipelining = True
    default_user = "root"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._io = None

    def _connect(self):
        if self._io is None:
            from anklume.backends.incus.client import IncusClient
            from anklume.backends.incus.files import InstanceIO
            from anklume.errors import AnklumeError

            instance = self.get_option("instance") or self._play_context.remote_addr
            project = self.get_option("project") or "default"
            endpoint = self.get_option("incus_endpoint") or None
            try:
                self._io = InstanceIO(IncusClient(endpoint, timeout=30), project, instance)
            except AnklumeError as err:
                raise AnsibleConnectionFailure(_message(err)) from None
            display.vvv(f"ANKLUME_INCUS: instance {instance} in project {project} at "
                        f"{endpoint or 'the local socket'}", host=instance)
        self._connected = True
        return self

    def _run(self, what, fn):
        """Run one InstanceIO call; its errors become Ansible's (unreachable for the transport)."""
        from anklume.errors import AnklumeError

        try:
            return fn()
        except AnklumeError as err:
            raise AnsibleConnectionFailure(_message(err)) from None

    def exec_command(self, cmd, in_data=None, sudoable=True):
        super().exec_command(cmd, in_data=in_data, sudoable=sudoable)
        executable = self._play_context.executable or "/bin/sh"
        argv = [executable, "-c", to_text(cmd, errors="surrogate_or_strict")]
        display.vvv(f"EXEC {argv}", host=self._io.instance)
        stdin = to_bytes(in_data) if in_data is not None else None
        result = self._run("exec", lambda: self._io.exec(argv, stdin=stdin, check=False,
                                                         timeout=self.get_option("command_timeout")))
        return result.rc, result.stdout, result.stderr

    def put_file(self, in_path, out_path):
        super().put_file(in_path, out_path)
        display.vvv(f"PUT {in_path} TO {out_path}", host=self._io.instance)
        local = Path(to_text(in_path, errors="surrogate_or_strict"))
        if not local.is_file():
            raise AnsibleFileNotFound(f"file or module does not exist: {local}")
        mode = (local.stat().st_mode & 0o777) | 0o600  # the local bits, at least rw for the owner
        self._run("put", lambda: self._io.push(self._remote(out_path), local, mode=mode))

    def fetch_file(self, in_path, out_path):
        super().fetch_file(in_path, out_path)
        display.vvv(f"FETCH {in_path} TO {out_path}", host=self._io.instance)
        local = to_text(out_path, errors="surrogate_or_strict")
        try:
            with open(local, "wb") as dest:
                self._run("fetch", lambda: self._io.pull(self._remote(in_path), dest))
        except OSError as err:
            raise AnsibleError(f"cannot write {local}: {err.strerror}") from None

    def _remote(self, path):
        """An absolute path in the instance (Ansible's relative paths are relative to root's home)."""
        text = to_text(path, errors="surrogate_or_strict")
        return text if text.startswith("/") else os.path.join("/root", text)

    def close(self):
        self._io = None
        self._connected = False


def _message(err):
    return err.message + (f" ({err.hint})" if getattr(err, "hint", None) else "")

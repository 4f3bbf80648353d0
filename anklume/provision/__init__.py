"""Provisioning: Ansible roles run inside Incus instances.

- ``connection_plugins/anklume_incus.py``: the Ansible connection plugin that reaches an instance
  through the Incus REST API (``anklume.backends.incus_files.InstanceIO``).
- ``runner.py``: ``run_role`` runs one role on one machine through ansible-runner.
"""

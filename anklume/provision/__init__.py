"""Provisioning: what happens inside Incus instances (pinned artefacts placed, Ansible roles run).

- ``connection_plugins/anklume_incus.py``: the Ansible connection plugin that reaches an instance
  through the Incus REST API (``anklume.backends.incus.files.InstanceIO``).
- ``inputs.py``: the on-disk inputs of the units inside instances (roles, host variables,
  wheelhouses), digested.
- ``artefacts.py``: the ``Provisioner`` that applies those units: artefacts fetched into the local
  store and pushed into instances, roles run.
- ``readback.py``: what was placed, read back and checked against the lock.
- ``runner.py``: ``run_role`` runs one role on one machine through ansible-runner.
"""

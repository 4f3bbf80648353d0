"""Backends: the only modules that talk to Incus (pylxd) and Ansible (ansible_runner)."""

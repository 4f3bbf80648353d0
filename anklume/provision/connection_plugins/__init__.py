"""Ansible connection plugins of anklume (Ansible loads them by path: ``ANSIBLE_CONNECTION_PLUGINS``)."""

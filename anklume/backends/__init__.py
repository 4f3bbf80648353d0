"""Backends: the daemons anklume drives.  ``base.py`` writes the contract the engine relies on
(:class:`~anklume.backends.base.Backend`); ``incus/`` implements it and is the only package that
imports pylxd (Ansible is driven from :mod:`anklume.provision.runner`).  See ARCHITECTURE.md."""

"""What each machine needs pinned, and the keys its pins have in the lock.

Pure functions of the model, shared by locking, rendering and planning.
"""

from __future__ import annotations

from collections.abc import Iterator

from anklume.model.names import parse_image_ref
from anklume.model.schema import DEFAULT_OS_IMAGE, Domain, Infra, Machine

INSTANCE_TYPES = {"lxc": "container", "vm": "virtual-machine"}
OLLAMA_ROLE = "ollama_server"
OPEN_WEBUI_ROLE = "open_webui"
#: Ollama release asset names of the Incus architectures (``global.architecture``).
RELEASE_ARCH = {"x86_64": "amd64", "aarch64": "arm64"}


def iter_machines(infra: Infra) -> Iterator[tuple[str, Domain, str, Machine]]:
    """(domain name, domain, machine name, machine) in declaration order."""
    for dname, domain in infra.domains.items():
        for mname, machine in (domain.machines or {}).items():
            yield dname, domain, mname, machine


def effective_image(infra: Infra, machine: Machine) -> str:
    return machine.os_image or infra.global_.default_os_image or DEFAULT_OS_IMAGE


def image_key(infra: Infra, machine: Machine) -> str:
    """``images:debian/13`` for a container, ``images:debian/13 (virtual-machine)`` for a VM:
    the same alias resolves to a different fingerprint per instance type."""
    remote, alias, _ = parse_image_ref(effective_image(infra, machine))
    itype = INSTANCE_TYPES[machine.type]
    return f"{remote}:{alias}" + ("" if itype == "container" else f" ({itype})")


def is_gpu_machine(domain: Domain, machine: Machine) -> bool:
    """The original's rule: ``gpu: true``, or a referenced profile with a ``type: gpu`` device."""
    if machine.gpu:
        return True
    profiles = domain.profiles or {}
    for name in machine.profiles or []:
        devices = (profiles.get(name) or {}).get("devices") or {}
        if any(str(dev.get("type")) == "gpu" for dev in devices.values()):
            return True
    return False


def needs_ollama(machine: Machine) -> bool:
    return bool(machine.models) or OLLAMA_ROLE in (machine.roles or [])


def needs_open_webui(machine: Machine) -> bool:
    return OPEN_WEBUI_ROLE in (machine.roles or [])

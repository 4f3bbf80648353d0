"""What each machine needs pinned, and the keys its pins have in the lock.

Pure functions of the model, shared by locking, rendering and planning.
"""

from __future__ import annotations

import re
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


# -- placement in an Incus cluster (anklume.lock.placement) --------------------------------------

#: Incus's byte-size suffixes (``units.ParseByteSizeString``): case-sensitive, integer values.
BYTE_SUFFIXES = {"": 1, "B": 1, "kB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12, "PB": 10**15, "EB": 10**18,
                 "KiB": 2**10, "MiB": 2**20, "GiB": 2**30, "TiB": 2**40, "PiB": 2**50, "EiB": 2**60}
_CPU_SET = re.compile(r"\A[0-9]{1,6}(-[0-9]{1,6})?(,[0-9]{1,6}(-[0-9]{1,6})?)*\Z")
_BYTES = re.compile(r"\A([0-9]{1,20})([A-Za-z]{0,3})\Z")
_PERCENT = re.compile(r"\A([0-9]{1,3})%\Z")


def machine_target(dname: str, domain: Domain, mname: str, machine: Machine) -> tuple[str | None, str]:
    """The member infra.yml asks for (the machine's ``target``, else its domain's) and the key path
    that asks for it (None, ""): anklume chooses)."""
    if machine.target is not None:
        return machine.target, f"domains.{dname}.machines.{mname}.target"
    if domain.target is not None:
        return domain.target, f"domains.{dname}.target"
    return None, ""


def declared_limit(domain: Domain, machine: Machine, key: str, dname: str, mname: str) -> tuple[object, str] | None:
    """The value of config ``key`` as Incus expands it (the machine's profiles in order, then its
    own config: the last one set wins) and the key path that sets it; None when nothing does."""
    found = None
    profiles = domain.profiles or {}
    for pname in machine.profiles or []:
        config = (profiles.get(pname) or {}).get("config") or {}
        if key in config:
            found = (config[key], f"domains.{dname}.profiles.{pname}.config.{key}")
    if machine.config and key in machine.config:
        found = (machine.config[key], f"domains.{dname}.machines.{mname}.config.{key}")
    return found


def cpu_count(value: object) -> int:
    """``limits.cpu`` as a number of CPUs: ``4`` -> 4, ``"0-3"`` -> 4, ``"1,3"`` -> 2 (a set of
    pinned CPUs counts its distinct members).  ValueError when it is neither."""
    text = str(value).strip() if not isinstance(value, bool) else ""
    if text.isascii() and text.isdigit() and len(text) <= 6:
        if int(text) == 0:
            raise ValueError("0 CPUs")
        return int(text)
    if not _CPU_SET.fullmatch(text):
        raise ValueError(f"{value!r} is neither a number of CPUs (\"4\") nor a set of CPUs (\"0-3\", \"1,3\")")
    cpus: set[int] = set()
    for part in text.split(","):
        first, _, last = part.partition("-")
        lo, hi = int(first), int(last or first)
        if hi < lo or hi - lo >= 2**16:
            raise ValueError(f"{value!r}: the range {part!r} is not low-high")
        cpus.update(range(lo, hi + 1))
    return len(cpus)


def memory_demand(value: object) -> tuple[str, int]:
    """``limits.memory`` as ("bytes", n) (``"2GiB"``, ``"512MB"``, ``1073741824``) or ("percent", p)
    (``"50%"``, of the member's memory), as Incus reads it.  ValueError when it is neither."""
    text = str(value).strip() if not isinstance(value, (bool, float)) else ""
    percent = _PERCENT.fullmatch(text)
    if percent:
        if not 0 < int(percent[1]) <= 100:
            raise ValueError(f"{value!r}: a percentage is 1% to 100%")
        return "percent", int(percent[1])
    size = _BYTES.fullmatch(text)
    if size is None or size[2] not in BYTE_SUFFIXES:
        raise ValueError(f"{value!r} is neither a size (\"2GiB\", \"512MB\", bytes) nor a percentage (\"50%\")")
    return "bytes", int(size[1]) * BYTE_SUFFIXES[size[2]]


def shared_volumes(dname: str, machine: Machine) -> list[tuple[str, str]]:
    """The (domain, volume name) pairs a machine mounts: machines sharing one share a member."""
    return [(dname, name) for name in machine.storage_volumes or {}]

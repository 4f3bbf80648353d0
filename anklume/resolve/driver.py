"""The NVIDIA driver's user space, as pure parsers: which host files a GPU container needs, where
a Debian or Ubuntu container finds them, and which way they reach it.  Pure: the host is asked by
:mod:`anklume.resolve.inventory`.

A ``gputype: physical`` device gives a container the card's device nodes (``/dev/nvidia0``,
``/dev/nvidiactl``, ``/dev/nvidia-uvm``) and nothing else: without the driver's libraries a CUDA
program (Ollama) finds no GPU and runs on the CPU.  Two ways bring them in (:func:`choose_mode`):

- ``runtime``: Incus's ``nvidia.runtime=true``, which runs the host's ``nvidia-container-cli``
  (libnvidia-container) when the container starts; chosen wherever that binary is installed;
- ``files``: else, read-only ``disk`` devices, one per file, found the way nvidia-container-cli
  finds them (``src/nvc_info.c``): each library of its *compute* and *utility* sets
  (:data:`DRIVER_LIBRARIES`) by name in the host's linker cache (``ldconfig -p``), for the
  container's architecture, kept only when the file it resolves to ends in ``.so.<driver
  version>``; plus ``nvidia-smi``.  Each is mounted under every name the cache lists for it
  (``libcuda.so.1``, ``libcuda.so``) in the multiarch directory of Debian and Ubuntu
  (``/usr/lib/x86_64-linux-gnu``), which the dynamic linker searches without a cache entry;
  ``nvidia-smi`` at ``/usr/bin/nvidia-smi``.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import NamedTuple

#: nvidia-container-cli's *utility* and *compute* libraries (what Incus's default
#: ``nvidia.driver.capabilities=compute,utility`` mounts), by the name before ``.so``'s suffix.
DRIVER_LIBRARIES: tuple[str, ...] = (
    # utility
    "libnvidia-ml.so",  # NVML: nvidia-smi, Ollama's VRAM discovery
    "libnvidia-cfg.so",
    "libnvidia-nscq.so",
    # compute
    "libcuda.so",  # the CUDA driver API
    "libcudadebugger.so",
    "libnvidia-opencl.so",
    "libnvidia-gpucomp.so",
    "libnvidia-ptxjitcompiler.so",  # PTX to SASS, loaded by libcuda
    "libnvidia-fatbinaryloader.so",  # older drivers
    "libnvidia-allocator.so",
    "libnvidia-compiler.so",
    "libnvidia-pkcs11.so",
    "libnvidia-pkcs11-openssl3.so",
    "libnvidia-nvvm.so",
    "libnvidia-tileiras.so",
)
#: The driver's programs a container gets (nvidia-container-cli's utility binaries that make sense
#: in a container: the persistence daemon and the fabric manager run on the host).
DRIVER_BINARIES: tuple[str, ...] = ("nvidia-smi",)
#: Without these the container cannot compute (libcuda) nor be checked (NVML, nvidia-smi).
REQUIRED = ("libcuda.so", "libnvidia-ml.so", "nvidia-smi")

#: Incus architecture -> (the tag ``ldconfig -p`` gives its libraries, the Debian multiarch triplet).
ARCHES: dict[str, tuple[str, str]] = {
    "x86_64": ("x86-64", "x86_64-linux-gnu"),
    "aarch64": ("AArch64", "aarch64-linux-gnu"),
}
BIN_DIR = "/usr/bin"

#: ``\tlibcuda.so.1 (libc6,x86-64) => /lib/x86_64-linux-gnu/libcuda.so.1``; the tags may go on
#: (``libc6,x86-64, OS ABI: Linux 3.2.0``) and hwcap entries add ``, hwcap: ...``.
_LDCONFIG_LINE = re.compile(r"\s*(\S+) \(([^()]*)\) => (/\S.*)")
_VERSION = re.compile(r"[0-9][0-9A-Za-z.+_-]{0,63}")


class LdEntry(NamedTuple):
    name: str  # "libcuda.so.1"
    tags: tuple[str, ...]  # ("libc6", "x86-64")
    path: str  # "/lib/x86_64-linux-gnu/libcuda.so.1"


class DriverFile(NamedTuple):
    target: str  # in the container
    source: str  # on the host, links resolved


def parse_ldconfig(text: str) -> list[LdEntry]:
    """The entries of ``ldconfig -p``; the header and lines of another shape are skipped."""
    out = []
    for line in text.splitlines():
        match = _LDCONFIG_LINE.fullmatch(line.rstrip())
        if match is None:
            continue
        name, tags, path = match.groups()
        out.append(LdEntry(name, tuple(t.strip() for t in tags.split(",")), path.strip()))
    return out


def library_of(name: str) -> str | None:
    """The :data:`DRIVER_LIBRARIES` entry ``name`` is a version of (``libcuda.so.1`` ->
    ``libcuda.so``), or None."""
    for lib in DRIVER_LIBRARIES:
        if name == lib or (name.startswith(lib + ".") and name[len(lib) + 1:].replace(".", "").isdigit()
                           and name[len(lib) + 1:].isascii()):
            return lib
    return None


def driver_name_of(target: str) -> str | None:
    """What ``target`` (a path in the container) may be named after: a driver library or program,
    or None (a lock that mounts anything else is refused: :mod:`anklume.lock.check`)."""
    base = posixpath.basename(target)
    return base if base in DRIVER_BINARIES else library_of(base)


def library_dir(arch: str) -> str:
    """Where a Debian or Ubuntu container of ``arch`` looks for libraries."""
    return f"/usr/lib/{ARCHES[arch][1]}"


def allowed_dirs() -> set[str]:
    """The directories a driver file may be mounted into."""
    return {BIN_DIR} | {library_dir(arch) for arch in ARCHES}


def driver_files(entries: Iterable[LdEntry], resolved: Mapping[str, str], *, version: str, arch: str,
                 binaries: Mapping[str, str]) -> list[DriverFile]:
    """The files a GPU container of ``arch`` gets, sorted by target.

    ``entries``: the host's ``ldconfig -p``; ``resolved``: each entry's path with its links
    resolved (missing: the entry is skipped); ``version``: the driver's version (a library is
    taken only when the file it resolves to ends in ``.so.<version>``, as nvidia-container-cli
    does: a stale library of an older driver is never mounted); ``binaries``: name -> resolved
    host path of each program of :data:`DRIVER_BINARIES` found on the host."""
    tag, _triplet = ARCHES[arch]
    libdir = library_dir(arch)
    chosen: dict[str, str] = {}
    for entry in entries:
        lib = library_of(entry.name)
        if lib is None or tag not in entry.tags:
            continue
        real = resolved.get(entry.path)
        if real is None or not posixpath.basename(real).endswith(f".so.{version}") \
                or library_of(posixpath.basename(real)) != lib:
            continue
        chosen.setdefault(f"{libdir}/{entry.name}", real)  # the cache lists the preferred path first
    for name in DRIVER_BINARIES:
        if name in binaries:
            chosen[f"{BIN_DIR}/{name}"] = binaries[name]
    return [DriverFile(t, s) for t, s in sorted(chosen.items())]


def missing_required(files: Sequence[DriverFile]) -> list[str]:
    """The :data:`REQUIRED` names none of ``files`` provides."""
    have = {driver_name_of(f.target) for f in files}
    return [name for name in REQUIRED if name not in have]


def choose_mode(*, container_cli: bool, files: Sequence[DriverFile]) -> str | None:
    """``runtime`` where the host has nvidia-container-cli, else ``files`` when the driver's files
    are all there, else None (the container gets the card only)."""
    if container_cli:
        return "runtime"
    if files and not missing_required(files):
        return "files"
    return None


def parse_smi_versions(xml: str) -> tuple[str | None, str | None]:
    """(driver version, CUDA version) from ``nvidia-smi -q -x``: its top-level
    ``<driver_version>`` and ``<cuda_version>``.  Read with a pattern, not an XML parser (the
    document's DTD is not fetched, nothing else of it is needed); a value that is not a version
    is None."""
    def first(tag: str) -> str | None:
        match = re.search(rf"<{tag}>\s*([^<\s]*)\s*</{tag}>", xml)
        value = match.group(1) if match else None
        return value if value and _VERSION.fullmatch(value) else None

    return first("driver_version"), first("cuda_version")


def device_name(target: str) -> str:
    """The Incus device of one driver file: ``nvidia-`` and its file name, dots as dashes
    (``/usr/lib/x86_64-linux-gnu/libcuda.so.1`` -> ``nvidia-libcuda-so-1``)."""
    return "nvidia-" + re.sub(r"[^A-Za-z0-9-]", "-", posixpath.basename(target))

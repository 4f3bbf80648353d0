"""Read the GPU inventory from the host: Incus resources, plus nvidia-smi and the NVIDIA driver's
user space when the Incus server is this machine.

The parsing lives in :mod:`anklume.resolve.gpus` and :mod:`anklume.resolve.driver`; this module
only asks the questions (``nvidia-smi``, ``ldconfig -p``, the driver's files and their sha256).
"""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import stat
import subprocess
from collections.abc import Iterable, Mapping, Sequence

import msgspec

from anklume.backends.incus.reader import IncusReader
from anklume.errors import SourceError
from anklume.lock.schema import MAX_DRIVER_FILE_BYTES, GpuDriverFile
from anklume.resolve.driver import (ARCHES, DRIVER_BINARIES, DriverFile, choose_mode, driver_files, parse_ldconfig,
                                    parse_smi_versions)
from anklume.resolve.gpus import SMI_FIELDS, GpuCard, join_inventory, parse_nvidia_smi_csv, parse_resources, with_driver
from anklume.units.preflight import HostGpus

SMI_TIMEOUT_S = 30.0
#: Where ``ldconfig`` is when it is not on PATH (Debian keeps it in /sbin, off a user's PATH).
LDCONFIG_PATHS = ("/sbin/ldconfig", "/usr/sbin/ldconfig")
#: Where Incus finds nvidia-container-cli for ``nvidia.runtime``: its PATH.
CONTAINER_CLI = "nvidia-container-cli"


def host_arch() -> str:
    """This machine's architecture in Incus's words (``x86_64``, ``aarch64``)."""
    machine = platform.machine()
    return {"amd64": "x86_64", "arm64": "aarch64"}.get(machine.lower(), machine)


def is_local(endpoint: str) -> bool:
    """A unix socket: the Incus server is this machine, whose GPUs and driver anklume may read."""
    return endpoint.startswith("/")


def fetch_inventory(incus_endpoint: str | None, run_nvidia_smi: bool = True, *,
                    architecture: str | None = None) -> list[GpuCard]:
    """The real GPUs of the Incus server at ``incus_endpoint`` (None: the local socket).

    nvidia-smi (UUID, VRAM, driver version) runs only when asked, when the endpoint is a local unix
    socket (a remote server's GPUs are not this machine's) and when the binary is on PATH; then the
    driver's user space is read too (:func:`host_driver`), for containers of ``architecture``
    (default: this machine's)."""
    reader = IncusReader(incus_endpoint)
    cards = parse_resources(reader.resources(), source=f"Incus at {reader.endpoint}: /1.0/resources")
    if run_nvidia_smi and is_local(reader.endpoint):
        cards = with_local_details(cards, architecture)
    return cards


def with_local_details(cards: list[GpuCard], architecture: str | None = None) -> list[GpuCard]:
    """``cards`` (this machine's) joined with nvidia-smi and the driver's user space, when
    nvidia-smi is on PATH; unchanged otherwise."""
    binary = shutil.which("nvidia-smi")
    if cards and binary:
        cards = join_inventory(cards, parse_nvidia_smi_csv(query_nvidia_smi(binary)))
        if any(card.vendor_id == "10de" for card in cards):
            cards = host_driver(cards, binary, architecture or host_arch())
    return cards


def member_inventory(reader: IncusReader, member: str, resources: Mapping | None = None, *,
                     local: bool = False, architecture: str | None = None) -> list[GpuCard]:
    """The GPUs of cluster member ``member`` (``/1.0/resources?target=``, or ``resources`` already
    read); ``local``: that member is this machine (nvidia-smi and the driver's files are read)."""
    if resources is None:
        resources = reader.resources(target=member)
    cards = parse_resources(resources, source=f"Incus at {reader.endpoint}: /1.0/resources?target={member}")
    return with_local_details(cards, architecture) if local else cards


def run_tool(argv: Sequence[str], hint: str) -> str:
    """The standard output of a host program, or a SourceError naming it."""
    binary = argv[0]
    try:
        done = subprocess.run(list(argv), capture_output=True, text=True, timeout=SMI_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        raise SourceError(f"{binary} did not answer within {SMI_TIMEOUT_S:g} s") from None
    except OSError as err:
        raise SourceError(f"cannot run {binary}: {err.strerror or err}") from None
    if done.returncode != 0:
        detail = (done.stderr or done.stdout).strip().splitlines()
        raise SourceError(f"{binary} failed (exit {done.returncode}): {detail[0] if detail else 'no message'}", hint)
    return done.stdout


_SMI_HINT = "is the NVIDIA driver loaded? `nvidia-smi` alone shows the same error"


def query_nvidia_smi(binary: str) -> str:
    """The CSV (with header) of ``nvidia-smi --query-gpu=<SMI_FIELDS> --format=csv``."""
    return run_tool([binary, "--query-gpu=" + ",".join(SMI_FIELDS), "--format=csv"], _SMI_HINT)


def ldconfig_binary() -> str | None:
    return shutil.which("ldconfig") or next((p for p in LDCONFIG_PATHS if os.access(p, os.X_OK)), None)


def host_driver(cards: Sequence[GpuCard], smi: str, arch: str) -> list[GpuCard]:
    """``cards`` with the host's NVIDIA driver: the CUDA version it supports (``nvidia-smi -q -x``),
    and which way it reaches a container (:func:`anklume.resolve.driver.choose_mode`) with, for
    ``files``, the files and their sha256."""
    driver_version, cuda = parse_smi_versions(run_tool([smi, "-q", "-x"], _SMI_HINT))
    version = driver_version or next((c.driver_version for c in cards if c.vendor_id == "10de" and c.driver_version),
                                     None)
    cli = shutil.which(CONTAINER_CLI) is not None
    files: list[GpuDriverFile] = []
    if not cli and version and arch in ARCHES:
        files = discover_files(version, arch)
        mode = choose_mode(container_cli=False, files=[DriverFile(f.target, f.source) for f in files])
    else:
        mode = choose_mode(container_cli=cli, files=[])
    if driver_version:
        cards = [c if c.vendor_id != "10de" else msgspec.structs.replace(c, driver_version=driver_version)
                 for c in cards]
    return with_driver(cards, cuda_version=cuda, mode=mode, files=files)


def discover_files(version: str, arch: str) -> list[GpuDriverFile]:
    """The driver's files a container of ``arch`` needs, found as nvidia-container-cli finds them
    (:func:`anklume.resolve.driver.driver_files`), each hashed."""
    ldconfig = ldconfig_binary()
    if ldconfig is None:
        return []
    entries = parse_ldconfig(run_tool([ldconfig, "-p"], "the host's linker cache cannot be read"))
    resolved = {e.path: os.path.realpath(e.path) for e in entries if os.path.isfile(e.path)}
    binaries = {}
    for name in DRIVER_BINARIES:
        found = shutil.which(name)
        if found:
            binaries[name] = os.path.realpath(found)
    chosen = driver_files(entries, resolved, version=version, arch=arch, binaries=binaries)
    hashes = hash_files(sorted({f.source for f in chosen}))
    out = []
    for f in chosen:
        got = hashes.get(f.source)
        if got is not None:
            out.append(GpuDriverFile(target=f.target, source=f.source, sha256=got[1], size=got[0]))
    return out


def hash_files(paths: Iterable[str]) -> dict[str, tuple[int, str] | None]:
    """(size, sha256 hex) of each regular file, None for one that is missing, unreadable or not a
    regular file (opened without blocking: a FIFO named like a library never hangs a build)."""
    out: dict[str, tuple[int, str] | None] = {}
    for path in paths:
        out[path] = None
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
        except OSError:
            continue
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or st.st_size > MAX_DRIVER_FILE_BYTES:
                continue
            digest = hashlib.sha256()
            size = 0
            while chunk := os.read(fd, 1 << 20):
                digest.update(chunk)
                size += len(chunk)
            out[path] = (size, digest.hexdigest())
        except OSError:
            continue
        finally:
            os.close(fd)
    return out


def host_gpus(resources: Mapping, endpoint: str, sources: Iterable[str] = ()) -> HostGpus:
    """The host's GPUs from Incus's ``resources`` (of the server at ``endpoint``), joined with
    nvidia-smi when the server is this machine, and the size and sha256 of each of ``sources``
    (the pinned driver files) there."""
    cards = parse_resources(resources, source=f"Incus at {endpoint}: /1.0/resources")
    if not is_local(endpoint):
        return HostGpus(cards=cards, local=False)
    binary = shutil.which("nvidia-smi")
    smi_error = None
    if cards and binary:
        try:
            cards = join_inventory(cards, parse_nvidia_smi_csv(query_nvidia_smi(binary)))
        except SourceError as err:  # a broken driver refuses the GPU containers, not the whole build
            smi_error = err.message
    return HostGpus(cards=cards, local=True, container_cli=shutil.which(CONTAINER_CLI) is not None,
                    files=hash_files(sorted(set(sources))), smi_error=smi_error)

"""Is the pinned GPU usable inside its container?  ``verify --live`` asks the container itself.

For each running GPU container whose pin records the driver (:class:`anklume.lock.schema.GpuDriver`):

- ``nvidia-smi --query-gpu=uuid,driver_version --format=csv,noheader``, run inside it through the
  Incus API: it must answer (else the driver is not usable there: no ``nvidia-smi``, no
  libraries, or a library that does not match the kernel's driver), list the pinned card's UUID,
  and the pinned driver version;
- in ``files`` mode, each mounted file's sha256 as the container reads it, against the pin (a
  host file changed under the mount: a driver upgraded without ``anklume lock --update gpus``).

One exec for nvidia-smi and one for the hashes, per container.
"""

from __future__ import annotations

from collections.abc import Mapping

from anklume.backends.base import Backend
from anklume.backends.incus.files import InstanceIOError
from anklume.lock.schema import Lock
from anklume.units.findings import Finding
from anklume.units.graph import Graph
from anklume.units.unit import LiveObject

SMI_ARGV = ("nvidia-smi", "--query-gpu=uuid,driver_version", "--format=csv,noheader")
SMI_TIMEOUT_S = 60.0
#: What a shell (and Incus's exec) answers for a command it cannot find.
NOT_FOUND = 127


def parse_smi_rows(text: str) -> list[tuple[str, str]]:
    """(uuid, driver version) of each line of :data:`SMI_ARGV`'s output."""
    rows = []
    for line in text.splitlines():
        uuid, _, version = (part.strip() for part in line.partition(","))
        if uuid:
            rows.append((uuid, version))
    return rows


def gpu_container_findings(backend: Backend, graph: Graph, live: Mapping[str, LiveObject], lock: Lock
                           ) -> list[Finding]:
    found: list[Finding] = []
    for machine, pin in sorted(lock.gpus.items()):
        unit, obj = graph.get(f"instance:{machine}"), live.get(f"instance:{machine}")
        driver = pin.driver
        if (driver is None or unit is None or unit.spec.get("type") != "container" or obj is None
                or obj.status != "Running" or obj.project != unit.project):
            continue
        uid = f"gpu:{machine}"
        where = "nvidia-smi in the container"
        io = backend.instance_io(unit.project, unit.object)
        expected = f"the driver usable: card {pin.locked.uuid or pin.locked.pci}, driver {driver.version}"
        try:
            result = io.exec(list(SMI_ARGV), check=False, timeout=SMI_TIMEOUT_S)
        except InstanceIOError as err:
            found.append(Finding(uid, where, expected, err.message))
            result = None
        if result is not None and result.rc != 0:
            text = (result.stderr or result.stdout).decode("utf-8", "replace").strip().splitlines()
            found.append(Finding(uid, where, expected, "nvidia-smi not found" if result.rc == NOT_FOUND else
                                 f"exit {result.rc}" + (f": {text[-1][:300]}" if text else "")))
        elif result is not None:
            rows = parse_smi_rows(result.stdout.decode("utf-8", "replace"))
            uuids = [u for u, _v in rows]
            if pin.locked.uuid and pin.locked.uuid not in uuids:
                found.append(Finding(uid, f"uuid ({where})", pin.locked.uuid, ", ".join(uuids) or None))
            for version in sorted({v for _u, v in rows if v != driver.version}):
                found.append(Finding(uid, f"driver_version ({where})", driver.version, version or None))
        if driver.mode == "files" and driver.files:
            try:
                hashes = io.sha256([f.target for f in driver.files])
            except InstanceIOError as err:
                found.append(Finding(uid, "driver files (in the container)", "readable", err.message))
                continue
            for f in driver.files:
                got = hashes.get(f.target)
                if got != f.sha256:
                    found.append(Finding(uid, f.target, f"sha256 {f.sha256}",
                                         "missing" if got is None else f"sha256 {got}"))
    return found

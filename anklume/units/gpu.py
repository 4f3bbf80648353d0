"""What a GPU container gets besides its card, from its pin's driver (pure).

- ``runtime``: ``nvidia.runtime=true``; Incus has the host's nvidia-container-cli mount the
  driver's user space when the container starts (Incus's default capabilities,
  ``compute,utility``: CUDA and nvidia-smi);
- ``files``: one read-only ``disk`` device per pinned file (``nvidia-<file name>``, see
  :func:`anklume.resolve.driver.device_name`), the host's file at the pinned target;
- a VM, and a pin made before drivers were pinned (no ``driver``): the card only.
"""

from __future__ import annotations

from anklume.lock.schema import GpuDriver
from anklume.resolve.driver import device_name


def driver_config(driver: GpuDriver | None) -> dict[str, str]:
    """The instance config the driver's mode asks for."""
    if driver is not None and driver.mode == "runtime":
        return {"nvidia.runtime": "true"}
    return {}


def driver_devices(driver: GpuDriver | None) -> dict[str, dict[str, str]]:
    """The read-only disk devices of the driver's files (``files`` mode)."""
    if driver is None or driver.mode != "files":
        return {}
    return {device_name(f.target): {"type": "disk", "source": f.source, "path": f.target, "readonly": "true"}
            for f in driver.files}

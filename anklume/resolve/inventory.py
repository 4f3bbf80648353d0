"""Read the GPU inventory from the host: Incus resources, plus nvidia-smi when it is local.

The parsing lives in :mod:`anklume.resolve.gpus`; this module only asks the questions.
"""

from __future__ import annotations

import shutil
import subprocess

from anklume.backends.incus.reader import IncusReader
from anklume.errors import SourceError
from anklume.resolve.gpus import SMI_FIELDS, GpuCard, join_inventory, parse_nvidia_smi_csv, parse_resources

SMI_TIMEOUT_S = 30.0


def fetch_inventory(incus_endpoint: str | None, run_nvidia_smi: bool = True) -> list[GpuCard]:
    """The real GPUs of the Incus server at ``incus_endpoint`` (None: the local socket).

    nvidia-smi (UUID, VRAM) runs only when asked, when the endpoint is a local unix socket
    (a remote server's GPUs are not this machine's) and when the binary is on PATH.
    """
    reader = IncusReader(incus_endpoint)
    cards = parse_resources(reader.resources(), source=f"Incus at {reader.endpoint}: /1.0/resources")
    binary = shutil.which("nvidia-smi")
    if cards and run_nvidia_smi and reader.endpoint.startswith("/") and binary:
        cards = join_inventory(cards, parse_nvidia_smi_csv(query_nvidia_smi(binary)))
    return cards


def query_nvidia_smi(binary: str) -> str:
    """The CSV (with header) of ``nvidia-smi --query-gpu=<SMI_FIELDS> --format=csv``."""
    argv = [binary, "--query-gpu=" + ",".join(SMI_FIELDS), "--format=csv"]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=SMI_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        raise SourceError(f"{binary} did not answer within {SMI_TIMEOUT_S:g} s") from None
    except OSError as err:
        raise SourceError(f"cannot run {binary}: {err.strerror or err}") from None
    if done.returncode != 0:
        detail = (done.stderr or done.stdout).strip().splitlines()
        raise SourceError(
            f"{binary} failed (exit {done.returncode}): {detail[0] if detail else 'no message'}",
            "is the NVIDIA driver loaded? `nvidia-smi` alone shows the same error",
        )
    return done.stdout

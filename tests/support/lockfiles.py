"""The committed locks of the examples (``lockfiles/<example>.lock``): each is
the example locked against the recorded real data (``RecordedMirror``), with
the recorded H200 inventory for GPU machines.

``python -m tests.support.lockfiles`` rewrites them; the test
``tests/lock/test_lockfiles.py`` re-locks and demands identical bytes.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from anklume.lock.assemble import lock_infra
from anklume.lock.codec import encode_lock
from anklume.model.load import load_infra
from anklume.resolve.resolver import LiveResolver
from tests.support.mirror import RecordedMirror
from tests.support.recorded import FIXTURES

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
LOCKFILES = REPO / "lockfiles"
H200_INVENTORY = FIXTURES / "gpu" / "h200-incus" / "incus-resources.json"
H200_SMI = FIXTURES / "gpu" / "h200-nvidia-smi" / "nvidia-smi-query.csv"


#: Examples whose images are the Incus daemon's own (``local:``): they are locked
#: against the daemon they are built into (scripts/demo.sh), not the recorded data.
DAEMON_EXAMPLES = {"quickstart", "llm-quickstart"}


def example_names() -> list[str]:
    """The examples locked against the recorded data, with a lock in lockfiles/."""
    return sorted(p.parent.name for p in EXAMPLES.glob("*/infra.yml") if p.parent.name not in DAEMON_EXAMPLES)


def lock_example(name: str, env: dict[str, str], cache: Path) -> bytes:
    infra_file = EXAMPLES / name / "infra.yml"
    infra = load_infra(infra_file.read_bytes(), str(infra_file))
    resolver = LiveResolver(infra, env, gpu_inventory=H200_INVENTORY, nvidia_smi=H200_SMI, cache_dir=cache)
    return encode_lock(lock_infra(infra, None, resolver))


def main() -> None:
    with RecordedMirror() as mirror, tempfile.TemporaryDirectory() as cache:
        for name in example_names():
            data = lock_example(name, mirror.env(), Path(cache))
            (LOCKFILES / f"{name}.lock").write_bytes(data)
            print(f"wrote lockfiles/{name}.lock", file=sys.stderr)


if __name__ == "__main__":
    main()

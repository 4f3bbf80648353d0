"""The Incus half of ``scripts/demo.sh``: a private incusd in a network
namespace (never the host's daemon), a busybox image built locally, then
``anklume lock``, ``build``, ``verify --live`` and a second, no-op ``build``
on ``examples/quickstart``.  Everything is torn down at the end."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.support.incusd import PrivateIncus  # noqa: E402


def step(argv: list[str], env: dict[str, str], ok=(0,)) -> None:
    print(f"\n\033[1m$ anklume {' '.join(argv)}\033[0m", flush=True)
    rc = subprocess.run([str(REPO / ".venv" / "bin" / "anklume"), *argv], env=env).returncode
    if rc not in ok:
        sys.exit(f"demo: `anklume {' '.join(argv)}` exited {rc}")


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="anklume-demo-incus.") as tmp, PrivateIncus() as incus:
        fingerprint = incus.ensure_busybox_image()
        print(f"demo: private incusd at {incus.socket} (network namespace {incus.netns}); "
              f"image busybox = {fingerprint[:12]}")
        project = Path(tmp) / "quickstart"
        shutil.copytree(REPO / "examples" / "quickstart", project)
        env = {**os.environ, "ANKLUME_INCUS": incus.socket, "ANKLUME_CACHE_DIR": f"{tmp}/cache",
               "XDG_DATA_HOME": f"{tmp}/data"}
        f = ["-f", str(project / "infra.yml")]
        step(["lock", *f], env)
        step(["build", *f, "--plan"], env, ok=(2,))
        step(["build", *f], env)
        step(["verify", *f, "--live"], env)
        step(["build", *f, "--plan"], env, ok=(0,))
        step(["build", *f], env)
        print("\ndemo: the instances as Incus sees them:")
        for project_name in ("web", "lab"):
            print(incus.incus("list", "--project", project_name, "--format", "csv", "-c", "ns4"), end="")


if __name__ == "__main__":
    main()

"""The Incus half of ``scripts/demo.sh``: a private incusd in a network
namespace (never the host's daemon), a busybox image built locally, then
``anklume lock``, ``build``, ``verify --live`` and a second, no-op ``build``
on ``examples/quickstart``.

Then ``examples/llm-quickstart``: a minimal Debian image with python3 (built once
by mmdebstrap, then cached), a model in a real OCI registry on loopback, and
the Ollama release and Open WebUI package from a loopback server.  This
machine cannot download the real Ollama program, real models or Open WebUI's
dependencies, so those three are small stand-ins (tests/support: the
``ollama`` program inside the release answers ``--version`` and ``list``);
Incus, the registry, the artefact store, Ansible and the roles are real.
``anklume lock``, ``build``, ``verify --live --deep``, then ``ollama list``
inside the instance shows the pinned digest.  Everything is torn down at the
end."""

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


def llm_demo(incus: PrivateIncus, tmp: str) -> None:
    from tests.support.httpserve import StaticHTTPServer
    from tests.support.models import make_model, push_model
    from tests.support.ollama_double import build_ollama_release
    from tests.support.registry import LocalRegistry
    from tests.support.webui_double import pypi_files

    print("\ndemo: examples/llm-quickstart (building the minimal Debian image once takes about 40 s)", flush=True)
    incus.ensure_debian_python_image("debian-python")
    with LocalRegistry() as registry, StaticHTTPServer({}) as server:
        model = make_model(seed=1)
        push_model(registry, "anklume-demo/tiny", "1", model.manifest, model.blobs)
        tarball, sums, asset = build_ollama_release("0.13.1")
        server.files.update({"/v0.13.1/sha256sum.txt": sums, f"/v0.13.1/{asset}": tarball,
                             **pypi_files("0.12.4", server.url)})
        print(f"demo: registry {registry.url} holds anklume-demo/tiny:1 = {model.digest[:19]}...; "
              f"{server.url} serves the Ollama release and the open-webui package (stand-ins)")
        project = Path(tmp) / "llm-quickstart"
        shutil.copytree(REPO / "examples" / "llm-quickstart", project)
        env = {**os.environ, "ANKLUME_INCUS": incus.socket, "ANKLUME_CACHE_DIR": f"{tmp}/cache",
               "XDG_DATA_HOME": f"{tmp}/data", "ANKLUME_OLLAMA_REGISTRY": registry.url,
               "ANKLUME_OLLAMA_RELEASES": server.url, "ANKLUME_PYPI": server.url}
        f = ["-f", str(project / "infra.yml")]
        step(["lock", *f], env)
        step(["build", *f], env)
        step(["verify", *f, "--live", "--deep"], env)
        step(["build", *f], env)
        print("\n\033[1m$ incus exec ai-ollama --project ai -- ollama list\033[0m", flush=True)
        print(incus.incus("exec", "ai-ollama", "--project", "ai", "--env", "OLLAMA_MODELS=/root/.ollama/models",
                          "--", "/usr/local/bin/ollama", "list"), end="")
        print(f"demo: the ID is the lock's digest: {model.digest[7:19]}")
        print(incus.incus("exec", "ai-webui", "--project", "ai", "--", "grep", "OLLAMA_BASE_URL",
                          "/etc/systemd/system/open-webui.service"), end="")


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
        llm_demo(incus, tmp)


if __name__ == "__main__":
    main()

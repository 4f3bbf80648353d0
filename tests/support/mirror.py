"""A loopback mirror of the recorded real data in tests/fixtures: the
simplestreams catalogue, the Ollama manifests, the Ollama release checksum
files (and stand-in sizes of their assets, answered to HEAD) and PyPI's JSON answers for open-webui, laid out as anklume's sources expect.  Used by the tests, the lockfiles
of the examples and ``scripts/demo.sh``.

    with RecordedMirror() as mirror:
        env = mirror.env()   # ANKLUME_IMAGES_URL, ANKLUME_OLLAMA_REGISTRY, ANKLUME_OLLAMA_RELEASES, ANKLUME_PYPI

``python -m tests.support.mirror ENV_FILE`` serves until killed, after writing
the variables to ENV_FILE (``KEY=value`` lines).
"""

from __future__ import annotations

import hashlib
import json
import signal
import sys
from pathlib import Path

from tests.support.httpserve import StaticHTTPServer
from tests.support.recorded import (GEMMA, LLAMA, catalogue, hermit_digests, index_for, pypi_files, pypi_project,
                                    release_asset_sizes, sha256sum_txt)

#: Where each recorded manifest is served: the registry path of the real model.
MANIFESTS = {
    "/registry/v2/library/gemma/manifests/2b": GEMMA,
    "/registry/v2/library/llama3.2/manifests/3b": LLAMA,
}


def recorded_files() -> dict[str, bytes]:
    doc = catalogue()
    files = {
        "/images/streams/v1/index.json": index_for(doc),
        "/images/streams/v1/images.json": json.dumps(doc).encode(),
    }
    for path, source in MANIFESTS.items():
        files[path] = source.read_bytes()
    for version in hermit_digests():
        files[f"/releases/v{version}/sha256sum.txt"] = sha256sum_txt(version)
    files.update(pypi_files(pypi_project(), prefix="/pypi"))
    return files


class RecordedMirror(StaticHTTPServer):
    def __init__(self) -> None:
        files = recorded_files()
        sizes = {path: n for version in hermit_digests() for path, n in release_asset_sizes(version, "/releases").items()}
        super().__init__(files, content_types={p: "application/vnd.docker.distribution.manifest.v2+json"
                                               for p in MANIFESTS}, sizes=sizes)
        self.digests = {p: "sha256:" + hashlib.sha256(files[p]).hexdigest() for p in MANIFESTS}

    def env(self) -> dict[str, str]:
        return {
            "ANKLUME_IMAGES_URL": f"{self.url}/images",
            "ANKLUME_OLLAMA_REGISTRY": f"{self.url}/registry",
            "ANKLUME_OLLAMA_RELEASES": f"{self.url}/releases",
            "ANKLUME_PYPI": f"{self.url}/pypi",
        }


def main(env_file: str) -> None:
    with RecordedMirror() as mirror:
        tmp = Path(env_file + ".tmp")
        tmp.write_text("".join(f"{k}={v}\n" for k, v in mirror.env().items()))
        tmp.replace(env_file)
        signal.sigwait({signal.SIGTERM, signal.SIGINT})


if __name__ == "__main__":
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
    main(sys.argv[1])

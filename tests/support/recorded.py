"""The recorded data the resolver tests serve, and what is derived from it (in plain sight).

Everything comes from tests/fixtures (see each folder's PROVENANCE.txt).  Where a test needs
a shape the recordings lack (an incus.tar.xz item, a VM image, a newer version), the change is
made here, by a named function, on top of the recorded JSON.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"

CROSTINI = FIXTURES / "simplestreams" / "crostini-tast-images.json"
GEMMA = FIXTURES / "ollama" / "registry.ollama.ai_library_gemma_2b.manifest.json"
LLAMA = FIXTURES / "ollama" / "registry.ollama.ai_library_llama3.2_3b.manifest.json"
HERMIT = FIXTURES / "ollama-releases" / "hermit-ollama.hcl.excerpt.txt"
H200_RESOURCES = FIXTURES / "gpu" / "h200-incus" / "incus-resources.json"
H200_SMI_CSV = FIXTURES / "gpu" / "h200-nvidia-smi" / "nvidia-smi-query.csv"
H200_SMI_XML = FIXTURES / "gpu" / "h200-nvidia-smi" / "nvidia-smi-q.xml"
#: NOT recordings: written by hand (see fixtures/gpu/synthesised/PROVENANCE.txt).
LDCONFIG_P = FIXTURES / "gpu" / "synthesised" / "ldconfig-p.txt"
LDCONFIG_LINKS = FIXTURES / "gpu" / "synthesised" / "links.json"
LXD_9201 = FIXTURES / "gpu" / "lxd-issue-9201-resources-gpu-excerpt.json"
PYPI_OPEN_WEBUI = FIXTURES / "pypi" / "open-webui.json"

BUSTER_AMD64 = "debian:buster:amd64:default"


def catalogue() -> dict:
    """The recorded Crostini products:1.0 catalogue (LXD-era: lxd.tar.xz items)."""
    return json.loads(CROSTINI.read_bytes())


def index_for(doc: dict, path: str = "streams/v1/images.json") -> bytes:
    """A streams/v1/index.json in the shape incus-simplestreams writes (protocols.md §1.2)."""
    entry = {"datatype": "image-downloads", "path": path, "format": "products:1.0",
             "products": sorted(doc["products"])}
    return json.dumps({"format": "index:1.0", "index": {"images": entry}}).encode()


def with_incus_items(doc: dict) -> dict:
    """Each lxd.tar.xz item duplicated as incus.tar.xz (what an Incus-era server publishes)."""
    doc = copy.deepcopy(doc)
    for product in doc["products"].values():
        for version in product["versions"].values():
            lxd = version["items"]["lxd.tar.xz"]
            incus = dict(lxd, ftype="incus.tar.xz", path=lxd["path"].replace("lxd.tar.xz", "incus.tar.xz"))
            version["items"]["incus.tar.xz"] = incus
    return doc


def without_ftype(doc: dict, ftype: str) -> dict:
    """The catalogue with every item of ``ftype`` removed."""
    doc = copy.deepcopy(doc)
    for product in doc["products"].values():
        for version in product["versions"].values():
            version["items"] = {k: v for k, v in version["items"].items() if v["ftype"] != ftype}
    return doc


def simplestreams_files(doc: dict) -> dict[str, bytes]:
    """{path: bytes} for a StaticHTTPServer: the index and the catalogue."""
    return {"/streams/v1/index.json": index_for(doc), "/streams/v1/images.json": json.dumps(doc).encode()}


def hermit_digests() -> dict[str, dict[str, str]]:
    """version -> {asset: sha256}, from the recorded hermit lines."""
    line = re.compile(r'"https://github\.com/ollama/ollama/releases/download/v([^/]+)/([^"]+)": "([0-9a-f]{64})"')
    out: dict[str, dict[str, str]] = {}
    for version, asset, digest in line.findall(HERMIT.read_text()):
        out.setdefault(version, {})[asset] = digest
    return out


def pypi_project() -> dict:
    """The recorded ``/pypi/open-webui/json`` answer (latest 0.12.4, 171 releases, relative file URLs)."""
    return json.loads(PYPI_OPEN_WEBUI.read_bytes())


def pypi_version_doc(doc: dict, version: str) -> dict:
    """The ``/pypi/open-webui/<version>/json`` answer derived from the project answer, in the
    shape PyPI gives it (no ``releases``; ``urls`` are that release's files).  For the latest
    version ``info`` is the recorded one; for the others it is reduced to name and version
    (the recording has no other release's metadata).  Relative file URLs get one more
    ``../``: the answer lives one folder deeper."""
    files = copy.deepcopy(doc["releases"][version])
    for f in files:
        if not f["url"].startswith(("http://", "https://", "/")):
            f["url"] = "../" + f["url"]
    info = copy.deepcopy(doc["info"]) if version == doc["info"]["version"] else {
        "name": doc["info"]["name"], "version": version}
    return {"info": info, "last_serial": doc["last_serial"], "urls": files, "vulnerabilities": []}


def with_absolute_file_urls(doc: dict) -> dict:
    """File URLs as pypi.org itself writes them (``https://files.pythonhosted.org/packages/...``);
    the recording, served by a mirror, has ``../../packages/packages/...`` instead."""
    doc = copy.deepcopy(doc)
    for f in [*doc["urls"], *(f for files in doc["releases"].values() for f in files)]:
        f["url"] = "https://files.pythonhosted.org/packages/" + f["url"].removeprefix("../../packages/packages/")
    return doc


def pypi_files(doc: dict, *, per_version: bool = True, prefix: str = "") -> dict[str, bytes]:
    """{path: bytes} of a PyPI JSON API for ``doc``: the project answer (the recorded bytes when
    ``doc`` is the recording) and, with ``per_version``, one answer per release."""
    name = doc["info"]["name"]
    body = PYPI_OPEN_WEBUI.read_bytes() if doc == pypi_project() else json.dumps(doc).encode()
    files = {f"{prefix}/pypi/{name}/json": body}
    if per_version:
        for version in doc["releases"]:
            files[f"{prefix}/pypi/{name}/{version}/json"] = json.dumps(pypi_version_doc(doc, version)).encode()
    return files


#: The recordings hold no release asset sizes (hermit records digests only; sha256sum.txt names
#: none): the mirror answers a HEAD of any asset with this stand-in length.  Real
#: ollama-linux-amd64 tarballs weigh 1.2 to 2 GB.
STANDIN_ASSET_SIZE = 1_600_000_000


def release_asset_sizes(version: str, prefix: str = "") -> dict[str, int]:
    """{path: stand-in size} of every asset of release ``version`` under ``prefix``, for a
    StaticHTTPServer's ``sizes`` (HEAD answers)."""
    return {f"{prefix}/v{version}/{asset}": STANDIN_ASSET_SIZE for asset in hermit_digests()[version]}


def sha256sum_txt(version: str) -> bytes:
    """A release's sha256sum.txt as the release workflow writes it (``./`` names, unsorted)."""
    assets = hermit_digests()[version]
    names = sorted(assets, reverse=True)  # any order but sorted: find(1) order is not sorted
    return "".join(f"{assets[name]}  ./{name}\n" for name in names).encode()

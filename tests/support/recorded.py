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
LXD_9201 = FIXTURES / "gpu" / "lxd-issue-9201-resources-gpu-excerpt.json"

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


def sha256sum_txt(version: str) -> bytes:
    """A release's sha256sum.txt as the release workflow writes it (``./`` names, unsorted)."""
    assets = hermit_digests()[version]
    names = sorted(assets, reverse=True)  # any order but sorted: find(1) order is not sorted
    return "".join(f"{assets[name]}  ./{name}\n" for name in names).encode()

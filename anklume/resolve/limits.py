"""How many bytes anklume reads at most for each kind of document: plain data, no I/O.

A body longer than its limit is refused (never truncated) with an error naming the URL; a
``Content-Length`` beyond it is refused before the body is read.  The limits are generous
for real data and keep a misbehaving source from filling memory.
"""

from __future__ import annotations

from typing import NamedTuple

MiB = 1 << 20


class Limit(NamedTuple):
    """The most bytes anklume reads for one kind of document, and its name in errors.

    ``total``: set when ``size`` is what is left of a limit shared by several documents."""

    size: int
    what: str
    total: int | None = None


#: The simplestreams index and the catalogues it names, all together (one resolve holds them
#: all in memory): the real images.linuxcontainers.org and cloud-images catalogues are a few
#: to tens of MB.
CATALOGUE_LIMIT = Limit(128 * MiB, "the simplestreams index and catalogues, all together")
#: An Ollama (Docker v2) manifest: a few hundred bytes; registries refuse manifests over 4 MiB
#: (distribution's maxManifestBodySize), so no real one is bigger.
MANIFEST_LIMIT = Limit(4 * MiB, "an Ollama manifest")
#: A release's sha256sum.txt: one line per asset, about 2 KB.
CHECKSUMS_LIMIT = Limit(1 * MiB, "a release's sha256sum.txt")
#: A PyPI JSON answer: every file of every release of a project (open-webui: 0.3 MB; the
#: largest projects reach tens of MB).
PYPI_LIMIT = Limit(64 * MiB, "a PyPI JSON answer")
#: Any other document.
DEFAULT_LIMIT = Limit(16 * MiB, "it")

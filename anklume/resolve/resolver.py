"""``LiveResolver``: the I/O side of ``anklume lock``, one method per pin kind.

It is the only object ``lock_infra`` asks; each question goes to the source
configured for it (defaults, ``global.sources``, environment), through the
cached fetcher.  ``--offline`` answers from the cache or says what is missing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import msgspec

from anklume.errors import AnklumeError, OfflineMiss
from anklume.fsio import default_cache_dir, read_input
from anklume.lock.schema import (ImageLocked, ImageOriginal, ModelLocked, OllamaLocked, OllamaOriginal,
                                 OpenWebUILocked, OpenWebUIOriginal)
from anklume.model.schema import Infra
from anklume.resolve.gpus import GpuCard, join_inventory, parse_inventory_file, parse_nvidia_smi_csv
from anklume.resolve.http import Fetcher, fetch_deadline
from anklume.resolve.ollama import resolve_model, resolve_release
from anklume.resolve.pypi import resolve_open_webui
from anklume.resolve.simplestreams import resolve_image, resolve_local_image
from anklume.sources import effective_sources


class LiveResolver:
    def __init__(self, infra: Infra, env: Mapping[str, str], *, offline: bool = False,
                 gpu_inventory: Path | None = None, nvidia_smi: Path | None = None,
                 cache_dir: Path | None = None):
        self.sources = effective_sources(msgspec.structs.asdict(infra.global_.sources), env)
        self.offline = offline
        self.fetcher = Fetcher(cache_dir or default_cache_dir(env), offline=offline, deadline=fetch_deadline(env))
        self.gpu_inventory_file = gpu_inventory
        self.nvidia_smi_file = nvidia_smi
        self.architecture = infra.global_.architecture  # of the containers the driver's files are for
        self._incus = None

    def _reader(self):
        if self._incus is None:
            from anklume.backends.incus.reader import IncusReader

            self._incus = IncusReader(self.sources.incus)
        return self._incus

    def image(self, original: ImageOriginal) -> ImageLocked:
        if original.remote == "local":
            if self.offline:
                raise OfflineMiss(f"local:{original.alias} is not in the lock and --offline forbids asking Incus",
                                  "run `anklume lock` without --offline")
            return resolve_local_image(self._reader(), original.alias, architecture=original.architecture,
                                       type=original.type)
        return resolve_image(self.fetcher, self.sources.images, original.alias, original.architecture,
                             original.type)

    def ollama(self, original: OllamaOriginal) -> OllamaLocked:
        return resolve_release(self.fetcher, self.sources.ollama_releases, original.version,
                               original.architecture)

    def model(self, ref: str) -> ModelLocked:
        return resolve_model(self.fetcher, self.sources.ollama_registry, ref)

    def open_webui(self, original: OpenWebUIOriginal) -> OpenWebUILocked:
        return resolve_open_webui(self.fetcher, self.sources.pypi, original.version)

    def gpu_inventory(self) -> Sequence[GpuCard]:
        if self.gpu_inventory_file is not None:
            cards = parse_inventory_file(_read(self.gpu_inventory_file),
                                         source=str(self.gpu_inventory_file))
        elif self.offline:
            raise OfflineMiss("GPU machines need the host's GPU inventory and --offline forbids asking Incus",
                              "pass --gpu-inventory FILE, or lock without --offline")
        else:
            from anklume.resolve.inventory import fetch_inventory

            cards = fetch_inventory(self.sources.incus, run_nvidia_smi=self.nvidia_smi_file is None,
                                    architecture=self.architecture)
        if self.nvidia_smi_file is not None:
            smi = _read(self.nvidia_smi_file).decode("utf-8", "replace")
            cards = join_inventory(cards, parse_nvidia_smi_csv(smi, source=str(self.nvidia_smi_file)))
        return cards


def _read(path: Path) -> bytes:
    data = read_input(path)
    if data is None:
        raise AnklumeError(f"{path}: no such file")
    return data

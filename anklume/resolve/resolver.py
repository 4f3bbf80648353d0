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
from anklume.lock.placement import ONLINE, ClusterFacts
from anklume.lock.schema import (ImageLocked, ImageOriginal, ModelLocked, OllamaLocked, OllamaOriginal,
                                 OpenWebUILocked, OpenWebUIOriginal)
from anklume.model.schema import Infra
from anklume.resolve.cluster import parse_cluster, parse_members, with_resources
from anklume.resolve.gpus import GpuCard, join_inventory, parse_inventory_file, parse_inventory_map, parse_nvidia_smi_csv
from anklume.resolve.http import Fetcher, fetch_deadline
from anklume.resolve.ollama import resolve_model, resolve_release
from anklume.resolve.pypi import resolve_open_webui
from anklume.resolve.simplestreams import resolve_image, resolve_local_image
from anklume.sources import effective_sources, validated_source


class LiveResolver:
    """``gpu_inventory``/``nvidia_smi``: recorded files for a single server (an inventory file may
    also hold a cluster's, member -> cards, as ``anklume gpus --json`` writes it);
    ``member_inventories``/``member_smi``: recorded files per cluster member (``MEMBER=FILE``);
    ``incus``: the endpoint ``--incus`` names (else ANKLUME_INCUS, global.sources.incus, the
    local socket)."""

    def __init__(self, infra: Infra, env: Mapping[str, str], *, offline: bool = False,
                 gpu_inventory: Path | None = None, nvidia_smi: Path | None = None,
                 cache_dir: Path | None = None, member_inventories: Mapping[str, Path] | None = None,
                 member_smi: Mapping[str, Path] | None = None, incus: str | None = None):
        self.sources = effective_sources(msgspec.structs.asdict(infra.global_.sources), env)
        if incus:
            self.sources = msgspec.structs.replace(self.sources, incus=validated_source("incus", incus, "--incus"))
        self.offline = offline
        self.fetcher = Fetcher(cache_dir or default_cache_dir(env), offline=offline, deadline=fetch_deadline(env))
        self.gpu_inventory_file = gpu_inventory
        self.nvidia_smi_file = nvidia_smi
        self.member_inventories = dict(member_inventories or {})
        self.member_smi = dict(member_smi or {})
        self.architecture = infra.global_.architecture  # of the containers the driver's files are for
        self._incus = None
        self._facts: ClusterFacts | None = None
        self._resources: dict[str, dict] = {}  # member -> its /1.0/resources, read with the facts
        self._recorded_map: dict[str, list[GpuCard]] | None = None

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

    def cluster(self) -> ClusterFacts | None:
        """The cluster's members: ``/1.0/cluster``, ``/1.0/cluster/members?recursion=1``, then
        ``/1.0/resources?target=<member>`` for each ``Online`` one (a member that cannot answer is
        recorded with its architecture only).  None when the server is not clustered."""
        if self.offline:
            raise OfflineMiss("its members' facts are needed and --offline forbids asking Incus",
                              "run `anklume lock` without --offline")
        from anklume.backends.incus.reader import MemberNotReady

        reader = self._reader()
        where = f"Incus at {reader.endpoint}"
        server = parse_cluster(reader.cluster(), source=f"{where}: /1.0/cluster")
        if server is None:
            named = sorted(self.member_inventories) + sorted(self.member_smi)
            if named:
                raise AnklumeError(f"--gpu-inventory/--nvidia-smi name member {named[0]} but {where} is not part "
                                   "of a cluster", "give the plain FILE form for a single server")
            return None
        members = parse_members(reader.cluster_members(), source=f"{where}: /1.0/cluster/members")
        for option, files in (("--gpu-inventory", self.member_inventories), ("--nvidia-smi", self.member_smi)):
            unknown = sorted(set(files) - set(members))
            if unknown:
                raise AnklumeError(f"{option} {unknown[0]}=...: {unknown[0]!r} is not a member of the cluster at "
                                   f"{reader.endpoint} (its members: {', '.join(members)})")
        facts = {}
        for name, member in members.items():
            resources = None
            if member.status == ONLINE:
                try:
                    resources = reader.resources(target=name)
                except MemberNotReady:
                    resources = None
            if resources is not None:
                self._resources[name] = resources
            facts[name] = with_resources(member, resources, source=f"{where}: /1.0/resources?target={name}")
        self._facts = ClusterFacts(server_name=server, members=facts)
        return self._facts

    def gpu_inventory(self, member: str | None = None) -> Sequence[GpuCard]:
        """The GPUs of the server (``member`` None), or of one member of the cluster :meth:`cluster` read."""
        if member is not None:
            return self._member_inventory(member)
        if self.member_inventories or self.member_smi:
            named = sorted(self.member_inventories) + sorted(self.member_smi)
            raise AnklumeError(f"--gpu-inventory/--nvidia-smi name member {named[0]} but the lock is for a single "
                               "Incus server", "give the plain FILE form, or point anklume at the cluster")
        if self.gpu_inventory_file is not None and self._recorded_inventories() is not None:
            raise AnklumeError(f"{self.gpu_inventory_file}: an inventory per cluster member, but the lock is for a "
                               "single Incus server",
                               "point anklume at the cluster (--incus, ANKLUME_INCUS or global.sources.incus)")
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


    def _recorded_inventories(self) -> dict[str, list[GpuCard]] | None:
        if self._recorded_map is None and self.gpu_inventory_file is not None:
            self._recorded_map = parse_inventory_map(_read(self.gpu_inventory_file),
                                                     source=str(self.gpu_inventory_file))
        return self._recorded_map

    def _member_inventory(self, member: str) -> list[GpuCard]:
        recorded = self._recorded_inventories() if member not in self.member_inventories else None
        if member in self.member_inventories:
            path = self.member_inventories[member]
            cards = parse_inventory_file(_read(path), source=f"{path} (GPUs of {member})")
        elif recorded is not None:
            if member not in recorded:
                raise AnklumeError(f"{self.gpu_inventory_file}: no inventory of member {member!r} (it has "
                                   f"{', '.join(recorded)})", f"add one with --gpu-inventory {member}=FILE")
            cards = recorded[member]
        elif self.gpu_inventory_file is not None:
            raise AnklumeError(f"--gpu-inventory {self.gpu_inventory_file}: in a cluster, say whose GPUs it lists",
                               f"--gpu-inventory {member}=FILE (one per member), or the output of "
                               "`anklume gpus --json` on the cluster")
        elif self.offline:
            raise OfflineMiss(f"the GPU inventory of member {member} is needed and --offline forbids asking Incus",
                              f"pass --gpu-inventory {member}=FILE, or lock without --offline")
        else:
            from anklume.resolve.inventory import is_local, member_inventory

            reader = self._reader()
            local = (self.nvidia_smi_file is None and member not in self.member_smi and is_local(reader.endpoint)
                     and self._facts is not None and self._facts.server_name == member)
            cards = member_inventory(reader, member, self._resources.get(member), local=local,
                                     architecture=self.architecture)
        if self.nvidia_smi_file is not None and member not in self.member_smi:
            raise AnklumeError(f"--nvidia-smi {self.nvidia_smi_file}: in a cluster, say whose GPUs it lists",
                               f"--nvidia-smi {member}=FILE")
        if member in self.member_smi:
            path = self.member_smi[member]
            smi = _read(path).decode("utf-8", "replace")
            cards = join_inventory(cards, parse_nvidia_smi_csv(smi, source=f"{path} (nvidia-smi of {member})"))
        return cards


def _read(path: Path) -> bytes:
    data = read_input(path)
    if data is None:
        raise AnklumeError(f"{path}: no such file")
    return data

"""The ``infra.yml`` model: msgspec structs with the original's keys, meanings
and defaults (anklume v1 at b859608), plus the keys anklume adds:
``machines.<m>.models``, ``machines.<m>.vars``, ``global.ollama``,
``global.open_webui``, ``global.sources`` and ``global.architecture``.

Pass-through mappings (profiles, config, devices, storage volumes, vars) are kept
as plain dicts in the order the user wrote them, because the generated Ansible
tree copies them verbatim; their shape is checked against the ``*Shape`` structs.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

Scalar = str | int | float | bool
ScalarMap = dict[str, Scalar]


class Base(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    pass


# -- shapes of pass-through mappings (checked, then kept as written) ------------


class ProfileShape(Base):
    description: str | None = None
    devices: dict[str, ScalarMap] | None = None
    config: ScalarMap | None = None


class StorageVolumeShape(Base):
    path: str
    pool: str | None = None
    size: str | int | None = None


# -- the model --------------------------------------------------------------------


class Machine(Base):
    description: str = ""
    type: Literal["lxc", "vm"] = "lxc"
    ip: str | None = None
    ephemeral: bool | None = None  # None: inherit the domain's
    gpu: bool | None = None
    profiles: list[str] | None = None
    config: ScalarMap | None = None
    devices: dict[str, ScalarMap] | None = None
    storage_volumes: dict[str, dict[str, Any]] | None = None
    roles: list[str] | None = None
    os_image: str | None = None
    # anklume additions
    models: list[str] | None = None  # Ollama model references pinned and placed
    vars: dict[str, Any] | None = None  # Ansible variables for the managed host_vars section
    #: the Incus cluster member that runs it (Terraform's ``incus_instance.target``); None: the
    #: domain's ``target``, else ``anklume lock`` places it (docs/cluster.md)
    target: str | None = None


#: The original's trust levels; only ``admin`` changes reachability (it reaches every domain).
TrustLevel = Literal["admin", "trusted", "semi-trusted", "untrusted", "disposable"]


class Domain(Base):
    subnet_id: Annotated[int, msgspec.Meta(ge=0, le=254)]
    description: str = ""
    ephemeral: bool = False
    trust_level: TrustLevel | None = None
    profiles: dict[str, dict[str, Any]] | None = None
    machines: dict[str, Machine] | None = None
    target: str | None = None  # the default cluster member of its machines (docs/cluster.md)


class OllamaSettings(Base):
    version: str = "latest"


class OpenWebUISettings(Base):
    """The Open WebUI package (PyPI ``open-webui``) the ``open_webui`` role installs."""

    version: str = "latest"


class SourcesSettings(Base):
    """Where to fetch from (mirrors).  Never part of the infra hash."""

    images: str | None = None
    ollama_registry: str | None = None
    ollama_releases: str | None = None
    incus: str | None = None
    pypi: str | None = None


class Global(Base):
    base_subnet: str = "10.100"
    default_os_image: str | None = None
    default_connection: str | None = None
    default_user: str | None = None
    gpu_policy: Literal["exclusive", "shared"] = "exclusive"
    firewall_mode: Literal["host", "vm"] = "host"
    # anklume additions
    architecture: Literal["x86_64", "aarch64"] = "x86_64"
    ollama: OllamaSettings = OllamaSettings()
    open_webui: OpenWebUISettings = OpenWebUISettings()
    sources: SourcesSettings = SourcesSettings()


Port = Annotated[int, msgspec.Meta(ge=1, le=65535)]


class NetworkPolicy(Base):
    """A declared flow between domains (the original's later ``network_policies``): ``from`` and
    ``to`` name a domain (its subnet) or a machine (its ``ip``)."""

    from_: str = msgspec.field(name="from")
    to: str
    description: str = ""
    ports: list[Port] | Literal["all"] = "all"
    protocol: Literal["tcp", "udp"] = "tcp"
    bidirectional: bool = False


class Infra(Base):
    project_name: str
    global_: Global = msgspec.field(name="global")
    domains: dict[str, Domain]  # required (may be null or empty), as in the original
    network_policies: list[NetworkPolicy] = []


#: Fallback image when neither the machine nor ``global.default_os_image`` names
#: one (the original's ``incus_instances`` role default).
DEFAULT_OS_IMAGE = "images:debian/13"

"""The nouns of the unit layer: the ``Unit`` (one object anklume owns, with exactly the spec
that is applied) and the ``LiveObject`` (what Incus says about one object)."""

from __future__ import annotations

from typing import Any, Literal

import msgspec

#: Incus objects, then the units placed inside instances (see anklume.units.inside).
Kind = Literal["project", "acl", "network", "profile", "volume", "instance", "ollama", "model", "wheel", "role"]

#: Order in which orphans of each kind are deleted (instances first, projects last; a domain's
#: network ACL after the bridge that uses it: Incus refuses to delete an ACL in use).
DELETE_ORDER: dict[str, int] = {"instance": 0, "volume": 1, "profile": 2, "network": 3, "acl": 4, "project": 5}

#: Config keys anklume writes on every object it manages.
MANAGED_KEY = "user.anklume.managed"
UNIT_KEY = "user.anklume.key"
#: The ``project_name`` of the infra.yml whose build wrote the object: several infrastructures
#: can share one Incus daemon without taking each other's objects for orphans.
OWNER_KEY = "user.anklume.owner"
LEASE_KEY = "user.anklume.lease"


class Unit(msgspec.Struct, frozen=True, kw_only=True):
    """One Incus object.

    ``spec`` is everything that is applied (and hashed); ``identity`` is the part of it that
    cannot change in place (a change there is a *replace*: delete + create, or rebuild).
    ``after`` lists the units that must exist first (ordering only); ``key_deps`` the units
    whose *keys* enter this unit's key (a change there forces a re-apply of this one).
    """

    kind: Kind
    name: str  # "homelab", "homelab/default", "pw-llm"
    project: str  # the Incus project the object lives in ("default" for networks and projects)
    object: str  # the Incus object name: project, "net-<d>", profile, volume or instance name
    spec: dict[str, Any]
    identity: dict[str, Any] = {}
    after: tuple[str, ...] = ()
    key_deps: tuple[str, ...] = ()
    protected: bool = False
    key: str = ""

    @property
    def uid(self) -> str:
        return f"{self.kind}:{self.name}"


def uid_of(kind: str, name: str) -> str:
    return f"{kind}:{name}"


class LiveObject(msgspec.Struct, frozen=True, kw_only=True):
    """What Incus says about one object (from a recursion=1 listing)."""

    kind: str
    name: str  # the unit name it maps to: "d", "d/default", "m", ...
    project: str
    object: str
    config: dict[str, str] = {}
    devices: dict[str, dict[str, str]] = {}
    description: str = ""
    profiles: list[str] = []
    status: str | None = None  # instances: "Running", "Stopped"...; networks: "Created", "Pending"...
    type: str | None = None  # instances: "container" / "virtual-machine"; networks: "bridge"
    pool: str | None = None  # volumes
    architecture: str | None = None  # instances
    #: the cluster member an instance or a custom volume is on (Incus says "none" on a single
    #: server); for a ``member`` (a cluster member: ``kind="member"``, read with the live state
    #: of a cluster build) its ``status`` is the cluster's ("Online", "Offline", "Evacuated"...)
    location: str | None = None
    #: Config values Incus fills in from elsewhere when it creates the object, read by ``verify
    #: --live`` only (a volume: its pool's ``volume.*`` defaults, see anklume.units.findings).
    defaults: dict[str, str] = {}
    #: Network ACLs: their rules by direction (``ingress``, ``egress``) and the API paths of the
    #: objects using them (``/1.0/networks/net-d``: a bridge that still applies it); None: not read.
    rules: dict[str, list[dict[str, str]]] = {}
    used_by: list[str] | None = None
    #: False for an object known only by the key mirrored on its domain's project (a bridge or an
    #: ACL, in the plan of a build: anklume.backends.incus.live.read_live): its config holds the
    #: ``user.anklume.*`` marks only, and an ACL's rules were not read.
    exact: bool = True

    @property
    def uid(self) -> str:
        return f"{self.kind}:{self.name}"

    @property
    def managed(self) -> bool:
        return self.config.get(MANAGED_KEY) == "true"

    @property
    def key(self) -> str | None:
        return self.config.get(UNIT_KEY)

    @property
    def owner(self) -> str | None:
        return self.config.get(OWNER_KEY)

    def owned_by_other(self, owner: str | None) -> bool:
        """Managed by the build of another infra.yml (objects without an owner count as ours)."""
        return owner is not None and self.owner is not None and self.owner != owner

    @property
    def protected(self) -> bool:
        return self.kind == "instance" and self.config.get("security.protection.delete") == "true"

    def identity(self) -> dict[str, Any]:
        if self.kind == "instance":
            return {"type": self.type, "project": self.project, "fingerprint": self.config.get("volatile.base_image")}
        if self.kind == "volume":
            return {"pool": self.pool}
        return {}

    @property
    def domain(self) -> str:
        if self.kind == "project":
            return self.object
        if self.kind == "network":
            return self.object.removeprefix("net-")
        if self.kind == "acl":
            return self.object.removeprefix("acl-")
        return self.project

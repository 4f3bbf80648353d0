"""The ``Unit``: one Incus object anklume owns, with exactly the spec that is applied."""

from __future__ import annotations

from typing import Any, Literal

import msgspec

#: Incus objects, then the units placed inside instances (see anklume.units.provision).
Kind = Literal["project", "network", "profile", "volume", "instance", "ollama", "model", "wheel", "role"]

#: Order in which orphans of each kind are deleted (instances first, projects last).
DELETE_ORDER: dict[str, int] = {"instance": 0, "volume": 1, "profile": 2, "network": 3, "project": 4}

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

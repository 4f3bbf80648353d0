"""Incus through pylxd: the only package that imports pylxd.

- ``client``: one connection (per thread), requests, the translation of pylxd's errors;
- ``reader``: the read-only queries of ``anklume lock`` (resources, local images);
- ``live``: the live state in O(1) requests, and the pure parsers of API objects;
- ``objects``: writes of projects, bridges, profiles, volumes, and deletions;
- ``instance``: the instance lifecycle (create, update, start, rebuild, crash recovery);
- ``lease``: the daemon-wide build lease;
- ``files``: exec and files inside an instance (``InstanceIO``).

:class:`IncusBackend` composes them around one :class:`~anklume.backends.incus.client.IncusClient`
and implements :class:`anklume.backends.base.Backend`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from anklume.backends.incus import lease, live
from anklume.backends.incus.client import IncusApiError, IncusClient, NotFound
from anklume.backends.incus.files import InstanceIO
from anklume.backends.incus.instance import InstanceWriter
from anklume.backends.incus.lease import LEASE_TTL, LeaseHeld, lease_holder
from anklume.backends.incus.objects import ObjectWriter
from anklume.errors import AnklumeError
from anklume.units.plan import Change
from anklume.units.unit import LiveObject, Unit

__all__ = ["IncusApiError", "IncusBackend", "LeaseHeld", "NotFound", "lease_holder"]


class IncusBackend:
    """Reads the live state and applies changes; safe to use from several threads."""

    def __init__(self, endpoint: str | None = None, *, timeout: float = 30.0, owner: str | None = None):
        self.client = IncusClient(endpoint, timeout=timeout)
        self.endpoint = self.client.endpoint
        self.owner = owner  # written as user.anklume.owner on every object it creates or updates
        self.instances = InstanceWriter(self.client, owner)
        self.objects = ObjectWriter(self.client, owner, self.instances)

    # -- reading ----------------------------------------------------------------------------------

    def read_live(self, domains: Iterable[str], pools: Iterable[str] = ("default",), *,
                  exact_networks: bool = True, members: bool = False) -> dict[str, LiveObject]:
        return live.read_live(self.client, domains, pools, exact_networks=exact_networks, members=members)

    def refresh(self, objects: Mapping[str, LiveObject],
                targets: Iterable[tuple[str, str, str, str, str | None]]) -> dict[str, LiveObject]:
        return live.refresh(self.client, objects, targets)

    def server_name(self) -> str | None:
        """The cluster member answering at this endpoint; None for a server that is not clustered."""
        env = self.client.pylxd().host_info.get("environment") or {}  # GET /1.0, read when it connected
        return env.get("server_name") if env.get("server_clustered") else None

    def resources(self, target: str | None = None) -> dict:
        return self.client.get("resources", **({"target": target} if target else {}))

    # -- writing ----------------------------------------------------------------------------------

    def apply(self, change: Change, unit: Unit | None, obj: LiveObject | None, *, replace: bool = False) -> None:
        """Make one planned change. Raises IncusApiError with Incus's text on refusal."""
        if change.blocked and change.action != "delete":
            raise AnklumeError(change.blocked)
        if change.action == "delete":
            assert obj is not None
            return self.objects.delete(obj)
        assert unit is not None
        if unit.kind == "instance" and change.action == "move":
            assert obj is not None
            return self.instances.move(unit, obj)
        if unit.kind == "instance":
            return self.instances.apply(change, unit, obj)
        getattr(self.objects, f"apply_{unit.kind}")(change, unit, obj)

    def record(self, project: str, instance: str, config: Mapping[str, str]) -> None:
        """Merge ``config`` into an instance's config (the records of the units inside it).  The
        description goes along: a PATCH without one left the instance with none (Incus 6.0)."""
        params = {"project": project}
        description = self.client.get(f"instances/{instance}", **params).get("description") or ""
        self.client.request("patch", f"instances/{instance}", params=params,
                            body={"config": dict(config), "description": description})

    def instance_io(self, project: str, instance: str) -> InstanceIO:
        return InstanceIO(self.client, project, instance)

    # -- the build lease --------------------------------------------------------------------------

    def acquire_lease(self, holder: str, *, ttl: int = LEASE_TTL) -> str:
        return lease.acquire_lease(self.client, holder, ttl=ttl)

    def release_lease(self, value: str) -> None:
        lease.release_lease(self.client, value)

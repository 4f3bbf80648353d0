"""The read-only queries the resolvers ask an Incus server (``anklume lock``): ``/1.0/resources``
(the GPU inventory; ``?target=<member>`` for one member of a cluster), ``/1.0/images/aliases/<name>``
+ ``/1.0/images/<fingerprint>`` (``local:<alias>`` images), ``/1.0/cluster`` and
``/1.0/cluster/members?recursion=1`` (placement).  Every failure is a
:class:`~anklume.errors.SourceError` that names the endpoint and says how to point anklume at
another one; the answers are parsed (and checked) by :mod:`anklume.resolve.cluster` and
:mod:`anklume.resolve.gpus`."""

from __future__ import annotations

from typing import Any

import requests
from pylxd import exceptions as lxd_errors

from anklume.backends.incus.client import INCUS_HINT, IncusClient, reason
from anklume.errors import SourceError

class _NotFound(SourceError):
    """The Incus API answered 404."""


class MemberNotReady(SourceError):
    """A cluster member that cannot answer now (Incus: 'Server isn't ready yet', HTTP 500/503):
    it is down, or still joining."""

class IncusReader:
    """Read-only queries to one Incus server; the connection is opened on the first query."""

    def __init__(self, endpoint: str | None = None, *, timeout: float = 10.0):
        self.client = IncusClient(endpoint, timeout=timeout)
        self.endpoint = self.client.endpoint

    def resources(self, target: str | None = None) -> dict:
        """The metadata of ``GET /1.0/resources`` (cpu, gpu, memory, pci, ...): of the server that
        answers, or of the cluster member ``target`` (:class:`MemberNotReady` when it is down)."""
        if target is None:
            return self._get(["resources"])
        try:
            return self._get(["resources"], params={"target": target}, member=target)
        except _NotFound:
            raise SourceError(f"Incus at {self.endpoint}: /1.0/resources?target={target}: no cluster member "
                              f"named {target!r}", INCUS_HINT) from None

    def cluster(self) -> dict:
        """The metadata of ``GET /1.0/cluster``: ``enabled``, ``server_name`` (the answering member);
        a server without that API (404) is not a cluster: ``{"enabled": False}``."""
        try:
            return self._get(["cluster"])
        except _NotFound:
            return {"enabled": False}

    def cluster_members(self) -> list:
        """The metadata of ``GET /1.0/cluster/members?recursion=1``: one object per member
        (``server_name``, ``architecture``, ``status``, ``message``...)."""
        return self._get(["cluster", "members"], params={"recursion": "1"}, shape=list)

    def image_alias(self, alias: str, project: str = "default") -> dict | None:
        """The alias entry (``target`` = fingerprint, ``type``), or None if there is none."""
        try:
            return self._get(["images", "aliases", alias], project)
        except _NotFound:
            return None

    def image(self, fingerprint: str, project: str = "default") -> dict:
        """The image record: ``fingerprint``, ``type``, ``architecture``, ``properties``..."""
        return self._get(["images", fingerprint], project)

    def _get(self, segments: list[str], project: str | None = None, *, params: dict[str, str] | None = None,
             shape: type = dict, member: str | None = None) -> Any:
        """GET ``/1.0/<segments>`` (each segment URL-quoted) and return its metadata (a ``shape``)."""
        node = self.client.node_of(segments)
        query = {**({"project": project} if project else {}), **(params or {})}
        where = "/1.0/" + "/".join(segments) + ("?" + "&".join(f"{k}={v}" for k, v in query.items())
                                                 if params else "")
        try:
            response = node.get(params=query or None)
        except lxd_errors.NotFound:
            raise _NotFound(f"Incus at {self.endpoint}: {where} not found", INCUS_HINT) from None
        except lxd_errors.LXDAPIException as err:
            status = getattr(getattr(err, "response", None), "status_code", None)
            if member is not None and status in (500, 503):
                raise MemberNotReady(f"Incus at {self.endpoint}: member {member} cannot answer GET {where}: "
                                     f"{reason(err)}", "`incus cluster list` shows its status") from None
            raise SourceError(f"Incus at {self.endpoint} refused GET {where}: {reason(err)}", INCUS_HINT) from None
        except requests.RequestException as err:
            raise self.client.unreachable(err) from None
        try:
            metadata = response.json()["metadata"]
        except (ValueError, KeyError, TypeError):
            metadata = None
        if not isinstance(metadata, shape):
            raise self.client.not_incus(where)
        return metadata

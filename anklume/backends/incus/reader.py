"""The read-only queries the resolvers ask an Incus server (``anklume lock``): ``/1.0/resources``
(the GPU inventory) and ``/1.0/images/aliases/<name>`` + ``/1.0/images/<fingerprint>``
(``local:<alias>`` images).  Every failure is a :class:`~anklume.errors.SourceError` that names the
endpoint and says how to point anklume at another one."""

from __future__ import annotations

import requests
from pylxd import exceptions as lxd_errors

from anklume.backends.incus.client import INCUS_HINT, IncusClient, reason
from anklume.errors import SourceError

class _NotFound(SourceError):
    """The Incus API answered 404."""

class IncusReader:
    """Read-only queries to one Incus server; the connection is opened on the first query."""

    def __init__(self, endpoint: str | None = None, *, timeout: float = 10.0):
        self.client = IncusClient(endpoint, timeout=timeout)
        self.endpoint = self.client.endpoint

    def resources(self) -> dict:
        """The metadata of ``GET /1.0/resources`` (cpu, gpu, memory, pci, ...)."""
        return self._get(["resources"])

    def image_alias(self, alias: str, project: str = "default") -> dict | None:
        """The alias entry (``target`` = fingerprint, ``type``), or None if there is none."""
        try:
            return self._get(["images", "aliases", alias], project)
        except _NotFound:
            return None

    def image(self, fingerprint: str, project: str = "default") -> dict:
        """The image record: ``fingerprint``, ``type``, ``architecture``, ``properties``..."""
        return self._get(["images", fingerprint], project)

    def _get(self, segments: list[str], project: str | None = None) -> dict:
        """GET ``/1.0/<segments>`` (each segment URL-quoted) and return its metadata."""
        node = self.client.node_of(segments)
        where = "/1.0/" + "/".join(segments)
        try:
            response = node.get(params={"project": project} if project else None)
        except lxd_errors.NotFound:
            raise _NotFound(f"Incus at {self.endpoint}: {where} not found", INCUS_HINT) from None
        except lxd_errors.LXDAPIException as err:
            raise SourceError(f"Incus at {self.endpoint} refused GET {where}: {reason(err)}", INCUS_HINT) from None
        except requests.RequestException as err:
            raise self.client.unreachable(err) from None
        try:
            metadata = response.json()["metadata"]
        except (ValueError, KeyError, TypeError):
            metadata = None
        if not isinstance(metadata, dict):
            raise self.client.not_incus(where)
        return metadata

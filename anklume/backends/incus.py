"""Incus through pylxd: the only module that imports pylxd.

For now only the read-only part the resolvers need: ``/1.0/resources`` (the GPU
inventory) and ``/1.0/images/aliases/<name>`` + ``/1.0/images/<fingerprint>``
(``local:<alias>`` images).  Every failure is a :class:`SourceError` that names the
endpoint and says how to point anklume at another one.
"""

from __future__ import annotations

import os
import ssl
from pathlib import Path
from urllib.parse import quote

import pylxd
import requests
from pylxd import exceptions as lxd_errors

from anklume.errors import SourceError
from anklume.resolve.sources import INCUS_SOCKETS, source_hint

INCUS_HINT = source_hint("incus") + " (a unix socket path or an https:// URL)"


def default_incus_endpoint(candidates: tuple[str, ...] = INCUS_SOCKETS) -> str:
    """The first local Incus socket that exists."""
    for path in candidates:
        if os.path.exists(path):
            return path
    raise SourceError(
        f"no local Incus socket found (looked for {' and '.join(candidates)})",
        f"is incusd installed and running? otherwise {INCUS_HINT}",
    )


def _incus_conf() -> Path:
    return Path(os.environ.get("INCUS_CONF") or Path.home() / ".config" / "incus")


def _client_cert() -> tuple[str, str] | None:
    """The Incus CLI's client certificate, for https endpoints, when there is one."""
    config = _incus_conf()
    cert, key = config / "client.crt", config / "client.key"
    return (str(cert), str(key)) if cert.exists() and key.exists() else None


def _server_cert(endpoint: str) -> str | None:
    """The certificate to trust for an https endpoint: ``ANKLUME_INCUS_SERVER_CERT``, else the one
    the Incus CLI accepted for the remote with that address (``incus remote add``:
    ``servercerts/<remote>.crt`` beside its ``config.yml``); None: the system's CAs decide."""
    explicit = os.environ.get("ANKLUME_INCUS_SERVER_CERT")
    if explicit:
        return explicit
    import yaml

    config = _incus_conf()
    try:
        remotes = (yaml.safe_load((config / "config.yml").read_text(encoding="utf-8")) or {}).get("remotes") or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError, AttributeError):
        return None
    for name, remote in remotes.items() if isinstance(remotes, dict) else ():
        if isinstance(remote, dict) and str(remote.get("addr") or "").rstrip("/") == endpoint.rstrip("/"):
            path = config / "servercerts" / f"{name}.crt"
            if path.is_file():
                return str(path)
    return None


class _NotFound(SourceError):
    """The Incus API answered 404."""


class IncusReader:
    """Read-only queries to one Incus server (unix socket path or https URL).

    The connection is opened on the first query.
    """

    def __init__(self, endpoint: str | None = None, *, timeout: float = 10.0):
        self.endpoint = endpoint or default_incus_endpoint()
        self.timeout = timeout
        self._client: pylxd.Client | None = None

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

    def _connect(self) -> pylxd.Client:
        if self._client is None:
            local = self.endpoint.startswith("/")
            if local and not os.path.exists(self.endpoint):
                raise SourceError(f"Incus at {self.endpoint} unreachable: no such socket", INCUS_HINT)
            try:
                if local:
                    self._client = pylxd.Client(endpoint=self.endpoint, timeout=self.timeout)
                else:
                    server = _server_cert(self.endpoint)
                    session = pylxd.client.get_session_for_url(self.endpoint, verify=server or True,
                                                               cert=_client_cert())
                    if server:  # else REQUESTS_CA_BUNDLE, when set, would replace the pinned certificate
                        session.trust_env = False
                    self._client = pylxd.Client(endpoint=self.endpoint, session=session, timeout=self.timeout)
            except lxd_errors.ClientConnectionFailed as err:
                raise self._unreachable(err) from None
            except (ValueError, KeyError):  # JSON decoding errors included
                raise self._not_incus("/1.0") from None
            except requests.RequestException as err:
                raise self._unreachable(err) from None
        return self._client

    def _unreachable(self, err: BaseException) -> SourceError:
        return SourceError(f"Incus at {self.endpoint} unreachable: {_reason(err)}", INCUS_HINT)

    def _not_incus(self, where: str) -> SourceError:
        return SourceError(f"Incus at {self.endpoint}: GET {where} did not answer like Incus", INCUS_HINT)

    def _get(self, segments: list[str], project: str | None = None) -> dict:
        """GET ``/1.0/<segments>`` (each segment URL-quoted) and return its metadata."""
        client = self._connect()
        node = client.api
        for segment in segments:
            node = node[quote(segment, safe="")]
        where = "/1.0/" + "/".join(segments)
        try:
            response = node.get(params={"project": project} if project else None)
        except lxd_errors.NotFound:
            raise _NotFound(f"Incus at {self.endpoint}: {where} not found", INCUS_HINT) from None
        except lxd_errors.LXDAPIException as err:
            reason = _reason(err)
            raise SourceError(f"Incus at {self.endpoint} refused GET {where}: {reason}", INCUS_HINT) from None
        except requests.RequestException as err:
            raise self._unreachable(err) from None
        try:
            metadata = response.json()["metadata"]
        except (ValueError, KeyError, TypeError):
            metadata = None
        if not isinstance(metadata, dict):
            raise self._not_incus(where)
        return metadata


def _reason(err: BaseException) -> str:
    """The most specific human reason inside ``err`` (an OS error's text if there is one)."""
    seen: set[int] = set()
    pending: list[object] = [err]
    while pending:
        current = pending.pop(0)
        if not isinstance(current, BaseException) or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, ssl.SSLError):
            return f"TLS failure ({current.reason or current.strerror})"
        if isinstance(current, OSError) and current.strerror:
            return current.strerror.lower()
        pending += [current.__cause__, current.__context__, getattr(current, "reason", None), *current.args]
    text = str(err).strip()
    return text.splitlines()[0] if text else "unknown error"

"""One connection to one Incus server (unix socket path or https URL), shared by every part of the
backend: the reader of the resolvers, the live reads, the writes, the lease and the files API.

- :func:`default_incus_endpoint`, and for https the Incus CLI's client certificate and the server
  certificate it accepted (``incus remote add``) or ``ANKLUME_INCUS_SERVER_CERT``;
- :class:`IncusClient`: one pylxd client per thread (opened on first use), ``request`` (waits for
  background operations, returns the metadata), ``get``, and the ETag pair ``get_etag`` /
  ``put_if_match`` of the lease;
- the one translation of pylxd's errors: :class:`IncusApiError` (Incus refused: its own text),
  :class:`NotFound` (404), :class:`~anklume.errors.SourceError` (unreachable, not Incus).
"""

from __future__ import annotations

import os
import ssl
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pylxd
import requests
import yaml
from pylxd import exceptions as lxd_errors

from anklume.errors import AnklumeError, SourceError
from anklume.sources import INCUS_SOCKETS, source_hint

INCUS_HINT = source_hint("incus") + " (a unix socket path or an https:// URL)"
#: Seconds an asynchronous Incus operation may take (creating an instance from a large image).
OPERATION_TIMEOUT = 300

class IncusApiError(AnklumeError):
    """Incus refused a request: the message carries Incus's own error text."""

class NotFound(IncusApiError):
    """Incus answered 404."""

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

def reason(err: BaseException) -> str:
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

class IncusClient:
    """Requests to one Incus server; safe to use from several threads (one pylxd client each)."""

    def __init__(self, endpoint: str | None = None, *, timeout: float = 30.0):
        self.endpoint = endpoint or default_incus_endpoint()
        self.timeout = timeout
        self._local = threading.local()
        self._connect_lock = threading.Lock()

    # -- the connection ---------------------------------------------------------------------------

    def pylxd(self) -> pylxd.Client:
        """This thread's pylxd client, opened on first use."""
        client = getattr(self._local, "client", None)
        if client is None:
            with self._connect_lock:
                client = self._open()
            self._local.client = client
        return client

    def _open(self) -> pylxd.Client:
        local = self.endpoint.startswith("/")
        if local and not os.path.exists(self.endpoint):
            raise SourceError(f"Incus at {self.endpoint} unreachable: no such socket", INCUS_HINT)
        try:
            if local:
                return pylxd.Client(endpoint=self.endpoint, timeout=self.timeout)
            server = _server_cert(self.endpoint)
            session = pylxd.client.get_session_for_url(self.endpoint, verify=server or True, cert=_client_cert())
            if server:  # else REQUESTS_CA_BUNDLE, when set, would replace the pinned certificate
                session.trust_env = False
            return pylxd.Client(endpoint=self.endpoint, session=session, timeout=self.timeout)
        except lxd_errors.ClientConnectionFailed as err:
            raise self.unreachable(err) from None
        except (ValueError, KeyError):  # JSON decoding errors included
            raise self.not_incus("/1.0") from None
        except requests.RequestException as err:
            raise self.unreachable(err) from None

    def node(self, path: str):
        """pylxd's API node for ``/1.0/<path>`` on this thread's client (each segment quoted)."""
        return self.node_of(path.split("/"))

    def node_of(self, segments: list[str]):
        """pylxd's API node for ``/1.0/<segments>``, each segment quoted whole (an alias may hold '/')."""
        node = self.pylxd().api
        for segment in segments:
            node = node[quote(segment, safe="")]
        return node

    def unreachable(self, err: BaseException) -> SourceError:
        return SourceError(f"Incus at {self.endpoint} unreachable: {reason(err)}", INCUS_HINT)

    def not_incus(self, where: str) -> SourceError:
        return SourceError(f"Incus at {self.endpoint}: GET {where} did not answer like Incus", INCUS_HINT)

    # -- requests ---------------------------------------------------------------------------------

    def request(self, method: str, path: str, *, params: Mapping[str, str] | None = None,
                body: Any = None) -> Any:
        """``METHOD /1.0/<path>``; waits for background operations; returns the metadata."""
        client = self.pylxd()
        node = self.node(path)
        where = f"{method.upper()} /1.0/{path}" + (f"?project={params['project']}" if params and
                                                     "project" in params else "")
        kwargs: dict[str, Any] = {"params": dict(params or {})}
        if body is not None:
            kwargs["json"] = body
        try:
            response = getattr(node, method)(**kwargs)
            data = response.json()
            if data.get("type") == "async":
                # "/1.0/operations/<id>?project=<p>" (a cluster member always adds the project):
                # the id alone, else the query would swallow "/wait" and the GET would not wait
                op = data["operation"].split("?", 1)[0].rsplit("/", 1)[-1]
                meta = client.api.operations[op].wait.get(params={"timeout": OPERATION_TIMEOUT}).json()
                meta = meta.get("metadata") or {}
                if meta.get("status") != "Success":
                    raise IncusApiError(f"Incus refused {where}: {meta.get('err') or meta.get('status')}")
                return meta.get("metadata")
            return data.get("metadata")
        except lxd_errors.NotFound as err:
            raise NotFound(f"Incus: {where}: {err}") from None
        except lxd_errors.LXDAPIException as err:
            raise IncusApiError(f"Incus refused {where}: {err}") from None
        except (requests.RequestException, ValueError, KeyError, TypeError) as err:
            raise self.unreachable(err) from None

    def get(self, path: str, **params: str) -> Any:
        return self.request("get", path, params=params)

    def get_etag(self, path: str) -> tuple[dict, str | None]:
        node = self.node(path)
        try:
            response = node.get()
            return response.json()["metadata"], response.headers.get("ETag")
        except lxd_errors.LXDAPIException as err:
            raise IncusApiError(f"Incus refused GET /1.0/{path}: {err}") from None
        except (requests.RequestException, ValueError, KeyError) as err:
            raise self.unreachable(err) from None

    def put_if_match(self, path: str, body: dict, etag: str | None) -> bool:
        """PUT guarded by If-Match; False when someone else changed the object first."""
        node = self.node(path)
        try:
            node.put(json=body, headers={"If-Match": etag} if etag else None)
            return True
        except lxd_errors.LXDAPIException as err:
            if err.response.status_code == 412:
                return False
            raise IncusApiError(f"Incus refused PUT /1.0/{path}: {err}") from None
        except (requests.RequestException, ValueError, KeyError) as err:
            raise self.unreachable(err) from None

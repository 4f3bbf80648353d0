"""HTTP GET with a content-addressed cache, for every resolver.

A request has two names:

- ``url``: where the bytes are fetched from now (the public source or a mirror);
- ``key``: its logical identity, the canonical public URL.  The cache is indexed by the
  key, so a mirror and the public source share cache entries, and ``--offline`` answers
  the same question whatever URL filled the cache.

Cache layout (``<cache>`` = :func:`default_cache_dir` unless given)::

    <cache>/blobs/<sha256 of body>        the body, exactly as received
    <cache>/index/<blake3 hex of key>     {"key", "sha256", "urls", "headers"}

``urls`` is the request URL followed by every redirect target (the last one is the final
URL); ``headers`` keeps only :data:`CACHED_HEADERS`.  Both files are written to a temporary
name in the same folder, flushed to disk and renamed into place; the blob goes first, so an
index entry never names a missing blob and no reader ever sees half a file.

Online, every fetch goes to the network (tags and "latest" move; the cache is a record,
not a shortcut) and a failure is a :class:`SourceError`, never a silent fallback to the
cache.  Offline, only the cache answers; a miss is :class:`OfflineMiss`.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import socket
import ssl
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path

import blake3
import msgspec

from anklume import __version__, jsonsafe
from anklume.fsio import atomic_write, default_cache_dir, read_or_none
from anklume.errors import AnklumeError, OfflineMiss, SourceError
from anklume.resolve.fetched import Fetched, Headers, HttpStatusError

#: Response headers kept in the cache index (lower case): those a resolver checks.
CACHED_HEADERS = ("content-type", "docker-content-digest", "ollama-content-digest")

USER_AGENT = f"anklume/{__version__}"
OFFLINE_HINT = "or use --offline to answer from the cache"


class _IndexEntry(msgspec.Struct, forbid_unknown_fields=True):
    key: str
    sha256: str
    urls: list[str]
    headers: dict[str, str]


class Fetcher:
    """GETs URLs for the resolvers, recording every answer in a content-addressed cache."""

    def __init__(self, cache_dir: Path | None = None, offline: bool = False, timeout: float = 20.0):
        self.cache = _Cache(cache_dir if cache_dir is not None else default_cache_dir(os.environ))
        self.offline = offline
        self.timeout = timeout

    def fetch(
        self,
        url: str,
        *,
        key: str,
        source: str,
        headers: Mapping[str, str] | None = None,
        hint: str | None = None,
    ) -> Fetched:
        """GET ``url`` (online) or the cached answer for ``key`` (offline).

        ``source`` names the source in errors ("simplestreams https://..."); ``hint`` says
        how to point it elsewhere (the environment variable / infra.yml key).
        """
        if self.offline:
            return self.cache.load(key)
        fetched = self._get(url, source=source, headers=headers or {}, hint=hint)
        self.cache.store(key, fetched)
        return fetched

    def _get(self, url: str, *, source: str, headers: Mapping[str, str], hint: str | None) -> Fetched:
        full_hint = f"{hint}, {OFFLINE_HINT}" if hint else OFFLINE_HINT.removeprefix("or ")
        if not url.startswith(("http://", "https://")):
            raise SourceError(f"{source}: {url!r} is not an http(s) URL", full_hint)
        redirects = _RecordingRedirects()
        opener = urllib.request.build_opener(redirects)
        try:  # a URL urllib cannot parse (http://[::1) raises ValueError here, not at open
            request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT, **headers})
            with opener.open(request, timeout=self.timeout) as response:
                body = response.read()
                status, reason = response.status, response.reason
                answer = Headers(list(response.headers.items()))
        except urllib.error.HTTPError as err:
            err.close()
            raise HttpStatusError(
                f"{source}: GET {err.url or url} answered HTTP {err.code} {err.reason}", full_hint, err.code
            ) from None
        except (OSError, http.client.HTTPException, ValueError) as err:
            reason = _describe(err, self.timeout)
            raise SourceError(f"{source}: cannot fetch {url}: {reason}", full_hint) from None
        final = redirects.urls[-1] if redirects.urls else url
        if status != 200:
            raise HttpStatusError(f"{source}: GET {final} answered HTTP {status} {reason}", full_hint, status)
        if not body:
            raise SourceError(f"{source}: GET {final} returned an empty body", full_hint)
        return Fetched(body=body, headers=answer, urls=(url, *redirects.urls))


class _RecordingRedirects(urllib.request.HTTPRedirectHandler):
    """Follows redirects as urllib does, remembering each absolute target."""

    def __init__(self) -> None:
        self.urls: list[str] = []

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # noqa: ANN001 (urllib API)
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        if new is not None:
            self.urls.append(new.full_url)
        return new


def _describe(err: BaseException, timeout: float) -> str:
    """A one-line, human reason for a network failure (no exception class names)."""
    if isinstance(err, urllib.error.URLError) and isinstance(err.reason, BaseException):
        return _describe(err.reason, timeout)
    if isinstance(err, urllib.error.URLError):
        return str(err.reason)
    if isinstance(err, TimeoutError):
        return f"no answer within {timeout:g} s"
    if isinstance(err, ConnectionRefusedError):
        return "connection refused"
    if isinstance(err, socket.gaierror):
        return f"cannot resolve the host name ({err.strerror})"
    if isinstance(err, ssl.SSLError):
        return f"TLS failure ({err.reason or err.strerror or 'handshake failed'})"
    if isinstance(err, http.client.IncompleteRead):
        return "the connection closed before the whole body arrived"
    if isinstance(err, http.client.RemoteDisconnected):
        return "the server closed the connection without answering"
    if isinstance(err, OSError) and err.strerror:
        return err.strerror
    return str(err) or "the request failed"


class _Cache:
    """The on-disk cache: blobs by sha256, index entries by blake3(key)."""

    def __init__(self, root: Path):
        self.root = root

    def _index_path(self, key: str) -> Path:
        return self.root / "index" / blake3.blake3(key.encode()).hexdigest()

    def load(self, key: str) -> Fetched:
        """The cached answer for ``key``, or :class:`OfflineMiss`."""
        index = self._index_path(key)
        try:
            data = read_or_none(index)  # regular files only: a FIFO would block
            if data is None:
                raise FileNotFoundError(index)
            entry = jsonsafe.decode(data, type=_IndexEntry)
            body = read_or_none(self.root / "blobs" / entry.sha256)
            if body is None:
                raise FileNotFoundError(entry.sha256)
        except FileNotFoundError:
            raise OfflineMiss(
                f"offline: {key} is not in the cache at {self.root}",
                "run once without --offline to fill the cache",
            ) from None
        except (OSError, msgspec.DecodeError) as err:
            raise OfflineMiss(f"offline: the cache entry for {key} at {index} is unreadable: {err}") from None
        if entry.key != key or hashlib.sha256(body).hexdigest() != entry.sha256 or not entry.urls:
            raise OfflineMiss(
                f"offline: the cache entry for {key} at {index} is corrupt",
                "delete it and run once without --offline",
            )
        return Fetched(body=body, headers=Headers(entry.headers), urls=tuple(entry.urls))

    def store(self, key: str, fetched: Fetched) -> None:
        """Record ``fetched`` under ``key``: blob first, then the index entry."""
        digest = hashlib.sha256(fetched.body).hexdigest()
        kept = {name: fetched.headers[name] for name in CACHED_HEADERS if name in fetched.headers}
        entry = _IndexEntry(key=key, sha256=digest, urls=list(fetched.urls), headers=kept)
        try:
            blob = self.root / "blobs" / digest
            if not blob.exists():
                atomic_write(blob, fetched.body)
            atomic_write(self._index_path(key), msgspec.json.encode(entry, order="sorted"))
        except OSError as err:
            raise AnklumeError(
                f"cannot write the download cache at {self.root}: {err.strerror or err}",
                "set ANKLUME_CACHE_DIR to a writable folder",
            ) from None



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
URL); ``headers`` keeps only :data:`CACHED_HEADERS`.  :meth:`Fetcher.content_length` (a
file's size, asked without downloading it) is kept under the key ``"HEAD " + key``, with an
empty body and the size as its ``content-length`` header.  Both files are written to a temporary
name in the same folder, flushed to disk and renamed into place; the blob goes first, so an
index entry never names a missing blob and no reader ever sees half a file.

Online, every fetch goes to the network (tags and "latest" move; the cache is a record,
not a shortcut) and a failure is a :class:`SourceError`, never a silent fallback to the
cache.  Offline, only the cache answers; a miss is :class:`OfflineMiss`.

A source that misbehaves cannot hang ``lock`` nor fill its memory (docs/lock.md, "Sources
that misbehave"):

- every read off the socket is bounded by the fetch's :class:`Budget`: the per-operation
  ``timeout`` and the ``deadline`` of the whole fetch, redirects included (a server that
  drips one byte at a time never trips a per-read timeout);
- a body is read up to its :class:`~anklume.resolve.limits.Limit` and refused beyond (a
  ``Content-Length`` beyond it before reading); a shorter body than announced is an error;
- redirects: at most :data:`MAX_REDIRECTS`, no loop, and what :func:`redirect_refusal`
  allows; their bodies are never read.  Only http(s) handlers are installed at all.

The artefact store (:mod:`anklume.store`) opens its downloads through the same
:func:`open_url`, with a :class:`Budget` of its own (a minimum rate instead of a deadline).
"""

from __future__ import annotations

import functools
import hashlib
import http.client
import io
import ipaddress
import os
import re
import socket
import ssl
import string
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from pathlib import Path

import blake3
import msgspec

from anklume import __version__, jsonsafe
from anklume.fsio import atomic_write, default_cache_dir, read_or_none
from anklume.errors import AnklumeError, OfflineMiss, SourceError
from anklume.resolve.fetched import Fetched, Headers, HttpStatusError
from anklume.resolve.limits import DEFAULT_LIMIT, MiB, Limit

#: Response headers kept in the cache index (lower case): those a resolver checks.
CACHED_HEADERS = ("content-type", "docker-content-digest", "ollama-content-digest")

USER_AGENT = f"anklume/{__version__}"
OFFLINE_HINT = "or use --offline to answer from the cache"

#: Seconds one network operation (connect, one read) may wait.
DEFAULT_TIMEOUT = 20.0
#: Seconds one whole fetch (redirects, headers, body) may take, unless ``$ANKLUME_FETCH_DEADLINE`` says.
DEFAULT_DEADLINE = 300.0
DEADLINE_ENV = "ANKLUME_FETCH_DEADLINE"
#: Redirects one fetch follows at most (urllib's default; GitHub's release downloads take two).
MAX_REDIRECTS = 10
#: Read size when a body is read into memory.
NET_READ = 1 << 20


class _IndexEntry(msgspec.Struct, forbid_unknown_fields=True):
    key: str
    sha256: str
    urls: list[str]
    headers: dict[str, str]


class Fetcher:
    """GETs URLs for the resolvers, recording every answer in a content-addressed cache.

    ``timeout`` bounds each network operation (connect, one read); ``deadline`` bounds the
    whole of one fetch, redirects included (default: ``$ANKLUME_FETCH_DEADLINE``, else
    :data:`DEFAULT_DEADLINE`).  Each fetch reads at most its ``limit`` (:class:`Limit`).
    """

    def __init__(self, cache_dir: Path | None = None, offline: bool = False, timeout: float = DEFAULT_TIMEOUT,
                 deadline: float | None = None):
        self.cache = _Cache(cache_dir if cache_dir is not None else default_cache_dir(os.environ))
        self.offline = offline
        self.timeout = timeout
        self.deadline = deadline if deadline is not None else fetch_deadline(os.environ)

    def fetch(
        self,
        url: str,
        *,
        key: str,
        source: str,
        headers: Mapping[str, str] | None = None,
        hint: str | None = None,
        limit: Limit | int | None = None,
    ) -> Fetched:
        """GET ``url`` (online) or the cached answer for ``key`` (offline).

        ``source`` names the source in errors ("simplestreams https://..."); ``hint`` says
        how to point it elsewhere (the environment variable / infra.yml key); ``limit`` is
        the most bytes read (:data:`DEFAULT_LIMIT` unless given): a longer body is refused.
        """
        if self.offline:
            return self.cache.load(key)
        limit = limit if isinstance(limit, Limit) else Limit(limit or DEFAULT_LIMIT.size, DEFAULT_LIMIT.what)
        fetched = self._get(url, source=source, headers=headers or {}, hint=hint, limit=limit)
        self.cache.store(key, fetched)
        return fetched

    def _get(self, url: str, *, source: str, headers: Mapping[str, str], hint: str | None,
             limit: Limit) -> Fetched:
        full_hint = f"{hint}, {OFFLINE_HINT}" if hint else OFFLINE_HINT.removeprefix("or ")
        if not url.startswith(("http://", "https://")):
            raise SourceError(f"{source}: {url!r} is not an http(s) URL", full_hint)
        budget = Budget(timeout=self.timeout, total=self.deadline)
        body = bytearray()
        announced: int | None = None
        request = _Request(url, headers)
        try:
            with request.open(budget) as response:
                status, reason = response.status, response.reason
                answer = Headers(list(response.headers.items()))
                announced = announced_length(response)
                most = _size(limit.total or limit.size)
                left = f" ({_size(limit.size)} of it left)" if limit.total else ""
                if announced is not None and announced > limit.size:
                    raise SourceError(f"{source}: GET {request.current} announces {announced} bytes, more than "
                                      f"the {most} anklume reads for {limit.what}{left}", full_hint)
                read_capped(response, body, limit.size)
                if len(body) > limit.size:
                    raise SourceError(f"{source}: GET {request.current} sent more than {most}, "
                                      f"the most anklume reads for {limit.what}{left}", full_hint)
                if announced is not None and len(body) < announced:
                    raise http.client.IncompleteRead(bytes(body), announced - len(body))
        except urllib.error.HTTPError as err:
            err.close()
            raise HttpStatusError(
                f"{source}: GET {err.url or url} answered HTTP {err.code} {err.reason}", full_hint, err.code
            ) from None
        except RedirectRefused as err:
            raise SourceError(f"{source}: GET {url}: {err}", full_hint) from None
        except OutOfTime:
            got = ("no complete answer received" if request.response is None else
                   f"{len(body)} bytes{f' of {announced}' if announced is not None else ''} received")
            raise SourceError(f"{source}: GET {request.current} did not finish within {self.deadline:g} s ({got})",
                              f"set {DEADLINE_ENV} to allow more seconds per fetch; {full_hint}") from None
        except (OSError, http.client.HTTPException, ValueError) as err:
            reason = describe_error(err, self.timeout)
            raise SourceError(f"{source}: cannot fetch {request.current}: {reason}", full_hint) from None
        final = request.current
        if status != 200:
            raise HttpStatusError(f"{source}: GET {final} answered HTTP {status} {reason}", full_hint, status)
        if not body:
            raise SourceError(f"{source}: GET {final} returned an empty body", full_hint)
        return Fetched(body=bytes(body), headers=answer, urls=(url, *request.redirects))


    def content_length(self, url: str, *, key: str, source: str, hint: str | None = None) -> int:
        """The size in bytes of the file at ``url`` (online), or the cached answer for ``key``.

        Asks ``HEAD``; a source that refuses it (or names no length) is asked for the first
        byte (``Range: bytes=0-0``): the total of its ``Content-Range``, or the
        ``Content-Length`` of a whole answer, whose body is never read.  Cached under
        ``"HEAD " + key`` with the size as its ``content-length`` header.
        """
        cache_key = f"HEAD {key}"
        if self.offline:
            fetched = self.cache.load(cache_key)
            size = fetched.headers.get("content-length", "")
            if not size.isdigit():
                raise OfflineMiss(f"offline: the cache entry for {cache_key} names no size",
                                  "delete it and run once without --offline")
            return int(size)
        full_hint = f"{hint}, {OFFLINE_HINT}" if hint else OFFLINE_HINT.removeprefix("or ")
        if not url.startswith(("http://", "https://")):
            raise SourceError(f"{source}: {url!r} is not an http(s) URL", full_hint)
        size, urls = self._length(url, "HEAD", {}, source=source, full_hint=full_hint)
        if size is None:
            size, urls = self._length(url, "GET", {"Range": "bytes=0-0"}, source=source, full_hint=full_hint)
        if size is None:
            raise SourceError(f"{source}: cannot learn the size of {url}: it answers with no Content-Length, "
                              "to HEAD or to a GET of its first byte", full_hint)
        self.cache.store(cache_key, Fetched(body=b"", headers=Headers({"content-length": str(size)}), urls=urls),
                         keep=("content-length",))
        return size

    def _length(self, url: str, method: str, headers: Mapping[str, str], *, source: str,
                full_hint: str) -> tuple[int | None, tuple[str, ...]]:
        """(size or None, urls) from one HEAD, or one GET whose body is never read.  A 404 is
        an :class:`HttpStatusError`; other refusals of HEAD (403, 405, 501...) give None."""
        request = _Request(url, headers, method)
        try:
            with request.open(Budget(timeout=self.timeout, total=self.deadline)) as response:
                status = response.status
                if status == 206:
                    match = _CONTENT_RANGE_TOTAL.fullmatch(response.headers.get("Content-Range", "").strip())
                    size = int(match.group(1)) if match else None
                else:
                    size = announced_length(response) if status == 200 else None
        except urllib.error.HTTPError as err:
            err.close()
            if method == "HEAD" and err.code != 404:
                return None, ()
            raise HttpStatusError(f"{source}: {method} {err.url or url} answered HTTP {err.code} {err.reason}",
                                  full_hint, err.code) from None
        except RedirectRefused as err:
            raise SourceError(f"{source}: {method} {url}: {err}", full_hint) from None
        except OutOfTime:
            raise SourceError(f"{source}: {method} {request.current} did not finish within {self.deadline:g} s",
                              f"set {DEADLINE_ENV} to allow more seconds per fetch; {full_hint}") from None
        except (OSError, http.client.HTTPException, ValueError) as err:
            reason = describe_error(err, self.timeout)
            raise SourceError(f"{source}: cannot fetch {request.current}: {reason}", full_hint) from None
        return (size if size else None), (url, *request.redirects)


_CONTENT_RANGE_TOTAL = re.compile(r"bytes \d+-\d+/(\d+)")


# -- limits ----------------------------------------------------------------------------------


def positive_setting(env: Mapping[str, str], name: str, default: float, unit: str,
                     error: type[AnklumeError] = AnklumeError) -> float:
    """``$name`` as a finite number above 0 (``unit`` names it in the error), else ``default``."""
    value = env.get(name, "").strip()
    if not value:
        return default
    try:
        number = float(value)
    except ValueError:
        number = -1.0
    if not 0 < number < float("inf"):
        raise error(f"{name}={value!r} is not a number of {unit} above 0",
                    f"unset it for the default ({default:g} {unit})")
    return number


def fetch_deadline(env: Mapping[str, str]) -> float:
    """The seconds one fetch may take: ``$ANKLUME_FETCH_DEADLINE``, else :data:`DEFAULT_DEADLINE`."""
    return positive_setting(env, DEADLINE_ENV, DEFAULT_DEADLINE, "seconds")


def _size(n: int) -> str:
    return f"{n >> 20} MiB" if n and n % MiB == 0 else f"{n} bytes"


def announced_length(response) -> int | None:  # noqa: ANN001 (http.client.HTTPResponse)
    """The Content-Length of ``response`` when it is a plain number, else None."""
    value = response.headers.get("Content-Length")
    value = value.strip() if value is not None else ""
    return int(value) if value.isdigit() and value.isascii() else None


def read_capped(response, into: bytearray, limit: int) -> None:  # noqa: ANN001
    """Append the body to ``into``, stopping once it holds more than ``limit`` bytes."""
    while len(into) <= limit:
        chunk = response.read1(min(NET_READ, limit + 1 - len(into)))  # what has arrived, not a full buffer
        if not chunk:
            return
        into += chunk


# -- the time one fetch may take -------------------------------------------------------------


class OutOfTime(Exception):
    """The budget of one fetch is spent: ``why`` is "deadline" or "slow" (the minimum rate)."""

    def __init__(self, why: str):
        super().__init__(why)
        self.why = why


class Budget:
    """How long one fetch may take, checked before every read off its sockets.

    ``timeout`` bounds each operation (connect, one read); ``total`` the whole fetch; with
    ``min_rate`` and ``window``, each ``window`` seconds must bring ``min_rate * window`` bytes
    (curl's ``--speed-limit``/``--speed-time``): a transfer of ``n`` bytes then ends within
    ``n / min_rate + window`` seconds however the server spaces its bytes.
    """

    def __init__(self, *, timeout: float, total: float | None = None, min_rate: float | None = None,
                 window: float | None = None):
        now = time.monotonic()
        self.timeout = timeout
        self.end = now + total if total is not None else None
        self.min_rate = min_rate or 0.0
        self.window = window if min_rate else None
        self.window_start = now
        self.window_bytes = 0

    def next_timeout(self) -> float:
        """The socket timeout for the next operation; :class:`OutOfTime` when the budget is spent."""
        now = time.monotonic()
        limit = self.timeout
        if self.end is not None:
            if now >= self.end:
                raise OutOfTime("deadline")
            limit = min(limit, self.end - now)
        if self.window is not None:
            if now - self.window_start >= self.window:
                if self.window_bytes < self.min_rate * self.window:
                    raise OutOfTime("slow")
                self.window_start, self.window_bytes = now, 0
            limit = min(limit, self.window_start + self.window - now)
        return max(limit, 0.001)

    def elapsed(self) -> bool:
        """Whether a read that timed out did so at a limit of the budget (not the per-read timeout)."""
        now = time.monotonic()
        return ((self.end is not None and now >= self.end)
                or (self.window is not None and now - self.window_start >= self.window))

    def count(self, n: int) -> None:
        self.window_bytes += n


class _BudgetReader(io.RawIOBase):
    """The reading side of a socket, each read bounded by the fetch's :class:`Budget`."""

    def __init__(self, sock: socket.socket, budget: Budget):
        super().__init__()
        self._sock = sock
        self._ref = sock.makefile("rb", buffering=0)  # keeps the socket open until this is closed
        self._budget = budget

    def readable(self) -> bool:
        return True

    def fileno(self) -> int:
        return self._sock.fileno()

    def readinto(self, buf) -> int:  # noqa: ANN001 (a writable buffer)
        while True:
            self._sock.settimeout(self._budget.next_timeout())
            try:
                n = self._sock.recv_into(buf)
            except TimeoutError:
                if self._budget.elapsed():
                    continue  # next_timeout() says which limit was reached, or re-arms the window
                raise
            self._budget.count(n)
            return n

    def close(self) -> None:
        if not self.closed:
            self._ref.close()
        super().close()


class _BudgetSocket:
    """A connected socket whose response reader is bounded by a :class:`Budget`."""

    def __init__(self, sock: socket.socket, budget: Budget):
        self._sock = sock
        self._budget = budget

    def makefile(self, mode: str = "r", *args, **kwargs):  # noqa: ANN002, ANN003, ANN201
        if mode != "rb":
            return self._sock.makefile(mode, *args, **kwargs)
        return io.BufferedReader(_BudgetReader(self._sock, self._budget))

    def __getattr__(self, name: str):  # noqa: ANN204
        return getattr(self._sock, name)


class _Budgeted:
    """Mixed into http.client's connections: connect within the budget, then read within it."""

    def __init__(self, *args, budget: Budget, **kwargs):  # noqa: ANN002, ANN003
        super().__init__(*args, **kwargs)
        self._budget = budget

    def connect(self) -> None:
        self.timeout = self._budget.next_timeout()
        super().connect()
        self.sock = _BudgetSocket(self.sock, self._budget)


class _BudgetHTTPConnection(_Budgeted, http.client.HTTPConnection):
    pass


class _BudgetHTTPSConnection(_Budgeted, http.client.HTTPSConnection):
    pass


class _BudgetHandlerMixin:
    def __init__(self, budget: Budget):
        super().__init__()
        self._budget = budget

    def do_open(self, http_class, req, **kwargs):  # noqa: ANN001, ANN003, ANN201 (urllib API)
        cls = _BudgetHTTPSConnection if issubclass(http_class, http.client.HTTPSConnection) else _BudgetHTTPConnection
        return super().do_open(functools.partial(cls, budget=self._budget), req, **kwargs)


class _BudgetHTTPHandler(_BudgetHandlerMixin, urllib.request.HTTPHandler):
    pass


class _BudgetHTTPSHandler(_BudgetHandlerMixin, urllib.request.HTTPSHandler):
    pass


# -- redirects --------------------------------------------------------------------------------


class RedirectRefused(Exception):
    """A redirect anklume does not follow (the message says why)."""


def redirect_refusal(origin: str, target: str) -> str | None:
    """Why a redirect from ``origin`` to ``target`` is not followed, or None.

    Only http and https are fetched (never ``file:``, ``ftp:``, ``data:``...); https never
    hands over to plain http; a public host never sends anklume to a loopback or link-local
    address (a local service, or a cloud's metadata endpoint).  A local mirror handing over to
    a public host (a CDN) is followed.
    """
    to = urllib.parse.urlsplit(target)
    scheme = to.scheme.lower()
    if scheme not in ("http", "https"):
        return "only http and https are fetched"
    start = urllib.parse.urlsplit(origin)
    if start.scheme.lower() == "https" and scheme == "http":
        return "it goes from https to http"
    if _local_host(to.hostname) and not _local_host(start.hostname):
        return "it goes from a public host to a loopback or link-local one"
    return None


def _local_host(host: str | None) -> bool:
    if not host:
        return False
    host = host.lower().rstrip(".")
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_loopback or address.is_link_local or address.is_unspecified


class _Redirects(urllib.request.HTTPRedirectHandler):
    """Follows at most :data:`MAX_REDIRECTS` redirects, never reading their bodies, refusing
    loops and what :func:`redirect_refusal` refuses; remembers each absolute target."""

    def __init__(self, first: str) -> None:
        self.urls: list[str] = []
        self._seen = {first}

    def http_error_302(self, req, fp, code, msg, headers):  # noqa: ANN001, ANN201 (urllib API)
        location = headers.get("location") or headers.get("uri")
        if location is None:
            return None  # the default handler reports the status
        fp.close()  # the body of a redirect is never read
        parts = urllib.parse.urlparse(location.strip())
        if not parts.path and parts.netloc:
            parts = parts._replace(path="/")
        target = urllib.parse.urljoin(req.full_url, urllib.parse.quote(
            urllib.parse.urlunparse(parts), encoding="iso-8859-1", safe=string.punctuation))
        refusal = redirect_refusal(req.full_url, target)
        if refusal:
            raise RedirectRefused(f"refused to follow a redirect to {target}: {refusal}")
        if target in self._seen:
            raise RedirectRefused(f"redirect loop: {req.full_url} redirects back to {target}")
        if len(self.urls) >= MAX_REDIRECTS:
            raise RedirectRefused(f"more than {MAX_REDIRECTS} redirects")
        method = req.get_method()
        if method not in ("GET", "HEAD"):
            raise urllib.error.HTTPError(req.full_url, code, msg, headers, None)
        kept = {k: v for k, v in req.header_items() if k.lower() not in ("content-length", "content-type", "host")}
        self._seen.add(target)
        self.urls.append(target)
        new = urllib.request.Request(target, headers=kept, origin_req_host=req.origin_req_host,
                                     unverifiable=True, method=method)
        return self.parent.open(new, timeout=req.timeout)

    http_error_301 = http_error_303 = http_error_307 = http_error_308 = http_error_302


class _Request:
    """One fetch: its redirects, the URL it is at now, and its response once headers arrived."""

    def __init__(self, url: str, headers: Mapping[str, str], method: str = "GET"):
        self.url = url
        self.headers = {"User-Agent": USER_AGENT, **headers}
        self.method = method
        self._redirects = _Redirects(url)
        self.response = None

    @property
    def redirects(self) -> list[str]:
        return self._redirects.urls

    @property
    def current(self) -> str:
        return self.redirects[-1] if self.redirects else self.url

    def open(self, budget: Budget):  # noqa: ANN201 (http.client.HTTPResponse)
        """The response (a context manager); urllib.error.HTTPError for a status >= 400,
        :class:`RedirectRefused`, :class:`OutOfTime`, OSError or HTTPException otherwise."""
        opener = urllib.request.OpenerDirector()
        for handler in (urllib.request.ProxyHandler(), urllib.request.UnknownHandler(), _BudgetHTTPHandler(budget),
                        _BudgetHTTPSHandler(budget), urllib.request.HTTPDefaultErrorHandler(), self._redirects,
                        urllib.request.HTTPErrorProcessor()):
            opener.add_handler(handler)
        request = urllib.request.Request(self.url, headers=self.headers, method=self.method)
        self.response = opener.open(request, timeout=budget.timeout)
        return self.response


def open_url(url: str, headers: Mapping[str, str], budget: Budget, method: str = "GET"):  # noqa: ANN201
    """``(request, response)`` for ``url``, through :class:`_Request` (the artefact store's way in)."""
    request = _Request(url, headers, method)
    return request, request.open(budget)


def describe_error(err: BaseException, timeout: float) -> str:
    """A one-line, human reason for a network failure (no exception class names)."""
    if isinstance(err, urllib.error.URLError) and isinstance(err.reason, BaseException):
        return describe_error(err.reason, timeout)
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

    def store(self, key: str, fetched: Fetched, keep: tuple[str, ...] = CACHED_HEADERS) -> None:
        """Record ``fetched`` under ``key``: blob first, then the index entry (with the headers
        named by ``keep``)."""
        digest = hashlib.sha256(fetched.body).hexdigest()
        kept = {name: fetched.headers[name] for name in keep if name in fetched.headers}
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



"""Commands and files inside one Incus instance, through the Incus REST API only (no SSH, no
``incus`` CLI): the same code for the local unix socket and a remote https endpoint, since every
request goes through pylxd's ``client.api`` session.

- ``exec``: ``POST /1.0/instances/<name>/exec`` with ``record-output``; waits on the operation;
  the exit status is ``metadata.return``; stdout and stderr are read from the recorded logs, which
  are then deleted.  Data for stdin is pushed to a temporary file first and redirected by a fixed
  ``sh -c`` prologue (the command itself travels as positional parameters, never in the script).
- ``push``/``pull``: ``POST``/``GET /1.0/instances/<name>/files?path=``, streamed in large chunks
  (a GiB is never read into memory).
- ``sha256``/``sizes``: computed inside the instance, one exec for all paths.
"""

from __future__ import annotations

import io
import math
import os
import re
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple
from urllib.parse import quote

import pylxd
import requests
from pylxd import exceptions as lxd_errors

from anklume.backends.incus.client import INCUS_HINT, IncusClient
from anklume.backends.incus.client import reason as _reason
from anklume.errors import AnklumeError

#: Bytes per read and per socket send when streaming a file (tuned with bench/transfer.py).
CHUNK = 1024 * 1024
#: Seconds one request may wait for the server (a file transfer included).
REQUEST_TIMEOUT = 300.0
#: Incus instance names (a hostname label).
_INSTANCE_RE = re.compile(r"\A[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\Z")
_PROJECT_RE = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9_.-]{0,62}\Z")

#: Redirects stdin from a pushed file, removes the file, then runs "$0" "$@" (the real argv).
_STDIN_PROLOGUE = 'exec <"$ANKLUME_STDIN" || exit 125; rm -f "$ANKLUME_STDIN"; unset ANKLUME_STDIN; exec "$0" "$@"'

_PY_SHA256 = """\
import hashlib, os, stat, sys
for p in sys.argv[1:]:
    try:
        if not stat.S_ISREG(os.stat(p).st_mode):
            raise OSError
        h = hashlib.sha256()
        with open(p, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        print(h.hexdigest())
    except OSError:
        print("-")
"""
_SH_SHA256 = """\
if [ -x /usr/bin/python3 ]; then exec /usr/bin/python3 -c "$ANKLUME_PY" "$@"; fi
for p do
  if [ -f "$p" ] && [ -r "$p" ]; then h=$(sha256sum < "$p") || exit 1; echo "${h%% *}"; else echo -; fi
done
"""
_PY_SIZES = """\
import os, stat, sys
for p in sys.argv[1:]:
    try:
        st = os.stat(p)
        print(st.st_size if stat.S_ISREG(st.st_mode) else "-")
    except OSError:
        print("-")
"""
_SH_SIZES = """\
if [ -x /usr/bin/python3 ]; then exec /usr/bin/python3 -c "$ANKLUME_PY" "$@"; fi
for p do
  if [ -f "$p" ]; then stat -L -c %s -- "$p" || exit 1; else echo -; fi
done
"""

class ExecResult(NamedTuple):
    rc: int
    stdout: bytes
    stderr: bytes

class InstanceIOError(AnklumeError):
    """A request about one instance failed; the message names the instance and Incus's text."""

class ExecFailed(InstanceIOError):
    """A command exited non-zero (``check=True``)."""

    def __init__(self, message: str, result: ExecResult):
        super().__init__(message)
        self.result = result

class InstanceIO:
    """Exec and files in ``project``/``instance``.

    ``source`` is an :class:`~anklume.backends.incus.client.IncusClient` (one pylxd client per
    thread), anything that holds one as ``.client`` (the reader, the backend), or a
    ``pylxd.Client``.
    """

    def __init__(self, source: Any, project: str, instance: str, *,
                 request_timeout: float = REQUEST_TIMEOUT, chunk: int = CHUNK):
        if not isinstance(instance, str) or not _INSTANCE_RE.fullmatch(instance):
            raise InstanceIOError(f"invalid instance name {instance!r}",
                                  "letters, digits and '-', at most 63, not starting or ending with '-'")
        if not isinstance(project, str) or not _PROJECT_RE.fullmatch(project):
            raise InstanceIOError(f"invalid Incus project name {project!r}")
        source = getattr(source, "client", source)
        if isinstance(source, pylxd.Client):
            client = source
            self._get_client: Callable[[], pylxd.Client] = lambda: client
            self.endpoint = _endpoint_of(client)
        elif isinstance(source, IncusClient):
            self._get_client = source.pylxd
            self.endpoint = source.endpoint
        else:
            raise TypeError("InstanceIO needs an IncusClient (or something holding one) or a pylxd.Client")
        self.project = project
        self.instance = instance
        self.request_timeout = request_timeout
        self.chunk = chunk
        self.where = f"instance '{instance}' (project '{project}')"

    # -- plumbing ---------------------------------------------------------------------------------

    def _node(self, *segments: str):
        node = self._get_client().api
        for segment in segments:
            node = node[quote(segment, safe="")]
        return node

    def _instance_node(self, *segments: str):
        return self._node("instances", self.instance, *segments)

    def _params(self, **more: str) -> dict[str, str]:
        return {"project": self.project, **more}

    def _call(self, what: str, fn: Callable[[], Any], *, missing: str | None = None) -> Any:
        """Run one request; any failure becomes an InstanceIOError naming the instance and
        ``what`` was asked.  ``missing``: the message for a 404 about the path (not about the
        instance or project); "" makes such a 404 answer None."""
        try:
            return fn()
        except lxd_errors.NotFound as err:
            text = _api_text(err)
            if missing is not None and not any(word in text.lower() for word in ("instance", "project")):
                if not missing:
                    return None  # absent is fine
                raise InstanceIOError(f"{self.where}: {what}: {missing}") from None
            raise InstanceIOError(f"{self.where}: {what}: {text}",
                                  "is the instance created, and is the project right?") from None
        except lxd_errors.LXDAPIException as err:
            raise InstanceIOError(f"{self.where}: {what}: {_api_text(err)}") from None
        except (requests.RequestException, OSError) as err:
            raise InstanceIOError(f"{self.where}: {what}: Incus at {self.endpoint} unreachable: {_reason(err)}",
                                  INCUS_HINT) from None

    # -- exec ------------------------------------------------------------------------------------

    def exec(self, argv: Sequence[str], *, env: Mapping[str, str] | None = None, cwd: str | None = None,
             stdin: bytes | None = None, check: bool = True, timeout: float = 600) -> ExecResult:
        """Run ``argv`` (no shell) in the instance and return its exit status and output.

        ``check``: a non-zero exit raises :class:`ExecFailed` (with stderr's tail).  ``timeout``:
        seconds to wait for the command; past it an InstanceIOError is raised (Incus cannot cancel
        a running exec: the command may still be running).
        """
        argv = [str(a) for a in argv]
        if not argv or not argv[0]:
            raise InstanceIOError(f"{self.where}: exec: empty command")
        environment = {str(k): str(v) for k, v in (env or {}).items()}
        command = argv
        stdin_path = None
        if stdin is not None:
            stdin_path = f"/tmp/.anklume-stdin-{uuid.uuid4().hex}"
            self.push(stdin_path, bytes(stdin), mode=0o600)
            command = ["/bin/sh", "-c", _STDIN_PROLOGUE, *argv]
            environment["ANKLUME_STDIN"] = stdin_path
        try:
            result = self._exec(argv[0], command, environment, cwd, timeout)
        except BaseException:
            if stdin_path is not None:
                self._delete_quietly(stdin_path)
            raise
        if stdin_path is not None and result.rc == 125:
            self._delete_quietly(stdin_path)
        if check and result.rc != 0:
            tail = _tail(result.stderr) or _tail(result.stdout)
            raise ExecFailed(f"{self.where}: {_show(argv)} exited {result.rc}" + (f": {tail}" if tail else ""),
                             result)
        return result

    def _exec(self, name: str, command: list[str], environment: dict[str, str], cwd: str | None,
              timeout: float) -> ExecResult:
        what = f"exec {name}"
        body: dict[str, Any] = {"command": command, "environment": environment, "interactive": False,
                                "wait-for-websocket": False, "record-output": True}
        if cwd is not None:
            body["cwd"] = cwd
        started = self._call(what, lambda: self._instance_node("exec").post(
            json=body, params=self._params(), timeout=self.request_timeout).json())
        # "/1.0/operations/<id>?project=<p>": the id alone (quoted whole, the query would be part
        # of it; a single server still found it, a cluster member asked for another's does not)
        op_id = str(started.get("operation") or "").split("?", 1)[0].rsplit("/", 1)[-1]
        if not op_id:
            raise InstanceIOError(f"{self.where}: {what}: Incus answered without an operation")
        wait = max(1, math.ceil(timeout))
        late = InstanceIOError(f"{self.where}: {what}: still running after {wait} s",
                               "Incus cannot cancel it: it may still be running in the instance")

        def wait_for_it() -> dict:
            try:
                return self._node("operations", op_id, "wait").get(
                    params=self._params(timeout=str(wait)), timeout=wait + self.request_timeout).json()
            except lxd_errors.LXDAPIException as err:
                if "deadline exceeded" in _api_text(err):  # how Incus says the wait timed out
                    raise late from None
                raise

        op = self._call(what, wait_for_it)
        meta = op.get("metadata") or {}
        status = meta.get("status")
        if status == "Running":
            raise late
        if status != "Success":
            raise InstanceIOError(f"{self.where}: {what}: {meta.get('err') or status}")
        result = meta.get("metadata") or {}
        outputs = result.get("output") or {}
        stdout = self._read_log(outputs.get("1"), what)
        stderr = self._read_log(outputs.get("2"), what)
        rc = result.get("return")
        if not isinstance(rc, int):
            raise InstanceIOError(f"{self.where}: {what}: Incus gave no exit status")
        return ExecResult(rc, stdout, stderr)

    def _read_log(self, path: str | None, what: str) -> bytes:
        """GET then DELETE one recorded output (``/1.0/instances/<name>/logs/exec-output/...``)."""
        if not path:
            return b""
        parts = path.split("?", 1)[0].strip("/").split("/")
        if len(parts) < 2 or parts[0] != "1.0":
            raise InstanceIOError(f"{self.where}: {what}: unexpected output path {path!r}")
        node = self._get_client().api
        for segment in parts[1:]:
            node = node[segment]
        data = self._call(what, lambda: node.get(params=self._params(), is_api=False,
                                                 timeout=self.request_timeout).content)
        try:
            node.delete(params=self._params(), timeout=self.request_timeout)
        except (lxd_errors.LXDAPIException, requests.RequestException, OSError):
            pass  # a leaked log is not worth failing the command for
        return data

    # -- files -----------------------------------------------------------------------------------

    def push(self, path: str, src: Path | bytes | BinaryIO, *, mode: int = 0o644, uid: int = 0, gid: int = 0,
             progress: Callable[[int], None] | None = None) -> int:
        """Write ``src`` (a local path, bytes, or a binary file object read from its current
        position) to ``path`` in the instance, streamed; returns the bytes sent.  ``path`` ends up
        a regular file with exactly ``mode``/``uid``/``gid`` (an existing file is replaced).
        ``progress`` is called with the running total after each chunk."""
        path = _check_path(path, self.where)
        what = f"push {path}"
        opened: BinaryIO | None = None
        try:
            if isinstance(src, (bytes, bytearray, memoryview)):
                stream: BinaryIO = io.BytesIO(src)
                size: int | None = len(src)
            elif isinstance(src, (str, os.PathLike)):
                try:
                    opened = stream = open(src, "rb")  # noqa: SIM115 - closed below
                except OSError as err:
                    raise InstanceIOError(f"{self.where}: {what}: cannot read {src}: {_reason(err)}") from None
                size = os.fstat(stream.fileno()).st_size
            else:
                stream, size = src, _remaining(src)
            self._prepare_target(path, what, mode, uid, gid)
            body = _Body(stream, size, self.chunk, progress) if size is not None else _ChunkedBody(
                stream, self.chunk, progress)
            headers = {"X-Incus-type": "file", "X-Incus-mode": f"{mode & 0o7777:04o}", "X-Incus-uid": str(uid),
                       "X-Incus-gid": str(gid), "X-Incus-write": "overwrite", "Content-Type": "application/octet-stream"}
            self._call(what, lambda: self._instance_node("files").post(
                params=self._params(path=path), data=b"" if size == 0 else body, headers=headers,
                timeout=self.request_timeout), missing=f"no such directory: {os.path.dirname(path)}")
            if size is not None and body.sent != size:
                raise InstanceIOError(f"{self.where}: {what}: the source ended after {body.sent} of {size} bytes")
            return body.sent
        finally:
            if opened is not None:
                opened.close()

    def _prepare_target(self, path: str, what: str, mode: int, uid: int, gid: int) -> None:
        """Incus keeps an existing file's mode and owner on overwrite: such a file (or a symlink)
        is removed first when they differ.  A directory there is an error."""
        head = self._head(path, what)
        if head is None:
            return
        kind = head.get("X-Incus-Type")
        if kind == "directory":
            raise InstanceIOError(f"{self.where}: {what}: is a directory")
        if kind == "file" and (head.get("X-Incus-Mode"), head.get("X-Incus-Uid"), head.get("X-Incus-Gid")) == (
                f"{mode & 0o7777:04o}", str(uid), str(gid)):
            return
        self._call(what, lambda: self._instance_node("files").delete(
            params=self._params(path=path), timeout=self.request_timeout))

    def _head(self, path: str, what: str) -> Mapping[str, str] | None:
        """The file headers of ``path`` (``X-Incus-Type``/``-Mode``/``-Uid``/``-Gid``), None when
        there is nothing to read there (absent, or under a non-directory: Incus answers 500 with
        no text to a HEAD); the write that follows reports what is wrong."""
        node = self._instance_node("files")
        response = self._call(what, lambda: node.session.head(
            node._api_endpoint, params=self._params(path=path), timeout=self.request_timeout))
        return response.headers if response.status_code == 200 else None

    def pull(self, path: str, dest: BinaryIO) -> int:
        """Copy the regular file ``path`` of the instance into ``dest``, streamed; returns its size."""
        path = _check_path(path, self.where)
        what = f"pull {path}"
        response = self._call(what, lambda: self._instance_node("files").get(
            params=self._params(path=path), is_api=False, stream=True, timeout=self.request_timeout),
            missing="no such file")
        with response:
            kind = response.headers.get("X-Incus-Type", "file")
            if kind != "file":
                raise InstanceIOError(f"{self.where}: {what}: not a regular file ({kind})")
            total = 0

            def copy() -> int:
                nonlocal total
                for block in response.iter_content(self.chunk):
                    dest.write(block)
                    total += len(block)
                return total

            return self._call(what, copy)

    def mkdir(self, path: str, mode: int = 0o755) -> None:
        """Create directory ``path`` with ``mode``, and its missing parents (0755); nothing
        happens to a directory that exists."""
        path = _check_path(path, self.where)
        what = f"mkdir {path}"
        missing: list[str] = []
        current = path
        while current != "/":
            head = self._head(current, what)
            if head is not None:
                if head.get("X-Incus-Type") not in ("directory", "symlink"):
                    raise InstanceIOError(f"{self.where}: {what}: {current} exists and is not a directory")
                break
            missing.append(current)
            current = os.path.dirname(current)
        for directory in reversed(missing):
            dir_mode = mode if directory == path else 0o755
            headers = {"X-Incus-type": "directory", "X-Incus-mode": f"{dir_mode & 0o7777:04o}",
                       "X-Incus-uid": "0", "X-Incus-gid": "0"}
            self._call(what, lambda d=directory, h=headers: self._instance_node("files").post(
                params=self._params(path=d), data=b"", headers=h, timeout=self.request_timeout))

    def delete(self, path: str) -> None:
        """Remove a file (or an empty directory); a missing one is not an error."""
        path = _check_path(path, self.where)
        self._call(f"delete {path}", lambda: self._instance_node("files").delete(
            params=self._params(path=path), timeout=self.request_timeout), missing="")

    def _delete_quietly(self, path: str) -> None:
        try:
            self._instance_node("files").delete(params=self._params(path=path), timeout=self.request_timeout)
        except (lxd_errors.LXDAPIException, requests.RequestException, OSError):
            pass

    # -- in-instance hashing ---------------------------------------------------------------------

    def sha256(self, paths: Sequence[str]) -> dict[str, str | None]:
        """The sha256 (hex) of each regular file, None for a missing one; one exec for all (python3's
        hashlib when the instance has /usr/bin/python3, else ``sha256sum``)."""
        lines = self._per_path("sha256", _SH_SHA256, _PY_SHA256, paths)
        out: dict[str, str | None] = {}
        for path, line in zip(paths, lines, strict=True):
            if line != "-" and not re.fullmatch(r"[0-9a-f]{64}", line):
                raise InstanceIOError(f"{self.where}: sha256 {path}: unexpected output {line!r}")
            out[path] = None if line == "-" else line
        return out

    def sizes(self, paths: Sequence[str]) -> dict[str, int | None]:
        """The size in bytes of each regular file, None for a missing one; one exec for all."""
        lines = self._per_path("sizes", _SH_SIZES, _PY_SIZES, paths)
        out: dict[str, int | None] = {}
        for path, line in zip(paths, lines, strict=True):
            if line != "-" and not (line.isascii() and line.isdigit()):  # "²".isdigit() is true
                raise InstanceIOError(f"{self.where}: size of {path}: unexpected output {line!r}")
            out[path] = None if line == "-" else int(line)
        return out

    def _per_path(self, name: str, shell: str, python: str, paths: Sequence[str]) -> list[str]:
        paths = [_check_path(p, self.where) for p in paths]
        if not paths:
            return []
        for attempt in (1, 2):
            result = self.exec(["/bin/sh", "-c", shell, f"anklume-{name}", *paths], env={"ANKLUME_PY": python},
                               check=False)
            # Incus 6.0 sometimes records no output at all for a command that ran (exit 0), seen
            # right after a container starts: this one only reads, so it is asked again, once
            if result.rc != 0 or result.stdout or attempt == 2:
                break
        lines = result.stdout.decode("utf-8", "replace").splitlines()
        if result.rc != 0 or len(lines) != len(paths):
            detail = _tail(result.stderr) or f"exit {result.rc}, {len(lines)} lines for {len(paths)} paths"
            raise InstanceIOError(f"{self.where}: {name}: {detail}")
        return lines

# -- streamed request bodies --------------------------------------------------------------------------

class _ChunkedBody:
    """An iterable request body of unknown length (sent chunked): requests iterates it and
    urllib3 sends each chunk with one ``sendall``."""

    def __init__(self, stream: BinaryIO, chunk: int, progress: Callable[[int], None] | None):
        self.stream = stream
        self.chunk = chunk
        self.progress = progress
        self.sent = 0
        self.limit: int | None = None

    def __iter__(self) -> Iterator[bytes]:
        while self.limit is None or self.sent < self.limit:
            want = self.chunk if self.limit is None else min(self.chunk, self.limit - self.sent)
            block = self.stream.read(want)
            if not block:
                return
            self.sent += len(block)
            yield block
            if self.progress is not None:
                self.progress(self.sent)

class _Body(_ChunkedBody):
    """The same with a known length (sent with Content-Length)."""

    def __init__(self, stream: BinaryIO, size: int, chunk: int, progress: Callable[[int], None] | None):
        super().__init__(stream, chunk, progress)
        self.limit = size

    def __len__(self) -> int:
        assert self.limit is not None
        return self.limit

def _remaining(stream: BinaryIO) -> int | None:
    """Bytes left in a seekable file object, None when unknown."""
    try:
        if stream.seekable():
            here = stream.tell()
            end = stream.seek(0, os.SEEK_END)
            stream.seek(here)
            return max(0, end - here)
    except (OSError, AttributeError, ValueError):
        pass
    return None

# -- helpers ------------------------------------------------------------------------------------------

def _check_path(path: str, where: str) -> str:
    if not isinstance(path, str) or not path.startswith("/") or "\x00" in path:
        raise InstanceIOError(f"{where}: {path!r} is not an absolute path")
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise InstanceIOError(f"{where}: {path!r}: '..' is not allowed in a path")
    return "/" + "/".join(parts)

def _api_text(err: lxd_errors.LXDAPIException) -> str:
    """Incus's own error text of a refused request."""
    response = getattr(err, "response", None)
    try:
        text = response.json().get("error") if response is not None else None
    except ValueError:
        text = None
    if not text and response is not None:
        text = (response.text or "").strip()[:300] or f"HTTP {response.status_code}"
    return str(text or err)

def _endpoint_of(client: pylxd.Client) -> str:
    endpoint = getattr(client.api, "_api_endpoint", "")
    if endpoint.startswith("http+unix://"):
        from urllib.parse import unquote

        return unquote(endpoint.split("://", 1)[1].split("/", 1)[0])
    return endpoint.removesuffix("/1.0") or "Incus"

def _tail(data: bytes, lines: int = 5, chars: int = 800) -> str:
    text = data.decode("utf-8", "replace").strip()
    return "\n".join(text.splitlines()[-lines:])[-chars:]

def _show(argv: Sequence[str]) -> str:
    shown = " ".join(argv)
    return shown if len(shown) <= 120 else shown[:117] + "..."

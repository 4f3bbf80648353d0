"""A tiny threaded HTTP server on 127.0.0.1 for tests (simplestreams, release files...).

    files = {"/streams/v1/index.json": b"{...}"}
    with StaticHTTPServer(files) as srv:
        fetch(srv.url + "/streams/v1/index.json")
        assert srv.requests == ["/streams/v1/index.json"]

- `files`: a dict {path: bytes} (paths start with "/"), or a directory to serve (paths below it).
- `status`: {path: code} answers that code (with an empty body) instead of the content.
- `delay`: seconds to wait before answering (a number for every path, or {path: seconds}), for
  timeout tests.
- `ranges=True`: a `Range: bytes=N-` (or `bytes=N-M`) request gets 206 and the bytes from N (to M)
  with Content-Range;
  otherwise Range is ignored (200, the whole body), as many servers do.
- `cut_after`: {path: n} sends the full headers but only the first n body bytes, then closes the
  connection (a transfer cut short); one-shot: the entry is removed when used.
- `sizes`: {path: n} answers HEAD with 200 and `Content-Length: n`, and GET with 404: a stand-in
  for a file whose bytes the test does not have (a release asset the recordings only name).
- `head_status`: {path: code} answers a HEAD of that path with that code (a server refusing HEAD).
- `srv.requests` lists the request paths (query string included) in order, `srv.hits(path)` counts
  them; `srv.headers` keeps each request's headers; `srv.sent` the body bytes sent for each.
Anything else is a 404. Only GET and HEAD are served.
"""

from __future__ import annotations

import mimetypes
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit


class StaticHTTPServer:
    def __init__(
        self,
        files: dict[str, bytes] | str | os.PathLike | None = None,
        *,
        status: dict[str, int] | None = None,
        delay: float | dict[str, float] | None = None,
        content_types: dict[str, str] | None = None,
        redirects: dict[str, str] | None = None,
        response_headers: dict[str, dict[str, str]] | None = None,
        ranges: bool = False,
        cut_after: dict[str, int] | None = None,
        sizes: dict[str, int] | None = None,
        head_status: dict[str, int] | None = None,
    ) -> None:
        self.files: dict[str, bytes] = {}
        self.root: Path | None = None
        if isinstance(files, dict):
            self.files = dict(files)
        elif files is not None:
            self.root = Path(files).resolve()
        self.status: dict[str, int] = dict(status or {})
        self.delay = delay
        self.content_types = dict(content_types or {})
        self.redirects = dict(redirects or {})
        self.response_headers = {k: dict(v) for k, v in (response_headers or {}).items()}
        self.ranges = ranges
        self.cut_after = dict(cut_after or {})
        self.sizes = dict(sizes or {})
        self.head_status = dict(head_status or {})
        self.requests: list[str] = []
        self.headers: list[dict[str, str]] = []
        self.sent: list[int] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle -------------------------------------------------------------------------

    def __enter__(self) -> StaticHTTPServer:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> None:
        handler = _make_handler(self)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    @property
    def port(self) -> int:
        assert self._server is not None, "server not started"
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def hits(self, path: str) -> int:
        with self._lock:
            return sum(1 for p in self.requests if p == path or p.split("?")[0] == path)

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()
            self.headers.clear()
            self.sent.clear()

    # --- content -----------------------------------------------------------------------------

    def _delay_for(self, path: str) -> float:
        if isinstance(self.delay, dict):
            return float(self.delay.get(path, 0.0))
        return float(self.delay or 0.0)

    def _lookup(self, path: str) -> bytes | None:
        if self.root is None:
            return self.files.get(path)
        target = (self.root / path.lstrip("/")).resolve()
        if target != self.root and self.root not in target.parents:
            return None
        if target.is_file():
            return target.read_bytes()
        return None


def _make_handler(server: StaticHTTPServer):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:  # keep test output quiet
            pass

        def _answer(self, head: bool) -> None:
            with server._lock:
                server.requests.append(self.path)
                server.headers.append(dict(self.headers.items()))
                server.sent.append(0)
                self._index = len(server.sent) - 1
            path = unquote(urlsplit(self.path).path)
            wait = server._delay_for(path)
            if wait:
                time.sleep(wait)
            if head and path in server.head_status:
                self._send(server.head_status[path], b"", "text/plain", head)
                return
            if path in server.status:
                self._send(server.status[path], b"", "text/plain", head)
                return
            if path in server.redirects:
                self._send(302, b"", "text/plain", head, {"Location": server.redirects[path]})
                return
            if path in server.sizes:
                if head:
                    self._send(200, b"", "application/octet-stream", head, length=server.sizes[path])
                else:
                    self._send(404, b"no bytes for a stand-in size\n", "text/plain", head)
                return
            body = server._lookup(path)
            if body is None:
                self._send(404, b"not found\n", "text/plain", head)
                return
            ctype = server.content_types.get(path) or (
                mimetypes.guess_type(path)[0] or "application/octet-stream"
            )
            extra = dict(server.response_headers.get(path) or {})
            start, end = _range(self.headers.get("Range")) if server.ranges else (None, None)
            if start is not None and start >= len(body):
                self._send(416, b"", "text/plain", head, {"Content-Range": f"bytes */{len(body)}"})
                return
            if start is not None:
                last = min(end, len(body) - 1) if end is not None else len(body) - 1
                extra["Content-Range"] = f"bytes {start}-{last}/{len(body)}"
                self._send(206, body[start:last + 1], ctype, head, extra)
                return
            self._send(200, body, ctype, head, extra)

        def _send(self, code: int, body: bytes, ctype: str, head: bool, extra: dict | None = None,
                  length: int | None = None) -> None:
            path = unquote(urlsplit(self.path).path)
            with server._lock:
                cut = server.cut_after.pop(path, None) if not head and code < 300 else None
            try:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body) if length is None else length))
                for name, value in (extra or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                if not head:
                    sent = body if cut is None else body[:cut]
                    self.wfile.write(sent)
                    with server._lock:
                        server.sent[self._index] = len(sent)
                if cut is not None:
                    self.wfile.flush()
                    self.close_connection = True
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (timeout tests)

        def do_GET(self) -> None:  # noqa: N802
            self._answer(head=False)

        def do_HEAD(self) -> None:  # noqa: N802
            self._answer(head=True)

    return Handler


def _range(value: str | None) -> tuple[int | None, int | None]:
    """(N, M or None) of a ``bytes=N-`` or ``bytes=N-M`` Range header (the forms served), else (None, None)."""
    if not value or not value.startswith("bytes="):
        return None, None
    first, _, last = value[len("bytes="):].partition("-")
    if not first.isdigit() or not (last.isdigit() or last == "") or (last and int(last) < int(first)):
        return None, None
    return int(first), int(last) if last else None

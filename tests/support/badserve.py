"""Loopback HTTP servers that misbehave, for the network layer's tests and fuzzing.

    with BadServer({"/x": Misbehaviour(drip=0.2, body=b"abc")}) as srv:
        fetch(srv.url + "/x")

Each request path is answered by the :class:`Misbehaviour` registered for it (404 otherwise),
written straight to the socket so that every lie is possible:

- ``status``/``reason``/``headers``: the status line and extra headers;
- ``content_length``: ``"auto"`` (the true length of ``body``), ``None`` (no header: the body
  ends when the connection closes) or any number (a lie when it is not ``len(body)``);
- ``body``: the bytes sent after the headers;
- ``drip``: seconds between single bytes of the body (``drip_headers`` drips the status line
  and headers too);
- ``endless``: after ``body``, filler bytes until the client goes away (chunks of
  ``endless_chunk`` bytes, ``endless_max`` bytes at most: a client without a limit ends too);
- ``hold``: seconds to keep the connection open, silent, after the body (a Content-Length that
  promises more than is sent and a server that never closes).

No loop runs unbounded: every sender stops when the client closes the connection, when the server
is stopped, or after ``MAX_SECONDS`` whatever happens.  ``srv.requests`` lists the paths asked
for, ``srv.sent`` the body bytes written for each.
"""

from __future__ import annotations

import socket
import socketserver
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

#: No sender runs longer than this, whatever the client does.
MAX_SECONDS = 30.0


@dataclass(frozen=True, repr=False)
class Misbehaviour:
    status: int = 200
    reason: str = "OK"
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""
    content_length: int | str | None = "auto"
    drip: float | None = None
    drip_headers: bool = False
    endless: bool = False
    endless_chunk: int = 64 * 1024
    endless_max: int = 256 * 1024 * 1024
    hold: float = 0.0
    extra: dict = field(default_factory=dict)  # free room for a test's own notes

    def __repr__(self) -> str:  # short: hypothesis prints it when a case fails
        body = self.body if len(self.body) <= 40 else f"<{len(self.body)} bytes: {self.body[:20]!r}...>"
        fields = {name: getattr(self, name) for name in self.__dataclass_fields__ if name not in ("body", "extra")}
        return f"Misbehaviour(body={body!r}, " + ", ".join(f"{k}={v!r}" for k, v in fields.items()) + ")"


def redirect(location: str, status: int = 302) -> Misbehaviour:
    return Misbehaviour(status=status, reason="Found", headers=(("Location", location),), body=b"")


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


class BadServer:
    def __init__(self, routes: dict[str, Misbehaviour]):
        self.routes = dict(routes)
        self.requests: list[str] = []
        self.sent: list[int] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> BadServer:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> None:
        self._server = _Server(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    @property
    def url(self) -> str:
        assert self._server is not None, "server not started"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def _handler(self) -> type[socketserver.BaseRequestHandler]:
        server = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                sock: socket.socket = self.request
                sock.settimeout(5)
                try:
                    request = _read_head(sock)
                except OSError:
                    return
                if request is None:
                    return
                method, target = request
                path = urlsplit(target).path
                with server._lock:
                    server.requests.append(target)
                    server.sent.append(0)
                    index = len(server.sent) - 1
                how = server.routes.get(path, Misbehaviour(status=404, reason="Not Found", body=b"not found\n"))
                try:
                    server._answer(sock, how, head=method == "HEAD", index=index)
                except OSError:
                    pass  # the client went away: that is how most of these end

        return Handler

    def _answer(self, sock: socket.socket, how: Misbehaviour, *, head: bool, index: int) -> None:
        deadline = time.monotonic() + MAX_SECONDS
        length = len(how.body) if how.content_length == "auto" else how.content_length
        lines = [f"HTTP/1.1 {how.status} {how.reason}"]
        if length is not None:
            lines.append(f"Content-Length: {length}")
        lines += [f"{name}: {value}" for name, value in how.headers]
        lines.append("Connection: close")
        head_bytes = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        if how.drip_headers:
            for i in range(len(head_bytes)):
                if self._stop.is_set() or time.monotonic() > deadline:
                    return
                sock.sendall(head_bytes[i:i + 1])
                time.sleep(how.drip or 0.05)
        else:
            sock.sendall(head_bytes)
        if head:
            return
        if how.drip:
            for i in range(len(how.body)):
                if self._stop.is_set() or time.monotonic() > deadline:
                    return
                sock.sendall(how.body[i:i + 1])
                self._count(index, 1)
                time.sleep(how.drip)
        elif how.body:
            sock.sendall(how.body)
            self._count(index, len(how.body))
        if how.endless:
            filler = b"x" * how.endless_chunk
            for _ in range(how.endless_max // len(filler)):
                if self._stop.is_set() or time.monotonic() > deadline:
                    break
                sock.sendall(filler)
                self._count(index, len(filler))
        end = min(deadline, time.monotonic() + how.hold)
        while not self._stop.is_set() and time.monotonic() < end:
            time.sleep(0.02)

    def _count(self, index: int, n: int) -> None:
        with self._lock:
            self.sent[index] += n


def _read_head(sock: socket.socket) -> tuple[str, str] | None:
    """(method, target) of the request, after reading its headers (at most 64 KiB)."""
    data = b""
    while b"\r\n\r\n" not in data and len(data) < 65536:
        chunk = sock.recv(4096)
        if not chunk:
            return None
        data += chunk
    parts = data.split(b"\r\n", 1)[0].decode("latin-1").split()
    return (parts[0], parts[1]) if len(parts) >= 2 else None

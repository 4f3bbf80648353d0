"""Loopback test servers that tests.support.httpserve does not provide.

- `ScriptedServer`: HTTP on 127.0.0.1 answering each path with a `Reply`: a body with extra
  response headers, another status, or a redirect.
- `FakeIncus`: an Incus API test double on a unix socket, answering `{path: metadata}` as
  `{"type": "sync", "metadata": ...}` (404 otherwise), to be reached through real pylxd.
"""

from __future__ import annotations

import json
import socketserver
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


# -- redirects and headers ----------------------------------------------------------------------


@dataclass(frozen=True)
class Reply:
    """What a ScriptedServer answers on one path: a body, or a redirect (``location``)."""

    body: bytes = b""
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    location: str | None = None  # absolute, or a path on this server


class ScriptedServer:
    """A threaded HTTP server on 127.0.0.1 answering each path with its `Reply` (404 otherwise)."""

    def __init__(self, routes: dict[str, Reply]):
        self.routes = routes
        self.requests: list[str] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05})
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                server.requests.append(self.path)
                reply = server.routes.get(self.path, Reply(b"not found\n", status=404))
                status = 302 if reply.location and reply.status == 200 else reply.status
                self.send_response(status)
                headers = dict(reply.headers)
                if reply.location:
                    headers["Location"] = reply.location
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(reply.body)))
                self.end_headers()
                self.wfile.write(reply.body)

        return Handler


# -- an Incus API double on a unix socket ---------------------------------------------------------


class _UnixHTTPServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


class FakeIncus:
    """Answers GET <path> from `routes` ({path-with-query-stripped: metadata}) like incusd."""

    def __init__(self, socket_path: Path, routes: dict[str, object]):
        self.socket = str(socket_path)
        self.routes = {"/1.0": {"api_extensions": ["resources"], "auth": "trusted"}, **routes}
        self.requests: list[str] = []
        self._server = _UnixHTTPServer(self.socket, self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05})
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def address_string(self) -> str:
                return "unix"

            def do_GET(self) -> None:  # noqa: N802
                fake.requests.append(self.path)
                path = self.path.split("?", 1)[0]
                if path in fake.routes:
                    status, doc = 200, {"type": "sync", "status": "Success", "status_code": 200,
                                        "metadata": fake.routes[path]}
                else:
                    status, doc = 404, {"type": "error", "error": "not found", "error_code": 404}
                body = json.dumps(doc).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        return Handler

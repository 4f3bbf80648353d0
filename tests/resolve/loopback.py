"""An Incus API test double for the GPU inventory, which needs a GPU this machine lacks.

- `FakeIncus`: an Incus API test double on a unix socket, answering `{path: metadata}` as
  `{"type": "sync", "metadata": ...}` (a `Raw` recorded response as it is; 404 otherwise), to be
  reached through real pylxd.
"""

from __future__ import annotations

import json
import socketserver
import threading
from http.server import BaseHTTPRequestHandler
from pathlib import Path


# -- an Incus API double on a unix socket ---------------------------------------------------------


class _UnixHTTPServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


class Raw:
    """A whole recorded API response (``{"type": "error", "error_code": 500, ...}``), served as is
    with its status: a route's value when the metadata alone is not the answer."""

    def __init__(self, doc: dict):
        self.doc = doc
        self.status = int(doc.get("error_code") or doc.get("status_code") or 200)


class FakeIncus:
    """Answers GET <path> from `routes` like incusd: a route is the whole path with its query
    (``/1.0/resources?target=m2``), else the path without it; its value is the metadata, or a
    `Raw` response."""

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
                path = self.path if self.path in fake.routes else self.path.split("?", 1)[0]
                raw = fake.routes.get(path)
                if hasattr(raw, "doc") and hasattr(raw, "status"):  # a Raw (whichever import of this module made it)
                    status, doc = raw.status, raw.doc
                elif path in fake.routes:
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

"""Count what a test did to a PrivateIncus: lifecycle events (one per write) and API requests.

    with EventCounter(incus) as ev:
        do_something()
    assert ev.writes == 0                      # lifecycle events seen (any project)
    ev.events                                  # [LifecycleEvent(action, source, project), ...]
    ev.requests                                # [ApiRequest(method, url), ...] all API calls
    ev.api_writes                              # requests whose method is not GET

It runs `incus monitor --type=lifecycle --type=logging --all-projects --format=json` (our own
child process, stopped by PID). The daemon's debug log stream says "Event listener server handler
started" once the listener is registered, so __enter__ returns only when nothing can be missed;
flush() (called by __exit__) sends a marked GET and waits until it comes back through the stream,
so every event caused before it has been received.
"""

from __future__ import annotations

import json
import socket
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass, field

from .procs import find_binary, stop_process

_LISTENER_STARTED = "Event listener server handler started"


@dataclass(frozen=True)
class LifecycleEvent:
    action: str
    source: str
    project: str
    raw: dict = field(compare=False, repr=False)


@dataclass(frozen=True)
class ApiRequest:
    method: str
    url: str


class EventCounter:
    def __init__(self, incus, timeout: float = 10.0) -> None:
        self._incus = incus
        self._timeout = timeout
        self._cond = threading.Condition()
        self._events: list[LifecycleEvent] = []
        self._requests: list[ApiRequest] = []
        self._markers: set[str] = set()
        self._listener_started = False
        self._proc: subprocess.Popen | None = None
        self._thread: threading.Thread | None = None
        self._stderr = ""

    # --- context -------------------------------------------------------------------------

    def __enter__(self) -> EventCounter:
        self.start()
        return self

    def __exit__(self, exc_type, *exc) -> None:
        try:
            if exc_type is None:
                self.flush()
        finally:
            self.stop()

    def start(self) -> None:
        self._proc = subprocess.Popen(
            [find_binary("incus"), "monitor", "--type=lifecycle", "--type=logging",
             "--all-projects", "--format=json"],
            env=self._incus.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._thread = threading.Thread(target=self._reader, name="incus-monitor", daemon=True)
        self._thread.start()
        with self._cond:
            ok = self._cond.wait_for(
                lambda: self._listener_started or self._proc.poll() is not None, self._timeout
            )
        if not ok or not self._listener_started:
            self.stop()
            raise RuntimeError(f"incus monitor did not start: {self._stderr.strip()}")
        self.reset()

    def stop(self) -> None:
        if self._proc is not None:
            stop_process(self._proc, timeout=5)
            self._stderr = self._proc.stderr.read() if self._proc.stderr else ""
            self._proc = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def _reader(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        for line in self._proc.stdout:
            line = line.strip()
            if not line:
                continue
            try:
                ev = json.loads(line)
            except json.JSONDecodeError:
                continue
            meta = ev.get("metadata") or {}
            with self._cond:
                if ev.get("type") == "lifecycle":
                    self._events.append(LifecycleEvent(
                        action=meta.get("action", ""),
                        source=meta.get("source", ""),
                        project=ev.get("project") or "default",
                        raw=ev,
                    ))
                elif ev.get("type") == "logging":
                    msg = meta.get("message", "")
                    ctx = meta.get("context") or {}
                    if msg == _LISTENER_STARTED:
                        self._listener_started = True
                    elif msg == "Handling API request":
                        url = ctx.get("url", "")
                        marker = _marker_of(url)
                        if marker is not None:
                            self._markers.add(marker)
                        else:
                            self._requests.append(ApiRequest(ctx.get("method", ""), url))
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    # --- results ---------------------------------------------------------------------------

    def flush(self) -> None:
        """Wait until every event caused so far has been received."""
        marker = uuid.uuid4().hex
        _unix_get(self._incus.socket, f"/1.0?anklume-event-marker={marker}")
        with self._cond:
            ok = self._cond.wait_for(lambda: marker in self._markers, self._timeout)
        if not ok:
            raise RuntimeError("incus monitor: flush marker never arrived")

    def reset(self) -> None:
        with self._cond:
            self._events.clear()
            self._requests.clear()

    @property
    def events(self) -> list[LifecycleEvent]:
        with self._cond:
            return list(self._events)

    @property
    def writes(self) -> int:
        """Lifecycle events seen: the daemon emits one per write (none per read)."""
        return len(self.events)

    @property
    def requests(self) -> list[ApiRequest]:
        """Every API request received (the counter's own marker requests excluded)."""
        with self._cond:
            return list(self._requests)

    @property
    def api_writes(self) -> int:
        return sum(1 for r in self.requests if r.method != "GET")

    def actions(self) -> list[tuple[str, str]]:
        return [(e.action, e.source) for e in self.events]


def _unix_get(path: str, url: str) -> None:
    """One bare GET over the unix socket (the CLI would add requests of its own)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(10)
        s.connect(path)
        s.sendall(f"GET {url} HTTP/1.0\r\nHost: incus\r\n\r\n".encode())
        while s.recv(65536):
            pass


def _marker_of(url: str) -> str | None:
    key = "anklume-event-marker="
    i = url.find(key)
    return url[i + len(key):].split("&")[0] if i >= 0 else None


def wait_for_events(counter: EventCounter, n: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while counter.writes < n:
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {counter.writes} of {n} events arrived")
        time.sleep(0.02)

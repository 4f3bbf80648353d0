"""The build lease: ``user.anklume.lease`` on the default project, taken by a compare-and-swap on
its ETag, so two controllers never apply against one daemon at once.  A lease whose time ran out,
or whose holder is a dead process of this host, is taken over."""

from __future__ import annotations

import os
import socket
import time

from anklume.backends.incus.client import IncusClient
from anklume.errors import AnklumeError
from anklume.fsio import pid_alive
from anklume.units.unit import LEASE_KEY

#: Seconds a lease is valid (a build that takes longer renews nothing: it is taken over after).
LEASE_TTL = 3600

class LeaseHeld(AnklumeError):
    """Another build holds ``user.anklume.lease`` on the daemon."""

def lease_holder() -> str:
    return f"{socket.gethostname()} {os.getpid()}"

def parse_lease(value: str) -> tuple[str, int, int]:
    try:
        host, pid, expires = value.split()
        return host, int(pid), int(expires)
    except ValueError:
        return value, 0, 0

def lease_alive(value: str, *, now: float | None = None) -> bool:
    host, pid, expires = parse_lease(value)
    if expires <= (time.time() if now is None else now):
        return False
    if host == socket.gethostname() and pid > 0:
        return pid_alive(pid)
    return True


def acquire_lease(client: IncusClient, holder: str, *, ttl: int = LEASE_TTL) -> str:
    """Take ``user.anklume.lease`` on the default project (compare-and-swap on its ETag), so two
    controllers never build against one daemon at once.  A lease whose time ran out, or whose
    holder is a dead process of this host, is taken over.  Returns the lease value."""
    value = f"{holder} {int(time.time()) + ttl}"
    for _ in range(5):
        project, etag = client.get_etag("projects/default")
        config = dict(project.get("config") or {})
        current = config.get(LEASE_KEY)
        if current and lease_alive(current):
            host, pid, expires = parse_lease(current)
            raise LeaseHeld(f"another anklume build holds the lease on {client.endpoint} (host {host}, pid {pid}, "
                            f"until {time.strftime('%H:%M:%S', time.localtime(expires))})",
                            "wait for it to finish; if it died on another host, remove the key with "
                            f"`incus project unset default {LEASE_KEY}`")
        config[LEASE_KEY] = value
        if client.put_if_match("projects/default", {"description": project.get("description") or "",
                                                   "config": config}, etag):
            return value
    raise LeaseHeld(f"could not take the build lease on {client.endpoint}: it keeps changing")

def release_lease(client: IncusClient, value: str) -> None:
    for _ in range(5):
        project, etag = client.get_etag("projects/default")
        config = dict(project.get("config") or {})
        if config.get(LEASE_KEY) != value:
            return
        del config[LEASE_KEY]
        if client.put_if_match("projects/default", {"description": project.get("description") or "",
                                                   "config": config}, etag):
            return

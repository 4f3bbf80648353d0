"""What the engine and the command handlers need from an Incus daemon: the backend contract.

Implemented by :class:`anklume.backends.incus.IncusBackend` (a real daemon, through pylxd) and by
the in-memory test backend ``tests/executor/memory.py``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from anklume.units.plan import Change
from anklume.units.unit import LiveObject, Unit

#: (uid, kind, project, object name, pool) of an object to re-read.
Target = tuple[str, str, str, str, str | None]


class InstanceFiles(Protocol):
    """Commands and files inside one instance (see :class:`anklume.backends.incus.files.InstanceIO`)."""

    def exec(self, argv: Sequence[str], *, env: Mapping[str, str] | None = None, cwd: str | None = None,
             stdin: bytes | None = None, check: bool = True, timeout: float = 600) -> Any: ...

    def push(self, path: str, src: Path | bytes | BinaryIO, *, mode: int = 0o644, uid: int = 0, gid: int = 0,
             **options: Any) -> Any: ...

    def pull(self, path: str, dest: BinaryIO) -> int: ...

    def mkdir(self, path: str, mode: int = 0o755) -> None: ...

    def delete(self, path: str) -> None: ...

    def sha256(self, paths: Sequence[str]) -> dict[str, str | None]: ...

    def sizes(self, paths: Sequence[str]) -> dict[str, int | None]: ...


class Backend(Protocol):
    """One Incus daemon, as the build engine sees it."""

    endpoint: str

    def read_live(self, domains: Iterable[str], pools: Iterable[str] = ("default",), *,
                  exact_networks: bool = True, members: bool = False) -> dict[str, LiveObject]:
        """Every object anklume manages or would manage in ``domains``, by unit uid, in O(1) requests;
        with ``members``, the cluster's members (``member:<name>``, their status)."""

    def refresh(self, objects: Mapping[str, LiveObject], targets: Iterable[Target]) -> dict[str, LiveObject]:
        """``objects`` with the targets re-read one by one (the plan made again under the lease)."""

    def apply(self, change: Change, unit: Unit | None, obj: LiveObject | None, *, replace: bool = False) -> None:
        """Make one planned change; the unit's key is recorded only once it applied."""

    def record(self, project: str, instance: str, config: Mapping[str, str]) -> None:
        """Merge ``config`` into an instance's config (the keys of the units applied inside it)."""

    def instance_io(self, project: str, instance: str) -> InstanceFiles:
        """Exec and files inside one instance."""

    def acquire_lease(self, holder: str, *, ttl: int = ...) -> str:
        """Take the daemon-wide build lease; raises if another live build holds it."""

    def release_lease(self, value: str) -> None:
        """Give the lease back (only if it is still ``value``)."""

    def resources(self, target: str | None = None) -> dict:
        """``GET /1.0/resources`` (the GPU inventory), of cluster member ``target`` when given."""

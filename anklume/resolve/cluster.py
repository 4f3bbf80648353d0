"""An Incus cluster's answers, as pure parsers: ``/1.0/cluster`` (is it a cluster, which member
answers), ``/1.0/cluster/members?recursion=1`` (each member's name, architecture and status) and
``/1.0/resources?target=<member>`` (its hardware threads and memory).

Every value is checked against the form the lock records it in (``anklume.lock.schema``): a
member name that is not a host name, an architecture with spaces, a memory size past 1 EiB are a
:class:`~anklume.errors.SourceError` naming the source, never a lock that cannot be read back.
The I/O is :mod:`anklume.resolve.resolver` (``LiveResolver.cluster``).
"""

from __future__ import annotations

from collections.abc import Mapping

import msgspec

from anklume.errors import SourceError
from anklume.lock.placement import ONLINE, MemberFacts
from anklume.lock.schema import MAX_MEMBERS, ArchName, CpuThreads, MemberName, MemoryBytes, Text


class _Cluster(msgspec.Struct):
    enabled: bool = False
    server_name: str = ""


class _Member(msgspec.Struct):
    server_name: MemberName
    architecture: ArchName
    status: Text


class _Cpu(msgspec.Struct):
    total: CpuThreads


class _Memory(msgspec.Struct):
    total: MemoryBytes


class _Resources(msgspec.Struct):
    cpu: _Cpu
    memory: _Memory


def parse_cluster(doc: object, *, source: str = "GET /1.0/cluster") -> str | None:
    """The name of the member that answered, or None when the server is not clustered."""
    try:
        info = msgspec.convert(doc, _Cluster)
    except msgspec.ValidationError as err:
        raise SourceError(f"{source}: not an Incus cluster description: {err}") from None
    if not info.enabled:
        return None
    try:
        return msgspec.convert(info.server_name, MemberName)
    except msgspec.ValidationError as err:
        raise SourceError(f"{source}: server_name {info.server_name!r}: {err}") from None


def parse_members(doc: object, *, source: str = "GET /1.0/cluster/members?recursion=1") -> dict[str, MemberFacts]:
    """name -> (architecture, status), sorted by name; facts of threads and memory come from
    :func:`parse_member_resources`."""
    if not isinstance(doc, list):
        raise SourceError(f"{source}: expected a list of members")
    if not doc or len(doc) > MAX_MEMBERS:
        raise SourceError(f"{source}: {len(doc)} members (expected 1 to {MAX_MEMBERS})")
    members: dict[str, MemberFacts] = {}
    for i, entry in enumerate(doc):
        try:
            member = msgspec.convert(entry, _Member)
        except msgspec.ValidationError as err:
            raise SourceError(f"{source}: member [{i}]: {err}") from None
        if member.server_name in members:
            raise SourceError(f"{source}: member {member.server_name!r} is listed twice")
        members[member.server_name] = MemberFacts(architecture=member.architecture, status=member.status)
    return dict(sorted(members.items()))


def parse_member_resources(doc: Mapping, *, source: str = "GET /1.0/resources") -> tuple[int, int]:
    """(hardware threads, memory bytes) of a resources document (``cpu.total``, ``memory.total``)."""
    if isinstance(doc, Mapping) and isinstance(doc.get("metadata"), Mapping):
        doc = doc["metadata"]
    try:
        resources = msgspec.convert(doc, _Resources)
    except msgspec.ValidationError as err:
        raise SourceError(f"{source}: {err}") from None
    return resources.cpu.total, resources.memory.total


def with_resources(member: MemberFacts, resources: Mapping | None, *, source: str) -> MemberFacts:
    """The member's facts with its threads and memory; ``resources`` None: it did not answer
    (its status is then ``not ready`` unless it already says it is down)."""
    if resources is None:
        status = member.status if member.status != ONLINE else "Online but not ready"
        return MemberFacts(architecture=member.architecture, status=status)
    threads, memory = parse_member_resources(resources, source=source)
    return MemberFacts(architecture=member.architecture, status=member.status, cpu_threads=threads,
                       memory_bytes=memory)

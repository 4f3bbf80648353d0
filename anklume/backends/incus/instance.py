"""The instance lifecycle: create from the pinned image, update in place, start, rebuild a
protected or adopted instance (``--replace``), and recover what an interrupted build left behind.

The states it handles:

- no instance: created from the pinned fingerprint (a ``local:`` pin is first copied into the
  domain's project), started, then protection and the key are written in one last PATCH, so an
  instance left half-created by an interrupted build (no key) is never protected;
- a create that a killed build started still runs inside Incus (the POST answers "busy" or
  "already exists"): wait for its operations to end, take the instance over when it came from
  the pinned image, else delete it and create it again;
- an existing instance is written only once the operations a killed build left running on it
  (a start, a stop) have ended: Incus refuses any write meanwhile;
- key differs, identity equal: PUT of the whole spec (Incus's ``volatile.*``/``image.*`` keys and
  the records of the units inside it kept), started if it is not running, key last;
- identity differs (image, type), planned as a plain replace: the new image is checked first,
  then the (unprotected) instance is stopped and deleted, then created.  A protected instance is
  never deleted here, whatever the plan says;
- planned as a rebuild (protected or adopted, ``--replace``): :meth:`InstanceWriter.rebuild`,
  which checks everything first and resumes what an interrupted rebuild left;
- ``start_only``: an unchanged instance that is not running is started.
"""

from __future__ import annotations

import threading
import time
from datetime import datetime, timezone
from typing import Any
from urllib.parse import unquote


from anklume.backends.incus.client import OPERATION_TIMEOUT, IncusApiError, IncusClient, NotFound
from anklume.backends.incus.live import parse_instance
from anklume.errors import AnklumeError
from anklume.units.inside import RECORD_PREFIX
from anklume.units.plan import Change
from anklume.units.unit import MANAGED_KEY, OWNER_KEY, UNIT_KEY, LiveObject, Unit

#: Config keys Incus owns on an object: kept as they are when anklume rewrites its config.
OWNED_PREFIXES = ("volatile.", "image.")

def marks(owner: str | None, key: str | None) -> dict[str, str]:
    """The ``user.anklume.*`` keys anklume writes on an object it manages."""
    out = {MANAGED_KEY: "true"}
    if owner:
        out[OWNER_KEY] = owner
    if key:
        out[UNIT_KEY] = key
    return out

def _moment(stamp: str | None) -> datetime:
    """An Incus timestamp (RFC 3339, nanoseconds, trailing zeros trimmed); the epoch when absent."""
    if not stamp:
        return datetime.min.replace(tzinfo=timezone.utc)
    head, _, frac = stamp.rstrip("Z").partition(".")
    try:
        when = datetime.fromisoformat(head).replace(tzinfo=timezone.utc)
    except ValueError:
        return datetime.min.replace(tzinfo=timezone.utc)
    return when.replace(microsecond=int((frac + "000000")[:6]) if frac.isdigit() else 0)


class InstanceWriter:
    """Applies instance units; safe from several threads (a ``local:`` image is copied once)."""

    def __init__(self, client: IncusClient, owner: str | None):
        self.client = client
        self.owner = owner
        self._image_locks: dict[tuple[str, str], threading.Lock] = {}
        self._guard = threading.Lock()

    def apply(self, change: Change, unit: Unit, obj: LiveObject | None) -> None:
        project = {"project": unit.project}
        if obj is not None and not (change.action == "replace" and change.rebuild):  # (rebuild: its own)
            # a killed build's operation on it (a create, start, stop, delete) may still run inside
            # Incus, which refuses any other write meanwhile ("Instance is busy running a "start"
            # operation"): it ends first, and the instance is read again if it did anything
            if self.settle(obj) or (change.action == "replace" and not obj.key):
                try:
                    obj = parse_instance(self.client.get(f"instances/{obj.object}", project=obj.project),
                                         obj.project)
                except NotFound:  # a delete the interrupted build had started went through
                    obj = None
        if change.start_only and obj is not None:
            self.set_state(unit.object, unit.project, "start")
            return
        if obj is not None and change.action == "replace":
            if change.rebuild:
                rebuilt_status = self.rebuild(unit, obj)
            else:
                self.ensure_image(unit)  # the new image first: nothing is deleted for a create that fails
                if obj.protected:  # the plan rebuilds protected instances; never deleted here
                    raise AnklumeError(f"instance {obj.object} is protected: anklume does not delete it",
                                       "build --replace rebuilds it (its old root filesystem kept as an image)")
                self.stop(obj)
                self.client.request("delete", f"instances/{obj.object}", params={"project": obj.project})
                obj = None
        if obj is None:
            self.ensure_image(unit)
            # protection is set with the key, at the end: an instance left half-created by an
            # interrupted build (no key) is never protected, so the next build can re-create it
            config = {k: v for k, v in unit.spec["config"].items() if k != "security.protection.delete"}
            body = {"name": unit.object, "type": unit.spec["type"], "description": unit.spec["description"],
                    "source": self.source(unit), "profiles": unit.spec["profiles"],
                    "config": {**config, **marks(self.owner, None)}, "devices": unit.spec["devices"]}
            where = {**project, **({"target": unit.spec["target"]} if unit.spec.get("target") else {})}
            try:
                self.client.request("post", "instances", params=where, body=body)
                status = "Stopped"
            except IncusApiError as err:
                # what Incus 6.0 answers a POST racing a create of the same name (seen: all three)
                if not any(text in err.message for text in ("busy running", "already exists",
                                                            "UNIQUE constraint failed: instances.project_id")):
                    raise
                # a killed build's create of this very instance still ran inside Incus when the plan
                # was read: let it end, then take over what it made (or make it again when it made
                # something else)
                obj = self.after_interrupted_create(unit)
                if obj is None:
                    self.client.request("post", "instances", params=where, body=body)
                    status = "Stopped"
                else:
                    self.put_instance(unit, obj, keep_records=False)
                    status = obj.status
        else:
            if change.action != "replace":
                self.put_instance(unit, obj)
            status = obj.status if change.action != "replace" else rebuilt_status
        if status != "Running":
            self.set_state(unit.object, unit.project, "start")
        self.finish(unit)

    def move(self, unit: Unit, obj: LiveObject) -> None:
        """An instance on another cluster member than the lock's (a protected one only with
        ``--replace``: the plan blocks it otherwise): stopped, moved to the member (Incus copies its
        root filesystem there and deletes it here), its spec applied, started, key last.  Moving
        drops nothing else: its config, uuid, records and snapshots go along.  A move a killed
        build left half-done is seen by the next build from where the instance is."""
        target = unit.spec["target"]
        name, project = unit.object, {"project": unit.project}
        self.settle(obj)
        fresh = parse_instance(self.client.get(f"instances/{name}", project=unit.project), unit.project)
        if fresh.location != target:
            self.stop(fresh)
            if fresh.protected:  # Incus deletes the source copy, which protection refuses: lifted for
                # the move only, and written back with the key at the end
                self.client.request("patch", f"instances/{name}", params=project, body={
                    "config": {"security.protection.delete": "false"}, "description": fresh.description})
            self.client.request("post", f"instances/{name}", params={**project, "target": target},
                                body={"name": name, "migration": True})
            fresh = parse_instance(self.client.get(f"instances/{name}", project=unit.project), unit.project)
        self.put_instance(unit, fresh)
        self.set_state(name, unit.project, "start")
        self.finish(unit)

    def finish(self, unit: Unit) -> None:
        """The last write of an applied instance: its key, its protection and its description."""
        final = {UNIT_KEY: unit.key}
        if "security.protection.delete" in unit.spec["config"]:
            final["security.protection.delete"] = unit.spec["config"]["security.protection.delete"]
        # the description travels here too: without it the instance ended with none (seen on Incus 6.0)
        self.client.request("patch", f"instances/{unit.object}", params={"project": unit.project},
                            body={"config": final, "description": unit.spec["description"]})

    def after_interrupted_create(self, unit: Unit) -> LiveObject | None:
        """After the operations on ``unit``'s instance ended: the instance an interrupted build
        created from the same image, ready to be taken over; None when there is none (it was
        deleted, here or because it came from another image).  Anything else found under that
        name (made by hand, protected, keyed, another infra's) is never taken over nor deleted."""
        self.settle(LiveObject(kind="instance", name=unit.name, project=unit.project, object=unit.object))
        try:
            fresh = self.client.get(f"instances/{unit.object}", project=unit.project)
        except NotFound:
            return None
        obj = parse_instance(fresh, unit.project)
        if not obj.managed or obj.key or obj.protected or (obj.owner or self.owner) != self.owner:
            # not what an interrupted create of this infra leaves (managed, keyless, unprotected)
            raise AnklumeError(f"instance {unit.object} appeared in project {unit.project} while this build ran, "
                               "not made by an interrupted build of this infra: it is left alone",
                               "build again: the plan will say what it is")
        if obj.config.get("volatile.base_image") == unit.spec["image"]["fingerprint"] and obj.type == unit.spec["type"]:
            return obj
        self.stop(obj)
        self.client.request("delete", f"instances/{unit.object}", params={"project": unit.project})
        return None

    def settle(self, obj: LiveObject, *, image_ops: bool = False) -> bool:
        """Wait for the operations still running on an instance (a killed build's create goes on);
        with ``image_ops``, also for the project's image operations (a publish names no instance).
        True when there was one to wait for."""
        ops = self.client.get("operations", recursion="1", project=obj.project) or {}
        url = f"/1.0/instances/{obj.object}"
        waited = False
        for op in ops.get("running") or []:
            touched = [u for urls in (op.get("resources") or {}).values() for u in urls or []]
            if (any(u == url or u.startswith((url + "?", url + "/")) for u in touched)
                    or (image_ops and not touched)):
                waited = True
                try:
                    self.client.get(f"operations/{op['id']}/wait", timeout=str(OPERATION_TIMEOUT))
                except IncusApiError:
                    pass
        return waited

    def put_instance(self, unit: Unit, obj: LiveObject, *, keep_records: bool = True) -> None:
        # the records of what was placed inside it stay with an instance updated in place, and go
        # with its rootfs on a rebuild
        keep = OWNED_PREFIXES + ((RECORD_PREFIX,) if keep_records else ())
        owned = {k: v for k, v in obj.config.items() if k.startswith(keep)}
        if obj.key:
            owned[UNIT_KEY] = obj.key  # the new key is recorded only once everything else succeeded
        body = {"description": unit.spec["description"], "profiles": unit.spec["profiles"],
                "config": {**owned, **unit.spec["config"], **marks(self.owner, None)}, "devices": unit.spec["devices"],
                "ephemeral": False}
        if obj.architecture:
            body["architecture"] = obj.architecture
        self.client.request("put", f"instances/{unit.object}", params={"project": unit.project}, body=body)

    def rebuild(self, unit: Unit, obj: LiveObject) -> str | None:
        """A protected (or adopted) instance whose image changed, with --replace: rebuilt in place,
        its old root filesystem kept.

        1. everything the rebuild needs is checked before anything is stopped: the new image is in
           the project (copied or pulled now), the instance has no snapshot of the user's (Incus
           cannot rebuild an instance that has snapshots);
        2. stopped, snapshotted (``anklume-before-<old fingerprint>``), the snapshot published as
           an image of the project (alias ``anklume-before-<name>-<old fingerprint>``, property
           ``anklume.snapshot``: the snapshot's creation time), the snapshot dropped;
        3. the records of the units inside it dropped (they go with the root filesystem), rebuilt
           from the new image (its config, uuid and custom volumes stay), its spec applied.

        An interrupted rebuild is resumed: the operations it left running end first; a snapshot
        it left is reused (unless the instance ran since: then taken again), and so is the image
        published from that very snapshot; an older backup under the same alias is kept under
        ``<alias>-<its fingerprint>``; a rebuild that finished meanwhile is not done twice.
        Returns the instance's status."""
        project = {"project": unit.project}
        name = obj.object
        target = unit.spec["image"]["fingerprint"]
        self.settle(obj, image_ops=True)
        fresh = self.client.get(f"instances/{name}", project=unit.project)
        old = (fresh.get("config") or {}).get("volatile.base_image") or "unknown"
        if old != target:
            snap = f"anklume-before-{old[:12]}"
            snapshots = [unquote(u.split("?", 1)[0].rsplit("/", 1)[-1]) for u in
                         self.client.get(f"instances/{name}/snapshots", project=unit.project) or []]
            theirs = [s for s in snapshots if s != snap]
            if theirs:
                raise AnklumeError(
                    f"{name} has snapshots ({', '.join(theirs)}): Incus cannot rebuild an instance that has "
                    "snapshots, and nothing was stopped",
                    f"publish what you need (incus publish {name}/SNAPSHOT --project {unit.project}), delete "
                    f"them (incus snapshot delete {name} SNAPSHOT --project {unit.project}), then build "
                    "--replace again")
            self.ensure_image(unit, pull=True)
            self.stop(parse_instance(fresh, unit.project))
            taken = self.backup_snapshot(name, snap, unit.project, fresh)
            self.publish_backup(name, snap, old, unit.project, taken)
            self.client.request("delete", f"instances/{name}/snapshots/{snap}", params=project)
            self.drop_records(name, unit.project)
            # the image is in the project now (checked above): rebuilt from there, no server contacted
            self.client.request("post", f"instances/{name}/rebuild", params=project,
                                body={"source": {"type": "image", "fingerprint": target}})
            fresh = self.client.get(f"instances/{name}", project=unit.project)
        self.put_instance(unit, LiveObject(kind="instance", name=obj.name, project=unit.project, object=name,
                                           config=fresh.get("config") or {}, architecture=fresh.get("architecture")),
                          keep_records=False)
        return fresh.get("status")

    def backup_snapshot(self, name: str, snap: str, project: str, instance: dict) -> dict:
        """The snapshot of a stopped instance to publish: the one an interrupted rebuild left,
        unless the instance ran since it was taken; else a new one."""
        path = f"instances/{name}/snapshots/{snap}"
        try:
            taken = self.client.get(path, project=project)
        except NotFound:
            taken = None
        if taken is not None and _moment(instance.get("last_used_at")) > _moment(taken.get("created_at")):
            self.client.request("delete", path, params={"project": project})
            taken = None
        if taken is None:
            self.client.request("post", f"instances/{name}/snapshots", params={"project": project},
                                body={"name": snap})
            taken = self.client.get(path, project=project)
        return taken

    def publish_backup(self, name: str, snap: str, old: str, project: str, taken: dict) -> None:
        alias = f"anklume-before-{name}-{old[:12]}"
        stamp = taken.get("created_at") or ""
        try:
            current = self.client.get(f"images/aliases/{alias}", project=project)
        except NotFound:
            current = None
        if current is not None:
            try:
                image = self.client.get(f"images/{current['target']}", project=project)
            except NotFound:
                image = {}
            if stamp and (image.get("properties") or {}).get("anklume.snapshot") == stamp:
                return  # published from this very snapshot by an interrupted rebuild
            # an older backup under this name (the instance came back to that image since): kept,
            # under a name of its own
            try:
                self.client.request("post", f"images/aliases/{alias}", params={"project": project},
                                    body={"name": f"{alias}-{current['target'][:12]}"})
            except IncusApiError:
                self.client.request("delete", f"images/aliases/{alias}", params={"project": project})
        self.client.request("post", "images", params={"project": project}, body={
            "source": {"type": "snapshot", "name": f"{name}/{snap}"},
            "aliases": [{"name": alias, "description": f"{name} before its image changed"}],
            "properties": {"description": f"anklume: {name} before replace (image {old[:12]})",
                           "anklume.snapshot": stamp, "anklume.instance": name}})

    def drop_records(self, name: str, project: str) -> None:
        """Remove the records of the units placed inside an instance (before its root filesystem
        goes: a rebuild interrupted after it must not leave records of what is gone)."""
        fresh = self.client.get(f"instances/{name}", project=project)
        config = fresh.get("config") or {}
        if not any(k.startswith(RECORD_PREFIX) for k in config):
            return
        body = {k: fresh.get(k) for k in ("architecture", "description", "devices", "ephemeral", "profiles",
                                          "stateful")}
        body["config"] = {k: v for k, v in config.items() if not k.startswith(RECORD_PREFIX)}
        self.client.request("put", f"instances/{name}", params={"project": project}, body=body)

    def source(self, unit: Unit) -> dict[str, str]:
        image = unit.spec["image"]
        if image.get("server"):
            return {"type": "image", "mode": "pull", "server": image["server"], "protocol": "simplestreams",
                    "fingerprint": image["fingerprint"]}
        return {"type": "image", "fingerprint": image["fingerprint"]}

    def ensure_image(self, unit: Unit, *, pull: bool = False) -> None:
        """A ``local:`` pin lives in the default project's store: copy it into the domain's project
        (which has its own images) once.  ``images:`` pins are pulled by the create itself, or now
        with ``pull`` (before a rebuild stops anything)."""
        image = unit.spec["image"]
        fp = image["fingerprint"]
        if image.get("server"):
            if pull:
                try:
                    self.client.get(f"images/{fp}", project=unit.project)
                except NotFound:
                    self.client.request("post", "images", params={"project": unit.project}, body={
                        "source": self.source(unit)})
            return
        if unit.project == "default":
            try:
                self.client.get(f"images/{fp}", project="default")
            except NotFound:
                raise AnklumeError(f"image {fp[:12]} of {unit.object} (a local: pin) is not in this Incus server's "
                                   "image store", "import it, or re-lock against this server") from None
            return
        with self._guard:
            lock = self._image_locks.setdefault((unit.project, fp), threading.Lock())
        with lock:
            try:
                self.client.get(f"images/{fp}", project=unit.project)
                return
            except NotFound:
                pass
            try:
                self.client.get(f"images/{fp}", project="default")
            except NotFound:
                raise AnklumeError(f"image {fp[:12]} of {unit.object} (a local: pin) is not in this Incus server's "
                                   "image store", "import it, or re-lock against this server") from None
            self.client.request("post", "images", params={"project": unit.project}, body={
                "source": {"type": "image", "mode": "pull", "protocol": "incus", "fingerprint": fp,
                           "project": "default"}})

    def set_state(self, name: str, project: str, action: str) -> None:
        body: dict[str, Any] = {"action": action, "timeout": 30}
        if action == "stop":
            body["force"] = True
        try:
            self.client.request("put", f"instances/{name}/state", params={"project": project}, body=body)
        except IncusApiError as first:
            if action != "start":
                raise
            # an interrupted build's operations on it may still be settling: wait for them, retry once
            obj = LiveObject(kind="instance", name=name, project=project, object=name)
            self.settle(obj)
            for _ in range(20):  # "Starting" turns into "Running" (or stays down) within seconds
                status = self.client.get(f"instances/{name}", project=project).get("status")
                if status == "Running":
                    return
                if status in ("Stopped", "Error", "Frozen"):
                    break
                time.sleep(0.25)
            try:
                self.client.request("put", f"instances/{name}/state", params={"project": project}, body=body)
            except IncusApiError:
                raise first from None  # the first answer names the cause; the retry's is noise

    def stop(self, obj: LiveObject) -> None:
        if obj.status not in (None, "Stopped"):
            self.set_state(obj.object, obj.project, "stop")

    def delete(self, obj: LiveObject) -> None:
        self.stop(obj)
        self.client.request("delete", f"instances/{obj.object}", params={"project": obj.project})

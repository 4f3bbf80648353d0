"""The instance lifecycle: create from the pinned image, update in place, start, rebuild a
protected instance (``--replace``), and recover what an interrupted build left behind.

The states it handles:

- no instance: created from the pinned fingerprint (a ``local:`` pin is first copied into the
  domain's project), started, then protection and the key are written in one last PATCH, so an
  instance left half-created by an interrupted build (no key) is never protected;
- a create that a killed build started still runs inside Incus (the POST answers "busy" or
  "already exists"): wait for its operations to end, take the instance over when it came from
  the pinned image, else delete it and create it again;
- key differs, identity equal: PUT of the whole spec (Incus's ``volatile.*``/``image.*`` keys and
  the records of the units inside it kept), started if it is not running, key last;
- identity differs (image, type): unprotected instances are stopped and deleted, then created;
  protected ones are rebuilt only with ``--replace`` (:meth:`InstanceWriter.rebuild`);
- ``start_only``: an unchanged instance that is not running is started.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import msgspec

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

class InstanceWriter:
    """Applies instance units; safe from several threads (a ``local:`` image is copied once)."""

    def __init__(self, client: IncusClient, owner: str | None):
        self.client = client
        self.owner = owner
        self._image_locks: dict[tuple[str, str], threading.Lock] = {}
        self._guard = threading.Lock()

    def apply(self, change: Change, unit: Unit, obj: LiveObject | None) -> None:
        project = {"project": unit.project}
        if change.start_only and obj is not None:
            self.set_state(unit.object, unit.project, "start")
            return
        if obj is not None and change.action == "replace":
            if obj.protected and obj.project == unit.project and obj.key:
                self.rebuild(unit, obj, change)
            else:
                gone = False
                if not obj.key:  # an interrupted build's operations on it (create, delete) end first
                    self.settle(obj)
                    try:
                        fresh = self.client.get(f"instances/{obj.object}", project=obj.project)
                        obj = msgspec.structs.replace(obj, status=fresh.get("status"))
                    except NotFound:  # a delete the interrupted build had started went through
                        gone = True
                if not gone:
                    if obj.protected:
                        self.client.request("patch", f"instances/{obj.object}", params={"project": obj.project},
                                            body={"config": {"security.protection.delete": "false"}})
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
            try:
                self.client.request("post", "instances", params=project, body=body)
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
                    self.client.request("post", "instances", params=project, body=body)
                    status = "Stopped"
                else:
                    self.put_instance(unit, obj, keep_records=False)
                    status = obj.status
        else:
            if change.action != "replace":
                self.put_instance(unit, obj)
            status = obj.status if change.action != "replace" else "Stopped"
        if status != "Running":
            self.set_state(unit.object, unit.project, "start")
        final = {UNIT_KEY: unit.key}
        if "security.protection.delete" in unit.spec["config"]:
            final["security.protection.delete"] = unit.spec["config"]["security.protection.delete"]
        self.client.request("patch", f"instances/{unit.object}", params=project, body={"config": final})

    def after_interrupted_create(self, unit: Unit) -> LiveObject | None:
        """After the operations on ``unit``'s instance ended: the instance an interrupted build
        created from the same image, ready to be taken over; None when there is none (it was
        deleted, here or because it came from another image)."""
        self.settle(LiveObject(kind="instance", name=unit.name, project=unit.project, object=unit.object))
        try:
            fresh = self.client.get(f"instances/{unit.object}", project=unit.project)
        except NotFound:
            return None
        obj = parse_instance(fresh, unit.project)
        if obj.config.get("volatile.base_image") == unit.spec["image"]["fingerprint"] and obj.type == unit.spec["type"]:
            return obj
        self.stop(obj)
        self.client.request("delete", f"instances/{unit.object}", params={"project": unit.project})
        return None

    def settle(self, obj: LiveObject) -> None:
        """Wait for the operations still running on an instance (a killed build's create goes on)."""
        ops = self.client.get("operations", recursion="1", project=obj.project) or {}
        url = f"/1.0/instances/{obj.object}"
        for op in ops.get("running") or []:
            touched = [u for urls in (op.get("resources") or {}).values() for u in urls or []]
            if any(u == url or u.startswith(url + "?") for u in touched):
                try:
                    self.client.get(f"operations/{op['id']}/wait", timeout=str(OPERATION_TIMEOUT))
                except IncusApiError:
                    pass

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

    def rebuild(self, unit: Unit, obj: LiveObject, change: Change) -> None:
        """A protected instance, replaced with --replace: stop it, snapshot it, publish the snapshot
        as an image of the project (alias ``anklume-before-<name>-<old fingerprint>``: Incus refuses
        to rebuild an instance that has snapshots, and an image outlives everything), drop the
        snapshot, rebuild from the new image (its config, uuid and custom volumes stay), then apply
        its config and devices."""
        project = {"project": unit.project}
        self.stop(obj)
        old = (obj.config.get("volatile.base_image") or "unknown")[:12]
        snap = f"anklume-before-{old}"
        alias = f"anklume-before-{obj.object}-{old}"
        self.client.request("post", f"instances/{obj.object}/snapshots", params=project, body={"name": snap})
        try:
            self.client.request("delete", f"images/aliases/{alias}", params=project)
        except NotFound:
            pass
        self.client.request("post", "images", params=project, body={
            "source": {"type": "snapshot", "name": f"{obj.object}/{snap}"},
            "aliases": [{"name": alias, "description": f"{obj.object} before its image changed"}],
            "properties": {"description": f"anklume: {obj.object} before replace (image {old})"}})
        self.client.request("delete", f"instances/{obj.object}/snapshots/{snap}", params=project)
        self.ensure_image(unit)
        self.client.request("post", f"instances/{obj.object}/rebuild", params=project, body={"source": self.source(unit)})
        fresh = self.client.get(f"instances/{obj.object}", project=unit.project)
        self.put_instance(unit, LiveObject(kind="instance", name=obj.name, project=unit.project, object=obj.object,
                                            config=fresh.get("config") or {}, architecture=fresh.get("architecture")),
                           keep_records=False)

    def source(self, unit: Unit) -> dict[str, str]:
        image = unit.spec["image"]
        if image.get("server"):
            return {"type": "image", "mode": "pull", "server": image["server"], "protocol": "simplestreams",
                    "fingerprint": image["fingerprint"]}
        return {"type": "image", "fingerprint": image["fingerprint"]}

    def ensure_image(self, unit: Unit) -> None:
        """A ``local:`` pin lives in the default project's store: copy it into the domain's project
        (which has its own images) once.  ``images:`` pins are pulled by the create itself."""
        image = unit.spec["image"]
        if image.get("server") or unit.project == "default":
            return
        fp = image["fingerprint"]
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

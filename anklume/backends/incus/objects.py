"""Writes of the database-like objects: projects, network ACLs, bridges, profiles, custom volumes, and the
deletion of orphans (of every kind; instances through :mod:`anklume.backends.incus.instance`).

Recording state: an object's key (``user.anklume.key``) is written only once its spec is applied.
Projects and profiles are database-only objects whose spec one request applies: the key travels
in that same request (recorded if and only if it applied).  Networks (a bridge, dnsmasq) and
volumes (the storage driver) involve work outside the database that a crash can interrupt
half-way: they get their key in a last PATCH, after everything else succeeded.  A bridge left
"Pending" by an interrupted create is replaced.
"""

from __future__ import annotations

import threading

from anklume.backends.incus.client import IncusApiError, IncusClient, NotFound
from anklume.backends.incus.instance import OWNED_PREFIXES, InstanceWriter, marks
from anklume.backends.incus.live import ACL_MIRROR_KEY, BRIDGE_MIRROR_KEY, read_members
from anklume.errors import AnklumeError
from anklume.units.plan import Change
from anklume.units.unit import UNIT_KEY, LiveObject, Unit

class ObjectWriter:
    """Applies project, network, profile and volume units; deletes orphans."""

    def __init__(self, client: IncusClient, owner: str | None, instances: InstanceWriter):
        self.client = client
        self.owner = owner  # written as user.anklume.owner on every object it creates or updates
        self.instances = instances
        self._members: list[str] | None = None
        self._guard = threading.Lock()

    def apply_project(self, change: Change, unit: Unit, obj: LiveObject | None) -> None:
        config = {**unit.spec["config"], **marks(self.owner, unit.key)}
        if obj is None:
            self.client.request("post", "projects", body={"name": unit.object, "description": unit.spec["description"],
                                                    "config": config})
        else:
            for mirror in (BRIDGE_MIRROR_KEY, ACL_MIRROR_KEY):  # the PATCH replaces the config: keep the mirrors
                if obj.config.get(mirror):
                    config[mirror] = obj.config[mirror]
            self.client.request("patch", f"projects/{unit.object}",
                         body={"description": unit.spec["description"], "config": config})

    def apply_network(self, change: Change, unit: Unit, obj: LiveObject | None) -> None:
        # creating a bridge is not atomic (a build killed meanwhile leaves it "Pending"): the key
        # is recorded by a last PATCH, and a network that is not "Created" is replaced.  The key's
        # mirror on the domain's project is cleared first and set last (see read_live).
        self.mirror_bridge_key(unit.name, "")
        if obj is not None and change.action == "replace":
            self.client.request("delete", f"networks/{obj.object}")
            obj = None
        config = {**unit.spec["config"], **marks(self.owner, None)}
        if obj is None:
            # in a cluster, a bridge is made on every member first ("Pending"), then created
            # everywhere at once by the request without a target (Incus refuses it otherwise)
            for member in self.cluster_members():
                self.client.request("post", "networks", params={"target": member},
                                    body={"name": unit.object, "type": unit.spec["type"], "config": {}})
            self.client.request("post", "networks", body={"name": unit.object, "type": unit.spec["type"],
                                                    "description": unit.spec["description"], "config": config})
        else:
            self.client.request("patch", f"networks/{unit.object}",
                         body={"description": unit.spec["description"], "config": config})
        # the last PATCH restates the spec with the key (a POST that finished a pending bridge may
        # have ignored its description)
        self.client.request("patch", f"networks/{unit.object}", body={"description": unit.spec["description"],
                                                               "config": {**config, UNIT_KEY: unit.key}})
        self.mirror_bridge_key(unit.name, unit.key)

    def cluster_members(self) -> list[str]:
        """The members of the cluster the server belongs to (none for a single server), read once."""
        with self._guard:
            if self._members is None:
                self._members = sorted(m.name for m in read_members(self.client).values())
            return self._members

    def mirror_bridge_key(self, domain: str, key: str) -> None:
        self.mirror_key(domain, BRIDGE_MIRROR_KEY, key)

    def mirror_key(self, domain: str, mirror: str, key: str) -> None:
        # Incus's PATCH of a project replaces its whole config: read, then PUT it back changed
        # (only this domain's ACL and bridge units, one after the other, and the project's own
        # unit, which runs before them, write it)
        try:
            project = self.client.get(f"projects/{domain}")
        except NotFound:
            if key:  # no project to carry the mirror: the bridge is read on its own
                raise
            return
        config = dict(project.get("config") or {})
        if config.get(mirror, "") == key:
            return
        config[mirror] = key
        if not key:
            del config[mirror]
        self.client.request("put", f"projects/{domain}", body={"description": project.get("description") or "",
                                                        "config": config})

    def apply_profile(self, change: Change, unit: Unit, obj: LiveObject | None) -> None:
        body = {"description": unit.spec["description"], "config": {**unit.spec["config"], **marks(self.owner, unit.key)},
                "devices": unit.spec["devices"]}
        if obj is None and unit.object != "default":  # every project has its default profile
            self.client.request("post", "profiles", params={"project": unit.project}, body={"name": unit.object, **body})
        else:
            self.client.request("put", f"profiles/{unit.object}", params={"project": unit.project}, body=body)

    def apply_acl(self, change: Change, unit: Unit, obj: LiveObject | None) -> None:
        # a database-only object: its rules and its key in one request; the key's mirror on the
        # domain's project is cleared first and set last, as a bridge's (see read_live)
        self.mirror_key(unit.name, ACL_MIRROR_KEY, "")
        body = {"description": unit.spec["description"], "config": {**unit.spec["config"], **marks(self.owner, unit.key)},
                "ingress": unit.spec["ingress"], "egress": unit.spec["egress"]}
        if obj is None:
            self.client.request("post", "network-acls", body={"name": unit.object, **body})
        else:
            self.client.request("put", f"network-acls/{unit.object}", body=body)
        self.mirror_key(unit.name, ACL_MIRROR_KEY, unit.key)

    def apply_volume(self, change: Change, unit: Unit, obj: LiveObject | None) -> None:
        # the storage driver works outside the database: the key is recorded by a last PATCH
        pool = unit.spec["pool"]
        path = f"storage-pools/{pool}/volumes/custom/{unit.object}"
        params = {"project": unit.project}
        config = {**unit.spec["config"], **marks(self.owner, None)}
        if obj is not None and change.action == "replace":
            self.client.request("delete", f"storage-pools/{obj.pool}/volumes/custom/{obj.object}",
                                params={"project": obj.project})
            obj = None
        if obj is None:  # in a cluster, on the member of the instances that mount it
            where = {**params, **({"target": unit.spec["target"]} if unit.spec.get("target") else {})}
            self.client.request("post", f"storage-pools/{pool}/volumes/custom", params=where,
                         body={"name": unit.object, "type": "custom", "config": config})
        else:
            keep = {k: v for k, v in obj.config.items() if k.startswith(OWNED_PREFIXES)}
            if obj.key:
                keep[UNIT_KEY] = obj.key
            self.client.request("put", path, params=params,
                         body={"description": obj.description, "config": {**keep, **config}})
        self.client.request("patch", path, params=params, body={"config": {UNIT_KEY: unit.key}})

    def delete(self, obj: LiveObject) -> None:
        project = {"project": obj.project}
        if obj.kind == "instance":
            self.instances.delete(obj)
        elif obj.kind == "volume":
            self.client.request("delete", f"storage-pools/{obj.pool}/volumes/custom/{obj.object}", params=project)
        elif obj.kind == "profile" and obj.object == "default":  # cannot be deleted: emptied (frees the bridge)
            self.client.request("put", "profiles/default", params=project,
                         body={"description": "", "config": {}, "devices": {}})
        elif obj.kind == "profile":
            self.client.request("delete", f"profiles/{obj.object}", params=project)
        elif obj.kind == "network":
            self.client.request("delete", f"networks/{obj.object}")
        elif obj.kind == "acl":
            self.client.request("delete", f"network-acls/{obj.object}")
        elif obj.kind == "project":
            self.empty_images(obj.object)
            self.client.request("delete", f"projects/{obj.object}")
        else:  # pragma: no cover
            raise AnklumeError(f"cannot delete a {obj.kind}")

    def empty_images(self, project: str) -> None:
        """Before a project is deleted (with every image in it): the images that can be fetched
        again (copies of the default project's ``local:`` pins, pulls and caches of an image
        server: they have an ``update_source``, or are cached) are deleted; the others exist nowhere
        else (the ``anklume-before-*`` backups of rebuilt instances, images imported by hand):
        copied to the default project with their aliases first (``<alias>-<project>`` when the
        name is taken there), then deleted here."""
        for image in self.client.get("images", recursion="1", project=project) or []:
            fp = image["fingerprint"]
            if not image.get("cached") and not (image.get("update_source") or {}).get("server"):
                self.keep_image(image, project)
            self.client.request("delete", f"images/{fp}", params={"project": project})

    def keep_image(self, image: dict, project: str) -> None:
        fp = image["fingerprint"]
        try:
            self.client.get(f"images/{fp}", project="default")
        except NotFound:
            self.client.request("post", "images", params={"project": "default"}, body={
                "source": {"type": "image", "mode": "pull", "protocol": "incus", "fingerprint": fp,
                           "project": project}})
        for alias in image.get("aliases") or []:
            name = alias["name"]
            try:
                target = self.client.get(f"images/aliases/{name}", project="default").get("target")
            except NotFound:
                target = None
            if target == fp:
                continue
            if target is not None:
                name = f"{name}-{project}"
            try:
                self.client.request("post", "images/aliases", params={"project": "default"}, body={
                    "name": name, "target": fp, "description": alias.get("description") or ""})
            except IncusApiError:
                pass  # that name too is taken: the image stays, found by its fingerprint

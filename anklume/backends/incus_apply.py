"""Incus writes: create / update / replace / delete the objects of the units, and read the
live state they are compared with.  The only module that writes to Incus through pylxd.

Reading the live state costs a constant handful of requests whatever the size of the infra
(``recursion=1`` listings): projects, networks, profiles and instances of all projects, and the
custom volumes of each pool in use.

Recording state: an object's key (``user.anklume.key``) is written only once its spec is applied.
Projects and profiles are database-only objects whose spec one request applies: the key travels
in that same request (recorded if and only if it applied).  Networks (a bridge, dnsmasq),
volumes (the storage driver) and instances (create, start) involve work outside the database that
a crash can interrupt half-way: they get their key in a last PATCH, after everything else
succeeded.  A bridge left "Pending" by an interrupted create is replaced.

Concurrency: a build with changes takes the lease ``user.anklume.lease`` on the default project
(a compare-and-swap on its ETag; a lease of a dead process of this host, or an expired one, is
taken over), re-reads the objects it is about to change (``refresh``: O(changes) requests) and
plans again, so two controllers never apply against one daemon at once.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import quote, unquote

import msgspec
import pylxd
import requests
from pylxd import exceptions as lxd_errors

from anklume.backends.incus import INCUS_HINT, IncusReader, _reason
from anklume.errors import AnklumeError, SourceError
from anklume.units.plan import Change, LiveObject
from anklume.units.provision import RECORD_PREFIX
from anklume.units.unit import LEASE_KEY, MANAGED_KEY, OWNER_KEY, UNIT_KEY, Unit

OPERATION_TIMEOUT = 300
#: Seconds a build lease is valid (a dead holder on this host is detected sooner).
LEASE_TTL = 3600
#: The recorded key of a domain's bridge, mirrored on the domain's project (see read_live).
BRIDGE_MIRROR_KEY = "user.anklume.bridge-key"
#: Instance config keys Incus owns (kept as they are on an update, ignored by comparisons).
OWNED_PREFIXES = ("volatile.", "image.")


class IncusApiError(AnklumeError):
    """Incus refused a request: the message carries Incus's own error text."""


class IncusBackend(IncusReader):
    """Reads the live state and applies changes; safe to use from several threads
    (one pylxd client per thread)."""

    def __init__(self, endpoint: str | None = None, *, timeout: float = 30.0, owner: str | None = None):
        super().__init__(endpoint, timeout=timeout)
        self.owner = owner  # written as user.anklume.owner on every object it creates or updates
        self._local = threading.local()
        self._image_locks: dict[tuple[str, str], threading.Lock] = {}
        self._guard = threading.Lock()
        self._connect_lock = threading.Lock()

    # -- plumbing -------------------------------------------------------------------------------

    def _connect(self) -> pylxd.Client:
        client = getattr(self._local, "client", None)
        if client is None:
            with self._connect_lock:
                self._client = None
                client = super()._connect()
                self._client = None
            self._local.client = client
        return client

    def request(self, method: str, path: str, *, params: Mapping[str, str] | None = None,
                body: Any = None) -> Any:
        """``METHOD /1.0/<path>``; waits for background operations; returns the metadata."""
        client = self._connect()
        node = self._node(path)
        where = f"{method.upper()} /1.0/{path}" + (f"?project={params['project']}" if params and
                                                     "project" in params else "")
        kwargs: dict[str, Any] = {"params": dict(params or {})}
        if body is not None:
            kwargs["json"] = body
        try:
            response = getattr(node, method)(**kwargs)
            data = response.json()
            if data.get("type") == "async":
                op = data["operation"].rsplit("/", 1)[-1]
                waited = client.api.operations[op].wait.get(params={"timeout": OPERATION_TIMEOUT}).json()
                meta = waited.get("metadata") or {}
                if meta.get("status") != "Success":
                    raise IncusApiError(f"Incus refused {where}: {meta.get('err') or meta.get('status')}")
                return meta.get("metadata")
            return data.get("metadata")
        except lxd_errors.NotFound as err:
            raise NotFound(f"Incus: {where}: {err}") from None
        except lxd_errors.LXDAPIException as err:
            raise IncusApiError(f"Incus refused {where}: {err}") from None
        except (requests.RequestException, ValueError, KeyError, TypeError) as err:
            raise SourceError(f"Incus at {self.endpoint} unreachable: {_reason(err)}", INCUS_HINT) from None

    def get(self, path: str, **params: str) -> Any:
        return self.request("get", path, params=params)

    # -- reading the live state -------------------------------------------------------------------

    def read_live(self, domains: Iterable[str], pools: Iterable[str] = ("default",), *,
                  exact_networks: bool = True) -> dict[str, LiveObject]:
        """Every object anklume manages or would manage, by unit uid, in O(1) requests.

        ``exact_networks=False`` (the plan of a build) skips Incus's slowest listing,
        ``GET /1.0/networks?recursion=1`` (it computes every bridge's ``used_by`` over every
        instance): the bridge names come from the plain listing and each bridge's recorded key
        from its domain project's mirror (:data:`BRIDGE_MIRROR_KEY`); a bridge without a mirror
        is read on its own.  The mirror is cleared before a bridge is touched and set after its
        key is recorded, so it never names a key the bridge does not carry.  What it cannot see
        is a bridge deleted and re-created by hand under the same name: ``verify --live`` reads
        the bridges themselves."""
        domains = set(domains)
        live: dict[str, LiveObject] = {}

        def put(obj: LiveObject) -> None:
            prior = live.get(obj.uid)
            if prior is None or (obj.project in domains and prior.project not in domains):
                if prior is not None and prior.managed:
                    live[f"{prior.uid}@{prior.project}"] = prior
                live[obj.uid] = obj
            elif obj.managed:
                live[f"{obj.uid}@{obj.project}"] = obj

        scoped = set(domains)
        mirrors: dict[str, dict[str, str]] = {}  # domain -> the mirrored config of its bridge
        # the network listing runs on its own connection while the others are read
        with ThreadPoolExecutor(max_workers=1) as pool:
            networks = pool.submit(self.get, "networks", **({"recursion": "1"} if exact_networks else {}))
            self._read_rest(domains, pools, scoped, put, mirrors)
            listed = networks.result()
        if exact_networks:
            for n in listed:
                if n["name"].startswith("net-") and (n["name"][4:] in domains
                                                     or (n.get("config") or {}).get(MANAGED_KEY) == "true"):
                    put(_network(n))
            return live
        for url in listed:
            name = unquote(url.rsplit("/", 1)[-1])
            if not name.startswith("net-"):
                continue
            mirrored = mirrors.get(name[4:])
            if mirrored:
                put(LiveObject(kind="network", name=name[4:], project="default", object=name, type="bridge",
                               config=mirrored, status="Created"))
                continue
            try:
                n = self.get(f"networks/{quote(name, safe='')}")
            except NotFound:
                continue
            if name[4:] in domains or (n.get("config") or {}).get(MANAGED_KEY) == "true":
                put(_network(n))
        return live

    def _read_rest(self, domains: set[str], pools: Iterable[str], scoped: set[str], put,
                   mirrors: dict[str, dict[str, str]]) -> None:
        for p in self.get("projects", recursion="1"):
            config = p.get("config") or {}
            if config.get(BRIDGE_MIRROR_KEY):  # a bridge shares its project's owner (both written by one build)
                mirrors[p["name"]] = {MANAGED_KEY: "true", UNIT_KEY: config[BRIDGE_MIRROR_KEY],
                                      **({OWNER_KEY: config[OWNER_KEY]} if config.get(OWNER_KEY) else {})}
            if p["name"] in domains or (p.get("config") or {}).get(MANAGED_KEY) == "true":
                scoped.add(p["name"])
                put(_project(p))
        for pr in self._all_projects("profiles", scoped):
            if (pr.get("project") or "default") in scoped:
                put(_profile(pr, pr.get("project") or "default"))
        for inst in self._all_projects("instances", scoped):
            obj = _instance(inst, inst.get("project") or "default")
            if obj.project in scoped or obj.managed:
                put(obj)
        for pool in sorted(set(pools)):
            for vol in self.get(f"storage-pools/{pool}/volumes", recursion="1", **{"all-projects": "true"}):
                project = vol.get("project") or "default"
                if vol.get("type") == "custom" and project in scoped:
                    put(_volume(vol, project, pool))

    def refresh(self, live: Mapping[str, LiveObject], targets: Iterable[tuple[str, str, str, str, str | None]]
                ) -> dict[str, LiveObject]:
        """``live`` with the objects named re-read one by one (O(changes) requests), for a plan made
        again under the build lease.  A target is (uid, kind, project, object name, pool)."""
        out = dict(live)
        for uid, kind, project, name, pool in targets:
            path, params = {
                "project": (f"projects/{name}", {}),
                "network": (f"networks/{name}", {}),
                "profile": (f"profiles/{name}", {"project": project}),
                "instance": (f"instances/{name}", {"project": project}),
                "volume": (f"storage-pools/{pool}/volumes/custom/{name}", {"project": project}),
            }[kind]
            try:
                data = self.get(path, **params)
            except NotFound:
                out.pop(uid, None)
                continue
            if kind == "project":
                out[uid] = _project(data)
            elif kind == "network":
                out[uid] = _network(data)
            elif kind == "profile":
                out[uid] = _profile(data, project)
            elif kind == "instance":
                out[uid] = _instance(data, project)
            else:
                out[uid] = _volume(data, project, pool or "default")
        return out

    def _all_projects(self, collection: str, projects: set[str]) -> list[dict]:
        try:
            return self.get(collection, recursion="1", **{"all-projects": "true"})
        except IncusApiError:  # an older server: one listing per project
            out: list[dict] = []
            for project in sorted(projects):
                for item in self.get(collection, recursion="1", project=project):
                    out.append({**item, "project": project})
            return out

    # -- applying ---------------------------------------------------------------------------------

    def apply(self, change: Change, unit: Unit | None, obj: LiveObject | None, *, replace: bool = False) -> None:
        """Make one planned change. Raises IncusApiError with Incus's text on refusal."""
        if change.blocked and change.action != "delete":
            raise AnklumeError(change.blocked)
        if change.action == "delete":
            assert obj is not None
            return self.delete(obj)
        assert unit is not None
        getattr(self, f"_apply_{unit.kind}")(change, unit, obj)

    def _marks(self, key: str | None) -> dict[str, str]:
        marks = {MANAGED_KEY: "true"}
        if self.owner:
            marks[OWNER_KEY] = self.owner
        if key:
            marks[UNIT_KEY] = key
        return marks

    def _apply_project(self, change: Change, unit: Unit, obj: LiveObject | None) -> None:
        config = {**unit.spec["config"], **self._marks(unit.key)}
        if obj is None:
            self.request("post", "projects", body={"name": unit.object, "description": unit.spec["description"],
                                                    "config": config})
        else:
            if obj.config.get(BRIDGE_MIRROR_KEY):  # the PATCH replaces the config: keep the bridge's mirror
                config[BRIDGE_MIRROR_KEY] = obj.config[BRIDGE_MIRROR_KEY]
            self.request("patch", f"projects/{unit.object}",
                         body={"description": unit.spec["description"], "config": config})

    def _apply_network(self, change: Change, unit: Unit, obj: LiveObject | None) -> None:
        # creating a bridge is not atomic (a build killed meanwhile leaves it "Pending"): the key
        # is recorded by a last PATCH, and a network that is not "Created" is replaced.  The key's
        # mirror on the domain's project is cleared first and set last (see read_live).
        self._mirror_bridge_key(unit.name, "")
        if obj is not None and change.action == "replace":
            self.request("delete", f"networks/{obj.object}")
            obj = None
        config = {**unit.spec["config"], **self._marks(None)}
        if obj is None:
            self.request("post", "networks", body={"name": unit.object, "type": unit.spec["type"],
                                                    "description": unit.spec["description"], "config": config})
        else:
            self.request("patch", f"networks/{unit.object}",
                         body={"description": unit.spec["description"], "config": config})
        # the last PATCH restates the spec with the key (a POST that finished a pending bridge may
        # have ignored its description)
        self.request("patch", f"networks/{unit.object}", body={"description": unit.spec["description"],
                                                               "config": {**config, UNIT_KEY: unit.key}})
        self._mirror_bridge_key(unit.name, unit.key)

    def _mirror_bridge_key(self, domain: str, key: str) -> None:
        # Incus's PATCH of a project replaces its whole config: read, then PUT it back changed
        # (only this bridge's unit and the project's own unit, which runs before it, write it)
        try:
            project = self.get(f"projects/{domain}")
        except NotFound:
            if key:  # no project to carry the mirror: the bridge is read on its own
                raise
            return
        config = dict(project.get("config") or {})
        if config.get(BRIDGE_MIRROR_KEY, "") == key:
            return
        config[BRIDGE_MIRROR_KEY] = key
        if not key:
            del config[BRIDGE_MIRROR_KEY]
        self.request("put", f"projects/{domain}", body={"description": project.get("description") or "",
                                                        "config": config})

    def _apply_profile(self, change: Change, unit: Unit, obj: LiveObject | None) -> None:
        body = {"description": unit.spec["description"], "config": {**unit.spec["config"], **self._marks(unit.key)},
                "devices": unit.spec["devices"]}
        if obj is None and unit.object != "default":  # every project has its default profile
            self.request("post", "profiles", params={"project": unit.project}, body={"name": unit.object, **body})
        else:
            self.request("put", f"profiles/{unit.object}", params={"project": unit.project}, body=body)

    def _apply_volume(self, change: Change, unit: Unit, obj: LiveObject | None) -> None:
        # the storage driver works outside the database: the key is recorded by a last PATCH
        pool = unit.spec["pool"]
        path = f"storage-pools/{pool}/volumes/custom/{unit.object}"
        params = {"project": unit.project}
        config = {**unit.spec["config"], **self._marks(None)}
        if obj is not None and change.action == "replace":
            self.delete(obj)
            obj = None
        if obj is None:
            self.request("post", f"storage-pools/{pool}/volumes/custom", params=params,
                         body={"name": unit.object, "type": "custom", "config": config})
        else:
            keep = {k: v for k, v in obj.config.items() if k.startswith(OWNED_PREFIXES)}
            if obj.key:
                keep[UNIT_KEY] = obj.key
            self.request("put", path, params=params,
                         body={"description": obj.description, "config": {**keep, **config}})
        self.request("patch", path, params=params, body={"config": {UNIT_KEY: unit.key}})

    # instances ----------------------------------------------------------------------------------

    def _apply_instance(self, change: Change, unit: Unit, obj: LiveObject | None) -> None:
        project = {"project": unit.project}
        if change.start_only and obj is not None:
            self._set_state(unit.object, unit.project, "start")
            return
        if obj is not None and change.action == "replace":
            if obj.protected and obj.project == unit.project and obj.key:
                self._rebuild(unit, obj, change)
            else:
                if not obj.key:  # an interrupted create: let its operations end first
                    self._settle(obj)
                    fresh = self.get(f"instances/{obj.object}", project=obj.project)
                    obj = msgspec.structs.replace(obj, status=fresh.get("status"))
                if obj.protected:
                    self.request("patch", f"instances/{obj.object}", params={"project": obj.project},
                                 body={"config": {"security.protection.delete": "false"}})
                self._stop(obj)
                self.request("delete", f"instances/{obj.object}", params={"project": obj.project})
                obj = None
        if obj is None:
            self._ensure_image(unit)
            # protection is set with the key, at the end: an instance left half-created by an
            # interrupted build (no key) is never protected, so the next build can re-create it
            config = {k: v for k, v in unit.spec["config"].items() if k != "security.protection.delete"}
            body = {"name": unit.object, "type": unit.spec["type"], "description": unit.spec["description"],
                    "source": self._source(unit), "profiles": unit.spec["profiles"],
                    "config": {**config, **self._marks(None)}, "devices": unit.spec["devices"]}
            try:
                self.request("post", "instances", params=project, body=body)
                status = "Stopped"
            except IncusApiError as err:
                if "busy running" not in err.message and "already exists" not in err.message:
                    raise
                # a killed build's create of this very instance still ran inside Incus when the plan
                # was read: let it end, then take over what it made (or make it again when it made
                # something else)
                obj = self._after_interrupted_create(unit)
                if obj is None:
                    self.request("post", "instances", params=project, body=body)
                    status = "Stopped"
                else:
                    self._put_instance(unit, obj, keep_records=False)
                    status = obj.status
        else:
            if change.action != "replace":
                self._put_instance(unit, obj)
            status = obj.status if change.action != "replace" else "Stopped"
        if status != "Running":
            self._set_state(unit.object, unit.project, "start")
        final = {UNIT_KEY: unit.key}
        if "security.protection.delete" in unit.spec["config"]:
            final["security.protection.delete"] = unit.spec["config"]["security.protection.delete"]
        self.request("patch", f"instances/{unit.object}", params=project, body={"config": final})

    def _after_interrupted_create(self, unit: Unit) -> LiveObject | None:
        """After the operations on ``unit``'s instance ended: the instance an interrupted build
        created from the same image, ready to be taken over; None when there is none (it was
        deleted, here or because it came from another image)."""
        self._settle(LiveObject(kind="instance", name=unit.name, project=unit.project, object=unit.object))
        try:
            fresh = self.get(f"instances/{unit.object}", project=unit.project)
        except NotFound:
            return None
        obj = _instance(fresh, unit.project)
        if obj.config.get("volatile.base_image") == unit.spec["image"]["fingerprint"] and obj.type == unit.spec["type"]:
            return obj
        self._stop(obj)
        self.request("delete", f"instances/{unit.object}", params={"project": unit.project})
        return None

    def _settle(self, obj: LiveObject) -> None:
        """Wait for the operations still running on an instance (a killed build's create goes on)."""
        ops = self.get("operations", recursion="1", project=obj.project) or {}
        url = f"/1.0/instances/{obj.object}"
        for op in ops.get("running") or []:
            touched = [u for urls in (op.get("resources") or {}).values() for u in urls or []]
            if any(u == url or u.startswith(url + "?") for u in touched):
                try:
                    self.get(f"operations/{op['id']}/wait", timeout=str(OPERATION_TIMEOUT))
                except IncusApiError:
                    pass

    def _put_instance(self, unit: Unit, obj: LiveObject, *, keep_records: bool = True) -> None:
        # the records of what was placed inside it stay with an instance updated in place, and go
        # with its rootfs on a rebuild
        keep = OWNED_PREFIXES + ((RECORD_PREFIX,) if keep_records else ())
        owned = {k: v for k, v in obj.config.items() if k.startswith(keep)}
        if obj.key:
            owned[UNIT_KEY] = obj.key  # the new key is recorded only once everything else succeeded
        body = {"description": unit.spec["description"], "profiles": unit.spec["profiles"],
                "config": {**owned, **unit.spec["config"], **self._marks(None)}, "devices": unit.spec["devices"],
                "ephemeral": False}
        if obj.architecture:
            body["architecture"] = obj.architecture
        self.request("put", f"instances/{unit.object}", params={"project": unit.project}, body=body)

    def _rebuild(self, unit: Unit, obj: LiveObject, change: Change) -> None:
        """A protected instance, replaced with --replace: stop it, snapshot it, publish the snapshot
        as an image of the project (alias ``anklume-before-<name>-<old fingerprint>``: Incus refuses
        to rebuild an instance that has snapshots, and an image outlives everything), drop the
        snapshot, rebuild from the new image (its config, uuid and custom volumes stay), then apply
        its config and devices."""
        project = {"project": unit.project}
        self._stop(obj)
        old = (obj.config.get("volatile.base_image") or "unknown")[:12]
        snap = f"anklume-before-{old}"
        alias = f"anklume-before-{obj.object}-{old}"
        self.request("post", f"instances/{obj.object}/snapshots", params=project, body={"name": snap})
        try:
            self.request("delete", f"images/aliases/{alias}", params=project)
        except NotFound:
            pass
        self.request("post", "images", params=project, body={
            "source": {"type": "snapshot", "name": f"{obj.object}/{snap}"},
            "aliases": [{"name": alias, "description": f"{obj.object} before its image changed"}],
            "properties": {"description": f"anklume: {obj.object} before replace (image {old})"}})
        self.request("delete", f"instances/{obj.object}/snapshots/{snap}", params=project)
        self._ensure_image(unit)
        self.request("post", f"instances/{obj.object}/rebuild", params=project, body={"source": self._source(unit)})
        fresh = self.get(f"instances/{obj.object}", project=unit.project)
        self._put_instance(unit, LiveObject(kind="instance", name=obj.name, project=unit.project, object=obj.object,
                                            config=fresh.get("config") or {}, architecture=fresh.get("architecture")),
                           keep_records=False)

    def _source(self, unit: Unit) -> dict[str, str]:
        image = unit.spec["image"]
        if image.get("server"):
            return {"type": "image", "mode": "pull", "server": image["server"], "protocol": "simplestreams",
                    "fingerprint": image["fingerprint"]}
        return {"type": "image", "fingerprint": image["fingerprint"]}

    def _ensure_image(self, unit: Unit) -> None:
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
                self.get(f"images/{fp}", project=unit.project)
                return
            except NotFound:
                pass
            try:
                self.get(f"images/{fp}", project="default")
            except NotFound:
                raise AnklumeError(f"image {fp[:12]} of {unit.object} (a local: pin) is not in this Incus server's "
                                   "image store", "import it, or re-lock against this server") from None
            self.request("post", "images", params={"project": unit.project}, body={
                "source": {"type": "image", "mode": "pull", "protocol": "incus", "fingerprint": fp,
                           "project": "default"}})

    def _set_state(self, name: str, project: str, action: str) -> None:
        body: dict[str, Any] = {"action": action, "timeout": 30}
        if action == "stop":
            body["force"] = True
        try:
            self.request("put", f"instances/{name}/state", params={"project": project}, body=body)
        except IncusApiError as first:
            if action != "start":
                raise
            # an interrupted build's operations on it may still be settling: wait for them, retry once
            obj = LiveObject(kind="instance", name=name, project=project, object=name)
            self._settle(obj)
            for _ in range(20):  # "Starting" turns into "Running" (or stays down) within seconds
                status = self.get(f"instances/{name}", project=project).get("status")
                if status == "Running":
                    return
                if status in ("Stopped", "Error", "Frozen"):
                    break
                time.sleep(0.25)
            try:
                self.request("put", f"instances/{name}/state", params={"project": project}, body=body)
            except IncusApiError:
                raise first from None  # the first answer names the cause; the retry's is noise

    def _stop(self, obj: LiveObject) -> None:
        if obj.status not in (None, "Stopped"):
            self._set_state(obj.object, obj.project, "stop")

    # -- deleting ---------------------------------------------------------------------------------

    def delete(self, obj: LiveObject) -> None:
        project = {"project": obj.project}
        if obj.kind == "instance":
            self._stop(obj)
            self.request("delete", f"instances/{obj.object}", params=project)
        elif obj.kind == "volume":
            self.request("delete", f"storage-pools/{obj.pool}/volumes/custom/{obj.object}", params=project)
        elif obj.kind == "profile" and obj.object == "default":  # cannot be deleted: emptied (frees the bridge)
            self.request("put", "profiles/default", params=project,
                         body={"description": "", "config": {}, "devices": {}})
        elif obj.kind == "profile":
            self.request("delete", f"profiles/{obj.object}", params=project)
        elif obj.kind == "network":
            self.request("delete", f"networks/{obj.object}")
        elif obj.kind == "project":
            for fp in self.get("images", project=obj.object):
                self.request("delete", f"images/{fp.rsplit('/', 1)[-1]}", params={"project": obj.object})
            self.request("delete", f"projects/{obj.object}")
        else:  # pragma: no cover
            raise AnklumeError(f"cannot delete a {obj.kind}")

    # -- the build lease --------------------------------------------------------------------------

    def acquire_lease(self, holder: str, *, ttl: int = LEASE_TTL) -> str:
        """Take ``user.anklume.lease`` on the default project (compare-and-swap on its ETag), so two
        controllers never build against one daemon at once.  A lease whose time ran out, or whose
        holder is a dead process of this host, is taken over.  Returns the lease value."""
        value = f"{holder} {int(time.time()) + ttl}"
        for _ in range(5):
            project, etag = self._get_etag("projects/default")
            config = dict(project.get("config") or {})
            current = config.get(LEASE_KEY)
            if current and lease_alive(current):
                host, pid, expires = parse_lease(current)
                raise LeaseHeld(f"another anklume build holds the lease on {self.endpoint} (host {host}, pid {pid}, "
                                f"until {time.strftime('%H:%M:%S', time.localtime(expires))})",
                                "wait for it to finish; if it died on another host, remove the key with "
                                f"`incus project unset default {LEASE_KEY}`")
            config[LEASE_KEY] = value
            if self._put_if_match("projects/default", {"description": project.get("description") or "",
                                                       "config": config}, etag):
                return value
        raise LeaseHeld(f"could not take the build lease on {self.endpoint}: it keeps changing")

    def release_lease(self, value: str) -> None:
        for _ in range(5):
            project, etag = self._get_etag("projects/default")
            config = dict(project.get("config") or {})
            if config.get(LEASE_KEY) != value:
                return
            del config[LEASE_KEY]
            if self._put_if_match("projects/default", {"description": project.get("description") or "",
                                                       "config": config}, etag):
                return

    def _node(self, path: str):
        """pylxd's API node for ``/1.0/<path>`` on this thread's client."""
        node = self._connect().api
        for segment in path.split("/"):
            node = node[quote(segment, safe="")]
        return node

    def _get_etag(self, path: str) -> tuple[dict, str | None]:
        node = self._node(path)
        try:
            response = node.get()
            return response.json()["metadata"], response.headers.get("ETag")
        except lxd_errors.LXDAPIException as err:
            raise IncusApiError(f"Incus refused GET /1.0/{path}: {err}") from None
        except (requests.RequestException, ValueError, KeyError) as err:
            raise SourceError(f"Incus at {self.endpoint} unreachable: {_reason(err)}", INCUS_HINT) from None

    def _put_if_match(self, path: str, body: dict, etag: str | None) -> bool:
        """PUT guarded by If-Match; False when someone else changed the object first."""
        node = self._node(path)
        try:
            node.put(json=body, headers={"If-Match": etag} if etag else None)
            return True
        except lxd_errors.LXDAPIException as err:
            if err.response.status_code == 412:
                return False
            raise IncusApiError(f"Incus refused PUT /1.0/{path}: {err}") from None
        except (requests.RequestException, ValueError, KeyError) as err:
            raise SourceError(f"Incus at {self.endpoint} unreachable: {_reason(err)}", INCUS_HINT) from None



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
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
    return True


class NotFound(IncusApiError):
    """Incus answered 404."""


# -- API objects -> LiveObject --------------------------------------------------------------------


def _project(p: dict) -> LiveObject:
    return LiveObject(kind="project", name=p["name"], project="default", object=p["name"],
                      config=p.get("config") or {}, description=p.get("description") or "")


def _network(n: dict) -> LiveObject:
    return LiveObject(kind="network", name=n["name"].removeprefix("net-"), project="default", object=n["name"],
                      config=n.get("config") or {}, description=n.get("description") or "", type=n.get("type"),
                      status=n.get("status"))


def _profile(pr: dict, project: str) -> LiveObject:
    return LiveObject(kind="profile", name=f"{project}/{pr['name']}", project=project, object=pr["name"],
                      config=pr.get("config") or {}, devices=pr.get("devices") or {},
                      description=pr.get("description") or "")


def _instance(inst: dict, project: str) -> LiveObject:
    return LiveObject(kind="instance", name=inst["name"], project=project, object=inst["name"],
                      config=inst.get("config") or {}, devices=inst.get("devices") or {},
                      description=inst.get("description") or "", profiles=list(inst.get("profiles") or []),
                      status=inst.get("status"), type=inst.get("type"), architecture=inst.get("architecture"))


def _volume(vol: dict, project: str, pool: str) -> LiveObject:
    return LiveObject(kind="volume", name=f"{project}/{vol['name']}", project=project, object=vol["name"],
                      config=vol.get("config") or {}, description=vol.get("description") or "", pool=pool)

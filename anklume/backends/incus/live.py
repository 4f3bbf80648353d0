"""The live state: what Incus holds for the infra, read in a constant handful of requests
(``recursion=1`` listings: projects, networks, profiles and instances of all projects, and the
custom volumes of each pool in use), and the pure parsers from API objects to
:class:`~anklume.units.unit.LiveObject` (testable on recorded JSON without a daemon)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor

import msgspec
from urllib.parse import quote, unquote

from anklume.backends.incus.client import IncusApiError, IncusClient, NotFound
from anklume.units.unit import MANAGED_KEY, OWNER_KEY, UNIT_KEY, LiveObject

#: The recorded key of a domain's bridge, mirrored on its project (see :func:`read_live`).
BRIDGE_MIRROR_KEY = "user.anklume.bridge-key"
#: The recorded key of a domain's network ACL, mirrored on its project likewise: Incus computes
#: every ACL's ``used_by`` over every network and instance in the ACL listing (0.8 s for 20 ACLs
#: and 100 instances), which a no-op build cannot afford.
ACL_MIRROR_KEY = "user.anklume.acl-key"

def read_live(client: IncusClient, domains: Iterable[str], pools: Iterable[str] = ("default",), *,
              exact_networks: bool = True, members: bool = False) -> dict[str, LiveObject]:
    """Every object anklume manages or would manage, by unit uid, in O(1) requests.

    ``exact_networks=False`` (the plan of a build) skips Incus's slowest listing,
    ``GET /1.0/networks?recursion=1`` (it computes every bridge's ``used_by`` over every
    instance): the bridge names come from the plain listing and each bridge's recorded key
    from its domain project's mirror (:data:`BRIDGE_MIRROR_KEY`); a bridge without a mirror
    is read on its own.  The mirror is cleared before a bridge is touched and set after its
    key is recorded, so it never names a key the bridge does not carry.  What it cannot see
    is a bridge deleted and re-created by hand under the same name: ``verify --live`` reads
    the bridges themselves.  It also reads the storage pools (one more request), for the
    defaults Incus copies from a pool into each new volume (:func:`volume_defaults`).

    ``members`` (a lock made for a cluster): the cluster's members too, one request, as
    ``member:<name>`` objects whose status is the cluster's (:func:`read_members`)."""
    domains = set(domains)
    live: dict[str, LiveObject] = {}
    if members:
        live.update(read_members(client))

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
    acl_mirrors: dict[str, dict[str, str]] = {}  # domain -> the mirrored config of its ACL
    # the network listing runs on its own connection while the others are read
    pool_config: dict[str, dict[str, str]] = {}
    if exact_networks:
        pool_config = {p["name"]: p.get("config") or {} for p in client.get("storage-pools", recursion="1")}
    with ThreadPoolExecutor(max_workers=1) as pool:
        networks = pool.submit(client.get, "networks", **({"recursion": "1"} if exact_networks else {}))
        _read_rest(client, domains, pools, scoped, put, mirrors, pool_config, acl_mirrors)
        listed = networks.result()
    _read_acls(client, domains, put, acl_mirrors, exact=exact_networks)
    if exact_networks:
        for n in listed:
            if n["name"].startswith("net-") and (n["name"][4:] in domains
                                                 or (n.get("config") or {}).get(MANAGED_KEY) == "true"):
                put(parse_network(n))
        return live
    for url in listed:
        name = unquote(url.rsplit("/", 1)[-1])
        if not name.startswith("net-"):
            continue
        mirrored = mirrors.get(name[4:])
        if mirrored:
            put(LiveObject(kind="network", name=name[4:], project="default", object=name, type="bridge",
                           config=mirrored, status="Created", exact=False))
            continue
        try:
            n = client.get(f"networks/{quote(name, safe='')}")
        except NotFound:
            continue
        if name[4:] in domains or (n.get("config") or {}).get(MANAGED_KEY) == "true":
            put(parse_network(n))
    return live

def read_members(client: IncusClient) -> dict[str, LiveObject]:
    """The cluster's members (``GET /1.0/cluster/members?recursion=1``) as ``member:<name>``
    objects: ``status`` as the cluster says ("Online", "Offline", "Evacuated", ...),
    ``description`` its message ("Fully operational", "No heartbeat for 21s (...)"); none for a
    server that is not clustered."""
    try:
        listed = client.get("cluster/members", recursion="1") or []
    except IncusApiError:  # not clustered: "Server isn't part of a cluster"
        return {}
    return {f"member:{m['server_name']}": parse_member(m) for m in listed}


def _read_acls(client: IncusClient, domains: set[str], put, mirrors: Mapping[str, dict[str, str]], *,
               exact: bool) -> None:
    """The domains' network ACLs: with ``exact``, one listing with their rules and ``used_by``;
    otherwise the plain listing of names, each ACL's key from its project's mirror
    (:data:`ACL_MIRROR_KEY`), and an ACL without a mirror read on its own."""
    def ours(acl: dict) -> bool:
        return acl["name"].startswith("acl-") and (acl["name"][4:] in domains
                                                   or (acl.get("config") or {}).get(MANAGED_KEY) == "true")
    if exact:
        for acl in client.get("network-acls", recursion="1"):
            if ours(acl):
                put(parse_acl(acl))
        return
    for url in client.get("network-acls"):
        name = unquote(url.rsplit("/", 1)[-1])
        if not name.startswith("acl-"):
            continue
        mirrored = mirrors.get(name[4:])
        if mirrored:
            put(LiveObject(kind="acl", name=name[4:], project="default", object=name, config=mirrored, exact=False))
            continue
        try:
            acl = client.get(f"network-acls/{quote(name, safe='')}")
        except NotFound:
            continue
        if ours(acl):
            put(parse_acl(acl))

def _read_rest(client: IncusClient, domains: set[str], pools: Iterable[str], scoped: set[str], put,
               mirrors: dict[str, dict[str, str]], pool_config: Mapping[str, Mapping[str, str]],
               acl_mirrors: dict[str, dict[str, str]]) -> None:
    for p in client.get("projects", recursion="1"):
        config = p.get("config") or {}
        owner = {OWNER_KEY: config[OWNER_KEY]} if config.get(OWNER_KEY) else {}
        if config.get(BRIDGE_MIRROR_KEY):  # a bridge shares its project's owner (both written by one build)
            mirrors[p["name"]] = {MANAGED_KEY: "true", UNIT_KEY: config[BRIDGE_MIRROR_KEY], **owner}
        if config.get(ACL_MIRROR_KEY):  # so does its ACL
            acl_mirrors[p["name"]] = {MANAGED_KEY: "true", UNIT_KEY: config[ACL_MIRROR_KEY], **owner}
        if p["name"] in domains or (p.get("config") or {}).get(MANAGED_KEY) == "true":
            scoped.add(p["name"])
            put(parse_project(p))
    for pr in all_projects(client, "profiles", scoped):
        if (pr.get("project") or "default") in scoped:
            put(parse_profile(pr, pr.get("project") or "default"))
    for inst in all_projects(client, "instances", scoped):
        obj = parse_instance(inst, inst.get("project") or "default")
        if obj.project in scoped or obj.managed:
            put(obj)
    for pool in sorted(set(pools)):
        for vol in client.get(f"storage-pools/{pool}/volumes", recursion="1", **{"all-projects": "true"}):
            project = vol.get("project") or "default"
            if vol.get("type") == "custom" and project in scoped:
                put(parse_volume(vol, project, pool, pool_config.get(pool)))

def refresh(client: IncusClient, live: Mapping[str, LiveObject], targets: Iterable[tuple[str, str, str, str, str | None]]
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
            "acl": (f"network-acls/{name}", {}),
        }[kind]
        try:
            data = client.get(path, **params)
        except NotFound:
            out.pop(uid, None)
            continue
        except IncusApiError as err:
            member = _not_ready(err, out.get(uid), out)
            if member is None:
                raise
            # a cluster member the listing called Online that does not answer (just restarted, or
            # down before the cluster noticed): its units wait for it, as for a member that is down
            out[f"member:{member.name}"] = msgspec.structs.replace(
                member, status="Not answering", description=err.message.split(": ", 1)[-1])
            continue
        if kind == "project":
            out[uid] = parse_project(data)
        elif kind == "network":
            out[uid] = parse_network(data)
        elif kind == "profile":
            out[uid] = parse_profile(data, project)
        elif kind == "instance":
            out[uid] = parse_instance(data, project)
        elif kind == "acl":
            out[uid] = parse_acl(data)
        else:
            out[uid] = parse_volume(data, project, pool or "default")
    return out

#: What Incus 6.0 answers for an object on a member that does not answer: just restarted, or
#: stopped before the cluster saw it offline (the 10 to 20 s of ``cluster.offline_threshold``).
UNREACHABLE_MEMBER = ("Server isn't ready yet", "Missing event connection with target cluster member",
                      "Unable to connect to")


def _not_ready(err: IncusApiError, obj: LiveObject | None, live: Mapping[str, LiveObject]) -> LiveObject | None:
    """The member (its live object) of ``obj`` when ``err`` is Incus saying that member does not answer."""
    if not any(text in err.message for text in UNREACHABLE_MEMBER) or obj is None or obj.location is None:
        return None
    return live.get(f"member:{obj.location}")


def all_projects(client: IncusClient, collection: str, projects: set[str]) -> list[dict]:
    try:
        return client.get(collection, recursion="1", **{"all-projects": "true"})
    except IncusApiError:  # an older server: one listing per project
        out: list[dict] = []
        for project in sorted(projects):
            for item in client.get(collection, recursion="1", project=project):
                out.append({**item, "project": project})
        return out

# -- API objects -> LiveObject --------------------------------------------------------------------

def parse_project(p: dict) -> LiveObject:
    return LiveObject(kind="project", name=p["name"], project="default", object=p["name"],
                      config=p.get("config") or {}, description=p.get("description") or "")

def parse_network(n: dict) -> LiveObject:
    return LiveObject(kind="network", name=n["name"].removeprefix("net-"), project="default", object=n["name"],
                      config=n.get("config") or {}, description=n.get("description") or "", type=n.get("type"),
                      status=n.get("status"))

def parse_acl(acl: dict) -> LiveObject:
    """A network ACL (they live in the default project: the domains' projects share its networks)."""
    return LiveObject(kind="acl", name=acl["name"].removeprefix("acl-"), project="default", object=acl["name"],
                      config=acl.get("config") or {}, description=acl.get("description") or "",
                      rules={d: [dict(r) for r in acl.get(d) or []] for d in ("ingress", "egress")},
                      used_by=list(acl.get("used_by") or []))

def parse_profile(pr: dict, project: str) -> LiveObject:
    return LiveObject(kind="profile", name=f"{project}/{pr['name']}", project=project, object=pr["name"],
                      config=pr.get("config") or {}, devices=pr.get("devices") or {},
                      description=pr.get("description") or "")

def parse_instance(inst: dict, project: str) -> LiveObject:
    return LiveObject(kind="instance", name=inst["name"], project=project, object=inst["name"],
                      config=inst.get("config") or {}, devices=inst.get("devices") or {},
                      description=inst.get("description") or "", profiles=list(inst.get("profiles") or []),
                      status=inst.get("status"), type=inst.get("type"), architecture=inst.get("architecture"),
                      location=_location(inst))


def _location(obj: dict) -> str | None:
    """The member an object is on; None on a single server (Incus says "none")."""
    where = obj.get("location")
    return None if where in (None, "", "none") else where


def parse_member(m: dict) -> LiveObject:
    return LiveObject(kind="member", name=m["server_name"], project="default", object=m["server_name"],
                      status=m.get("status"), description=m.get("message") or "",
                      architecture=m.get("architecture"))

def parse_volume(vol: dict, project: str, pool: str, pool_config: Mapping[str, str] | None = None) -> LiveObject:
    """``pool_config``: the config of the volume's pool, when read (for :func:`volume_defaults`)."""
    return LiveObject(kind="volume", name=f"{project}/{vol['name']}", project=project, object=vol["name"],
                      config=vol.get("config") or {}, description=vol.get("description") or "", pool=pool,
                      defaults=volume_defaults(pool_config) if pool_config is not None else {},
                      location=_location(vol))


#: What block-backed drivers (lvm, ceph, zfs in block mode) write into a new filesystem volume
#: when neither the volume nor its pool (``volume.block.*``) names them (Incus's driver code; the
#: test daemon's ``dir`` pool refuses ``block.*`` keys, so they cannot appear there).
BLOCK_DEFAULTS = {"block.filesystem": "ext4", "block.mount_options": "discard"}


def volume_defaults(pool_config: Mapping[str, str]) -> dict[str, str]:
    """The config Incus copies into a new custom volume of a pool with ``pool_config``: each
    ``volume.<key>`` of the pool as ``<key>`` (seen: ``volume.snapshots.expiry``,
    ``volume.security.unmapped``), and the block-backed drivers' defaults."""
    out = {k.removeprefix("volume."): v for k, v in pool_config.items() if k.startswith("volume.")}
    for key, value in BLOCK_DEFAULTS.items():
        out.setdefault(key, value)
    if pool_config.get("lvm.stripes.size"):  # lvm copies this one without the volume. prefix
        out.setdefault("lvm.stripes.size", pool_config["lvm.stripes.size"])
    return out

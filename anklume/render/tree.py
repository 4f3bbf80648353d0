"""``render_tree``: Infra (+ Lock) -> the managed YAML of every file of the Ansible tree.

Without a lock the output is the original generator's (AnKLuMe v1 at b859608),
key for key and byte for byte, plus the machines' ``vars`` (a key the original
lacks).  With a lock, each ``host_vars`` file gains the pins the machine needs,
as keys *after* the original ones, then the machine's ``vars``.  Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from anklume.errors import StaleLock
from anklume.model.needs import OLLAMA_ROLE, OPEN_WEBUI_ROLE, image_key, is_gpu_machine, iter_machines, needs_ollama
from anklume.lock.schema import Lock
from anklume.model.schema import Domain, Infra, Machine
from anklume.render.yamlout import dump

OLLAMA_PORT = 11434
ALL_VARS = "group_vars/all.yml"


def render_tree(infra: Infra, lock: Lock | None = None) -> dict[str, str]:
    """Relative path -> YAML text of its managed section (no markers), in the
    original's order: ``group_vars/all.yml``, then per domain its inventory, its
    group_vars and the host_vars of its machines."""
    g = infra.global_
    out: dict[str, str] = {ALL_VARS: dump(_without_none({
        "project_name": infra.project_name,
        "base_subnet": g.base_subnet,
        "default_os_image": g.default_os_image,
        "psot_default_connection": g.default_connection,
        "psot_default_user": g.default_user,
        "network_policies": [{"description": p.description, "from": p.from_, "to": p.to, "ports": p.ports,
                              "protocol": p.protocol, "bidirectional": p.bidirectional}
                             for p in infra.network_policies] or None,
    }))}
    ollama_hosts = _ollama_hosts(infra) if lock is not None else None
    for dname, domain in infra.domains.items():
        machines = domain.machines or {}
        out[f"inventory/{dname}.yml"] = dump(inventory_vars(dname, machines))
        out[f"group_vars/{dname}.yml"] = dump(domain_vars(infra, dname, domain))
        for mname, machine in machines.items():
            hvars = host_vars(infra, dname, domain, mname, machine)
            if lock is not None:
                assert ollama_hosts is not None
                _add_pins(hvars, infra, lock, dname, domain, mname, machine, ollama_hosts)
            _add_user_vars(hvars, machine)
            out[f"host_vars/{mname}.yml"] = dump(hvars)
    return out


def _without_none(mapping: dict[str, Any]) -> dict[str, Any]:
    """The original drops ``None`` from the mappings it builds (not from inside values)."""
    return {k: v for k, v in mapping.items() if v is not None}


def inventory_vars(dname: str, machines: Mapping[str, Machine]) -> dict[str, Any]:
    hosts = {m: ({"ansible_host": machine.ip} if machine.ip else None) for m, machine in machines.items()}
    return {"all": {"children": {dname: {"hosts": hosts or None}}}}


def domain_vars(infra: Infra, dname: str, domain: Domain) -> dict[str, Any]:
    bs, sid = infra.global_.base_subnet, domain.subnet_id
    gvars = _without_none({
        "domain_name": dname,
        "domain_description": domain.description,
        "domain_ephemeral": domain.ephemeral,
        "domain_trust_level": domain.trust_level,
        "incus_project": dname,
        "incus_network": {"name": f"net-{dname}", "subnet": f"{bs}.{sid}.0/24", "gateway": f"{bs}.{sid}.254"},
        "subnet_id": sid,
    })
    if domain.profiles:
        gvars["incus_profiles"] = domain.profiles
    return gvars


def host_vars(infra: Infra, dname: str, domain: Domain, mname: str, machine: Machine) -> dict[str, Any]:
    """The original's host_vars keys, in its order."""
    return _without_none({
        "instance_name": mname,
        "instance_type": machine.type,
        "instance_description": machine.description,
        "instance_domain": dname,
        "instance_ephemeral": machine.ephemeral if machine.ephemeral is not None else domain.ephemeral,
        "instance_os_image": machine.os_image or infra.global_.default_os_image,
        "instance_ip": machine.ip,
        "instance_gpu": machine.gpu,
        "instance_profiles": machine.profiles,
        "instance_config": machine.config,
        "instance_devices": machine.devices,
        "instance_storage_volumes": machine.storage_volumes,
        "instance_roles": machine.roles,
    })


# -- pins ---------------------------------------------------------------------------


def _stale(what: str) -> StaleLock:
    return StaleLock(f"anklume.lock has no pin for {what}; run `anklume lock`",
                     "infra.yml changed since the lock was written")


def _add_pins(hvars: dict[str, Any], infra: Infra, lock: Lock, dname: str, domain: Domain, mname: str,
              machine: Machine, ollama_hosts: dict[str | None, list[Machine]]) -> None:
    """Derived keys after the original ones; a key the user sets in ``vars`` is left to them."""
    user = machine.vars or {}

    def put(key: str, value: Any) -> None:
        if key not in user and key not in hvars:
            hvars[key] = value

    key = image_key(infra, machine)
    image = lock.images.get(key)
    if image is None:
        raise _stale(f"the image '{key}' of machine '{mname}'")
    put("instance_image_fingerprint", image.locked.fingerprint)
    if is_gpu_machine(domain, machine):
        gpu = lock.gpus.get(mname)
        if gpu is None:
            raise _stale(f"the GPU of machine '{mname}'")
        put("instance_gpu_pci", gpu.locked.pci)
    if needs_ollama(machine):
        if lock.ollama is None:
            raise _stale(f"the Ollama release (machine '{mname}' needs it)")
        put("ollama_version", lock.ollama.locked.version)
        put("ollama_release_url", lock.ollama.locked.url)
        put("ollama_release_sha256", lock.ollama.locked.sha256)
    if machine.models:
        models = []
        for ref in machine.models:
            pin = lock.models.get(ref)
            if pin is None:
                raise _stale(f"the model '{ref}' of machine '{mname}'")
            models.append({"name": ref, "digest": pin.locked.digest})
        put("ollama_models", models)
    if OPEN_WEBUI_ROLE in (machine.roles or []):
        url = open_webui_ollama_url(dname, ollama_hosts)
        if url is not None:
            put("open_webui_ollama_url", url)
        if lock.open_webui is None:
            raise _stale(f"the Open WebUI package (machine '{mname}' needs it)")
        put("open_webui_version", lock.open_webui.locked.version)
        put("open_webui_wheel_filename", lock.open_webui.locked.filename)
        put("open_webui_wheel_sha256", lock.open_webui.locked.sha256)


def _ollama_hosts(infra: Infra) -> dict[str | None, list[Machine]]:
    """Machines with the ``ollama_server`` role, per domain and (key None) in the whole infra."""
    hosts: dict[str | None, list[Machine]] = {None: []}
    for dname, _domain, _mname, machine in iter_machines(infra):
        if OLLAMA_ROLE in (machine.roles or []):
            hosts.setdefault(dname, []).append(machine)
            hosts[None].append(machine)
    return hosts


def open_webui_ollama_url(dname: str, ollama_hosts: Mapping[str | None, list[Machine]]) -> str | None:
    """The Ollama an Open WebUI talks to: the first ``ollama_server`` of its own domain,
    else the only one in the whole infra; None when there is no such machine, when
    the choice is ambiguous, or when that machine has no fixed IP."""
    same = ollama_hosts.get(dname) or []
    everywhere = ollama_hosts.get(None) or []
    if same:
        target = same[0]
    elif len(everywhere) == 1:
        target = everywhere[0]
    else:
        return None
    return f"http://{target.ip}:{OLLAMA_PORT}" if target.ip else None


def _add_user_vars(hvars: dict[str, Any], machine: Machine) -> None:
    """The machine's ``vars``, in the user's order.  The generated (original) keys are
    never replaced; validation already refuses the ``instance_`` names they use."""
    for key, value in (machine.vars or {}).items():
        if key not in hvars:
            hvars[key] = value

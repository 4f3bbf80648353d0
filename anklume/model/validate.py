"""Cross-field rules of ``infra.yml``: the original's, and the ones it lacked.

Pure: no I/O.  Every problem goes into the context; nothing stops at the first.
"""

from __future__ import annotations

import difflib
import ipaddress
import re

from anklume.model.convert import Context
from anklume.model.schema import Infra
from anklume.model.names import (ANSIBLE_VAR_RE, DEVICE_RE, DOMAIN_RE, MACHINE_RE, MEMBER_RE, PROFILE_RE,
                                 ROLE_RE, check_model_ref, parse_image_ref, parse_model_ref)

IFNAMSIZ = 15  # Linux interface names: at most 15 characters
_OCTET = re.compile(r"[0-9]{1,3}")
#: The ``anklume_`` variables a machine's ``vars`` may set: settings of the shipped roles.
USER_SETTINGS = frozenset({"anklume_require_systemd"})


def validate_infra(infra: Infra, ctx: Context) -> None:
    base = _base_subnet(infra, ctx)
    _image(infra.global_.default_os_image, ("global", "default_os_image"), ctx)
    subnet_owner: dict[int, str] = {}
    machine_owner: dict[str, str] = {}
    ip_owner: dict[str, str] = {}
    for dname, domain in infra.domains.items():
        dpath = ("domains", dname)
        if not DOMAIN_RE.fullmatch(dname):
            ctx.add(dpath, f"Domain '{dname}': invalid name (lowercase alphanumeric + hyphen)",
                    "use lowercase letters, digits and inner hyphens, e.g. 'homelab'")
        elif dname == "all":
            ctx.add(dpath, "a domain cannot be named 'all': Ansible's group 'all' holds every host "
                           "(and group_vars/all.yml is the global file)", "rename the domain")
        elif dname == "default":
            ctx.add(dpath, "a domain cannot be named 'default': its Incus project and profile would be the "
                           "daemon's own default project and profile", "rename the domain")
        elif len(f"net-{dname}") > IFNAMSIZ:
            ctx.add(dpath, f"Domain '{dname}': name too long: the bridge 'net-{dname}' would have "
                           f"{len(dname) + 4} characters, Linux allows {IFNAMSIZ}",
                    f"use a domain name of at most {IFNAMSIZ - 4} characters")
        if domain.subnet_id in subnet_owner:
            ctx.add(dpath + ("subnet_id",), f"Domain '{dname}': subnet_id {domain.subnet_id} already "
                                            f"used by '{subnet_owner[domain.subnet_id]}'",
                    "give each domain its own subnet_id (0-254)")
        else:
            subnet_owner[domain.subnet_id] = dname
        _target(domain.target, dpath + ("target",), ctx)
        profiles = domain.profiles or {}
        for pname, profile in profiles.items():
            ppath = dpath + ("profiles", pname)
            if not PROFILE_RE.fullmatch(pname):
                ctx.add(ppath, f"invalid profile name '{pname}'", "letters, digits, '-', '_' and '.'")
            for dev in (profile.get("devices") or {}):
                if not DEVICE_RE.fullmatch(dev):
                    ctx.add(ppath + ("devices", dev), f"invalid device name '{dev}'")
        network = None
        if base is not None:
            network = ipaddress.IPv4Network(f"{base}.{domain.subnet_id}.0/24")
        for mname, machine in (domain.machines or {}).items():
            mpath = dpath + ("machines", mname)
            if not MACHINE_RE.fullmatch(mname):
                ctx.add(mpath, f"Machine '{mname}': invalid name",
                        "1-63 characters: lowercase letters, digits and inner hyphens, starting with a letter")
            if mname in machine_owner:
                ctx.add(mpath, f"Machine '{mname}': duplicate (already in '{machine_owner[mname]}')",
                        "machine names are global: rename one of them")
            else:
                machine_owner[mname] = dname
            if machine.ip is not None:
                _ip(mname, machine.ip, network, mpath + ("ip",), ip_owner, ctx)
            _target(machine.target, mpath + ("target",), ctx)
            for i, prof in enumerate(machine.profiles or []):
                if prof != "default" and prof not in profiles:
                    ctx.add(mpath + ("profiles", i), f"Machine '{mname}': profile '{prof}' not defined "
                                                     f"in domain '{dname}'",
                            f"define it under domains.{dname}.profiles, or use 'default'")
            for i, role in enumerate(machine.roles or []):
                if not ROLE_RE.fullmatch(role):
                    ctx.add(mpath + ("roles", i), f"invalid role name '{role}'",
                            "an Ansible role name: letters, digits, '_' (and '.' for collections)")
            for dev in (machine.devices or {}):
                if not DEVICE_RE.fullmatch(dev):
                    ctx.add(mpath + ("devices", dev), f"invalid device name '{dev}'")
            for vname, vol in (machine.storage_volumes or {}).items():
                vpath = mpath + ("storage_volumes", vname)
                if not DEVICE_RE.fullmatch(vname):
                    ctx.add(vpath, f"invalid storage volume name '{vname}'")
                if not str(vol.get("path", "")).startswith("/"):
                    ctx.add(vpath + ("path",), "the mount path must be absolute", "e.g. /root/.ollama")
            _image(machine.os_image, mpath + ("os_image",), ctx)
            seen: dict[str, str] = {}  # full name -> the reference as written first
            for i, ref in enumerate(machine.models or []):
                error = check_model_ref(ref)
                if error:
                    ctx.add(mpath + ("models", i), f"invalid model reference: {error}",
                            "e.g. 'llama3.2:3b' or 'registry.example.org/team/model:tag'")
                    continue
                full = str(parse_model_ref(ref))  # 'llama3.2' and 'library/llama3.2:latest' are one model
                if full in seen:
                    ctx.add(mpath + ("models", i),
                            f"the same model is listed twice: '{ref}' is '{seen[full]}'")
                else:
                    seen[full] = ref
            for var in (machine.vars or {}):
                if not ANSIBLE_VAR_RE.fullmatch(str(var)):
                    ctx.add(mpath + ("vars", var), f"'{var}' is not a valid Ansible variable name",
                            "letters, digits and '_', not starting with a digit")
                elif (var.startswith("instance_") or var.startswith("anklume_")) and var not in USER_SETTINGS:
                    ctx.add(mpath + ("vars", var), f"'{var}' is reserved for the generated variables",
                            "choose a name that does not start with 'instance_' or 'anklume_' "
                            f"(those you may set: {', '.join(sorted(USER_SETTINGS))})")
    if infra.global_.firewall_mode == "vm":
        ctx.add(("global", "firewall_mode"), "firewall_mode 'vm' (a firewall VM routing between the domains) is "
                                             "not implemented",
                "use 'host' (the default): Incus network ACLs on the domain bridges (docs/network.md)")
    _policies(infra, machine_owner, ctx)


def _policies(infra: Infra, machine_owner: dict[str, str], ctx: Context) -> None:
    """Each end names a domain or a machine with an ``ip``; the two ends are in two domains."""
    machines = {m: machine for _, _, m, machine in _machines(infra)}
    for i, policy in enumerate(infra.network_policies):
        path = ("network_policies", i)
        ends: list[str | None] = []
        for key, name in (("from", policy.from_), ("to", policy.to)):
            if name in infra.domains:
                ends.append(name)
            elif name in machines:
                ends.append(machine_owner.get(name))
                if machines[name].ip is None:
                    ctx.add(path + (key,), f"machine '{name}' has no ip: a policy names a machine by its address",
                            f"give '{name}' an ip, or name its domain '{machine_owner.get(name)}'")
            else:
                ends.append(None)
                close = difflib.get_close_matches(name, [*infra.domains, *machines], n=1)
                ctx.add(path + (key,), f"'{key}: {name}' is not a known domain or machine",
                        f"did you mean '{close[0]}'?" if close else "name a domain or a machine of infra.yml")
        if ends[0] is not None and ends[0] == ends[1]:
            ctx.add(path, f"both ends are in domain '{ends[0]}': traffic inside a domain is always open",
                    "a policy opens a flow between two domains; remove this one")


def _machines(infra: Infra):
    for dname, domain in infra.domains.items():
        for mname, machine in (domain.machines or {}).items():
            yield dname, domain, mname, machine


def _base_subnet(infra: Infra, ctx: Context) -> str | None:
    if any(p.path == "global.base_subnet" for p in ctx.problems):
        return None  # not a string (e.g. 172.16 unquoted): the default would flag every IP
    base = infra.global_.base_subnet
    parts = base.split(".")
    # ASCII digits only: str.isdigit takes '²' too, and int('²') raises
    if len(parts) != 2 or not all(_OCTET.fullmatch(p) and str(int(p)) == p and int(p) <= 255 for p in parts):
        ctx.add(("global", "base_subnet"), f"expected the first two octets of an IPv4 network "
                                           f"like '10.100', got {base!r}")
        return None
    return base


def _ip(mname: str, ip: str, network: ipaddress.IPv4Network | None, path, owners: dict[str, str],
        ctx: Context) -> None:
    try:
        addr = ipaddress.IPv4Address(ip)
    except ValueError:
        ctx.add(path, f"Machine '{mname}': '{ip}' is not an IPv4 address",
                "four numbers 0-255 separated by dots, e.g. 10.100.1.10")
        return
    if ip in owners:
        ctx.add(path, f"Machine '{mname}': IP {ip} already used by '{owners[ip]}'")
    else:
        owners[ip] = mname
    if network is None:
        return
    if addr not in network:
        ctx.add(path, f"Machine '{mname}': IP {ip} not in subnet {network}",
                f"use an address from {network.network_address + 1} to {network.network_address + 253}")
    elif addr == network.network_address:
        ctx.add(path, f"Machine '{mname}': IP {ip} is the network address of {network}")
    elif addr == network.broadcast_address:
        ctx.add(path, f"Machine '{mname}': IP {ip} is the broadcast address of {network}")
    elif addr == network.network_address + 254:
        ctx.add(path, f"Machine '{mname}': IP {ip} is the gateway of {network} (the bridge's address)",
                "the .254 address belongs to the domain's bridge; pick .1 to .253")


def _target(member: str | None, path, ctx: Context) -> None:
    if member is not None and not MEMBER_RE.fullmatch(member):
        ctx.add(path, f"invalid cluster member name {member!r}",
                "the name `incus cluster list` shows: letters, digits and inner '-', '_', '.' (at most 63)")


def _image(ref: str | None, path, ctx: Context) -> None:
    if ref is None:
        return
    error = parse_image_ref(ref)[2]
    if error:
        ctx.add(path, f"invalid image reference {ref!r}: {error}",
                "use 'images:<alias>' (simplestreams) or 'local:<alias>' (the Incus server's images)")



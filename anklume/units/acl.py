"""Isolation between domains: one Incus network ACL per domain, on its bridge (pure).

Each domain ``d`` gets the ACL ``acl-d``, attached to its bridge ``net-d`` with
``security.acls=acl-d``, ``security.acls.default.ingress.action=drop`` and
``security.acls.default.egress.action=allow``.  Incus applies a bridge's ACL at the boundary
between the bridge and the host; for a bridge, *egress* is what leaves its instances and
*ingress* what enters them.  So:

- inside a domain (one bridge) nothing is filtered;
- what leaves a domain is allowed (its gateway, DHCP and DNS on the bridge address, the internet
  through NAT), and what comes back on those connections passes (the ACLs are stateful);
- what enters a domain from elsewhere is dropped, unless an ingress rule of its ACL allows it:
  an ``admin`` domain's whole subnet (``trust_level: admin`` reaches every domain), or a declared
  flow (``network_policies``): its source (a subnet, or a machine's ``/32``), its destination,
  its protocol and ports; ``bidirectional`` adds the mirror rule to the source's ACL.

Only allow rules and default actions are written: Incus does not evaluate rules in list order,
and a drop or reject rule would win over every allow.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from anklume.model.schema import Infra, NetworkPolicy
from anklume.units.unit import LiveObject, Unit, uid_of

#: The fields of an Incus ACL rule, as the API returns them (every one, empty when unset).
RULE_FIELDS = ("action", "source", "destination", "protocol", "source_port", "destination_port",
               "icmp_type", "icmp_code", "description", "state")
ADMIN = "admin"


def acl_name(domain: str) -> str:
    return f"acl-{domain}"


def bridge_acl_config(domain: str) -> dict[str, str]:
    """The keys that attach a domain's ACL to its bridge."""
    return {"security.acls": acl_name(domain),
            "security.acls.default.ingress.action": "drop",
            "security.acls.default.egress.action": "allow"}


def rule(**fields: str) -> dict[str, str]:
    """An allow rule with every field (as Incus returns it)."""
    out = {f: "" for f in RULE_FIELDS}
    out.update(action="allow", state="enabled")
    out.update(fields)
    return out


def normalized(rules: Iterable[Mapping[str, Any]]) -> list[dict[str, str]]:
    """Rules in a canonical order, every field present (to compare the live ones with the spec)."""
    full = [{f: str(r.get(f) or "") for f in RULE_FIELDS} for r in rules]
    return sorted(full, key=lambda r: tuple(r[f] for f in RULE_FIELDS))


def _endpoint(infra: Infra, name: str) -> tuple[str, str]:
    """(domain, CIDR) of a policy end: a domain's subnet or a machine's address."""
    base = infra.global_.base_subnet
    if name in infra.domains:
        return name, f"{base}.{infra.domains[name].subnet_id}.0/24"
    for dname, domain in infra.domains.items():
        machine = (domain.machines or {}).get(name)
        if machine is not None:
            return dname, f"{machine.ip}/32"
    raise KeyError(name)  # pragma: no cover - validated: every end exists


def _policy_rules(policy: NetworkPolicy, src: str, dst: str, text: str) -> dict[str, str]:
    if policy.ports == "all":
        return rule(source=src, destination=dst, description=text)
    return rule(source=src, destination=dst, protocol=policy.protocol,
                destination_port=",".join(str(p) for p in policy.ports), description=text)


def ingress_rules(infra: Infra) -> dict[str, list[dict[str, str]]]:
    """Domain -> the ingress rules of its ACL (canonical order)."""
    base = infra.global_.base_subnet
    out: dict[str, list[dict[str, str]]] = {d: [] for d in infra.domains}
    for aname, admin in infra.domains.items():
        if admin.trust_level != ADMIN:
            continue
        for dname in infra.domains:
            if dname != aname:
                out[dname].append(rule(source=f"{base}.{admin.subnet_id}.0/24",
                                       description=f"trust_level admin: {aname} reaches every domain"))
    for i, policy in enumerate(infra.network_policies):
        fdom, fcidr = _endpoint(infra, policy.from_)
        tdom, tcidr = _endpoint(infra, policy.to)
        text = (policy.description or f"network_policies[{i}]: {policy.from_} -> {policy.to}")[:255]
        out[tdom].append(_policy_rules(policy, fcidr, tcidr, text))
        if policy.bidirectional:
            out[fdom].append(_policy_rules(policy, tcidr, fcidr, text))
    return {d: _unique(normalized(rules)) for d, rules in out.items()}


def _unique(rules: list[dict[str, str]]) -> list[dict[str, str]]:
    out: list[dict[str, str]] = []
    for r in rules:
        if r not in out:
            out.append(r)
    return out


def acl_units(infra: Infra) -> list[Unit]:
    """``acl:d`` for each domain: created after its project and before the bridge that uses it,
    deleted after that bridge."""
    rules = ingress_rules(infra)
    # after its project: its key is mirrored there (see anklume.backends.incus.live.read_live)
    return [Unit(kind="acl", name=dname, project="default", object=acl_name(dname),
                 spec={"description": f"anklume: isolation of domain {dname}", "config": {},
                       "ingress": rules[dname], "egress": []}, after=(uid_of("project", dname),))
            for dname in infra.domains]


def acl_uid(domain: str) -> str:
    return uid_of("acl", domain)


DIRECTIONS = ("ingress", "egress")


def rule_drift(unit: Unit, obj: LiveObject) -> list[tuple[str, dict[str, str] | None, dict[str, str] | None]]:
    """The rules of a live ACL that differ from its unit's: (direction, expected, found) for each
    rule missing (found None) or extra (expected None); an edited rule is one of each."""
    out: list[tuple[str, dict[str, str] | None, dict[str, str] | None]] = []
    for direction in DIRECTIONS:
        want = normalized(unit.spec[direction])
        have = normalized(obj.rules.get(direction) or [])
        out += [(direction, r, None) for r in want if r not in have]
        out += [(direction, None, r) for r in have if r not in want]
    return out


def bridge_uses_acl(bridge: str, acl: LiveObject) -> bool | None:
    """Whether the ACL's ``used_by`` names the bridge (None: not read)."""
    if acl.used_by is None:
        return None
    return any(url.split("?", 1)[0] == f"/1.0/networks/{bridge}" for url in acl.used_by)


def show_rule(r: Mapping[str, str]) -> str:
    """A rule in one line: its non-empty fields (the state only when not enabled)."""
    return " ".join(f"{f}={r[f]}" for f in RULE_FIELDS
                    if r.get(f) and f != "description" and not (f == "state" and r[f] == "enabled"))

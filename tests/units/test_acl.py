"""Isolation between domains: the ACL units, their rules, and hand edits seen by the plan and
by verify --live (pure)."""

from __future__ import annotations

import msgspec

from anklume.backends.incus.live import parse_acl
from anklume.units.acl import ingress_rules, rule
from anklume.units.build import build_units
from anklume.units.findings import unit_findings
from anklume.units.plan import plan_changes
from tests.units.infra import make_infra, make_lock
from tests.units.test_plan import live_of

DOC = {
    "project_name": "iso",
    "global": {"base_subnet": "10.100", "default_os_image": "local:busybox"},
    "domains": {
        "admin": {"subnet_id": 0, "trust_level": "admin", "machines": {"adm": {"ip": "10.100.0.10"}}},
        "pro": {"subnet_id": 2, "trust_level": "trusted", "machines": {"pro-web": {"ip": "10.100.2.10"}}},
        "perso": {"subnet_id": 1, "machines": {"perso-ws": {"ip": "10.100.1.10"}}},
    },
    "network_policies": [
        {"description": "perso reaches the pro web server", "from": "perso", "to": "pro-web",
         "ports": [8080, 8443], "protocol": "tcp"},
        {"from": "perso-ws", "to": "pro", "ports": "all", "bidirectional": True},
    ],
}


def graph():
    infra = make_infra(DOC)
    return build_units(infra, make_lock(infra))


def test_rules_per_domain():
    rules = ingress_rules(make_infra(DOC))
    admin_in = rule(source="10.100.0.0/24", description="trust_level admin: admin reaches every domain")
    assert rules["admin"] == []  # nobody reaches the admin domain
    assert rules["perso"] == [
        admin_in,
        rule(source="10.100.2.0/24", destination="10.100.1.10/32", description="network_policies[1]: perso-ws -> pro")]
    assert rule(source="10.100.1.0/24", destination="10.100.2.10/32", protocol="tcp", destination_port="8080,8443",
                description="perso reaches the pro web server") in rules["pro"]
    assert rule(source="10.100.1.10/32", destination="10.100.2.0/24",
                description="network_policies[1]: perso-ws -> pro") in rules["pro"]
    assert admin_in in rules["pro"] and len(rules["pro"]) == 3
    assert all(r["action"] == "allow" for rs in rules.values() for r in rs)  # drop wins: only allows


def test_acl_unit_before_its_bridge_and_the_bridge_attaches_it():
    g = graph()
    order = [u.uid for u in g]
    assert order.index("acl:pro") < order.index("network:pro")
    net = g["network:pro"].spec["config"]
    assert net["security.acls"] == g["acl:pro"].object == "acl-pro"
    assert net["security.acls.default.ingress.action"] == "drop"
    assert net["security.acls.default.egress.action"] == "allow"


def test_a_policy_change_touches_only_the_acls_it_names():
    g1 = graph()
    doc = msgspec.json.decode(msgspec.json.encode(DOC))
    doc["network_policies"][0]["ports"] = [8080]
    infra = make_infra(doc)
    g2 = build_units(infra, make_lock(infra))
    changed = [u.uid for u in g2 if u.key != g1[u.uid].key]
    assert changed == ["acl:pro"]


def test_rules_edited_by_hand_are_an_update_and_a_finding():
    g = graph()
    live = live_of(g)
    assert not plan_changes(g, live).pending
    acl = live["acl:pro"]
    wrong = [dict(r) for r in acl.rules["ingress"]]
    wrong[0] = {**wrong[0], "destination_port": "1-65535", "protocol": "tcp"}
    wrong.append(rule(source="0.0.0.0/0"))
    live["acl:pro"] = msgspec.structs.replace(acl, rules={"ingress": wrong, "egress": []})
    plan = plan_changes(g, live)
    assert [c.uid for c in plan.pending] == ["acl:pro"]
    text = "\n".join(r.render() for r in plan.pending[0].reasons)
    assert "ingress rule missing" in text and "ingress rule added by hand: action=allow source=0.0.0.0/0" in text
    found = unit_findings(g["acl:pro"], live["acl:pro"])
    assert [(f.field, f.expected is None, f.actual is None) for f in found].count(("ingress rule", True, False)) == 2
    assert [(f.field, f.expected is None, f.actual is None) for f in found].count(("ingress rule", False, True)) == 1


def test_a_bridge_that_no_longer_applies_its_acl_is_updated():
    g = graph()
    live = live_of(g)
    live["acl:perso"] = msgspec.structs.replace(live["acl:perso"], used_by=[])
    plan = plan_changes(g, live)
    assert [c.uid for c in plan.pending] == ["network:perso"]
    assert "no longer applies acl-perso" in plan.pending[0].reasons[0].render()


def test_bridge_acl_keys_changed_by_hand_are_findings():
    g = graph()
    live = live_of(g)
    net = live["network:pro"]
    live["network:pro"] = msgspec.structs.replace(
        net, config={**net.config, "security.acls.default.ingress.action": "allow"})
    found = unit_findings(g["network:pro"], live["network:pro"])
    assert [(f.field, f.expected, f.actual) for f in found] == [
        ("config.security.acls.default.ingress.action", "drop", "allow")]


def test_orphan_acl_is_deleted_after_its_bridge():
    g = graph()
    live = live_of(g)
    doc = msgspec.json.decode(msgspec.json.encode(DOC))
    del doc["domains"]["perso"]
    doc["network_policies"] = []
    infra = make_infra(doc)
    g2 = build_units(infra, make_lock(infra))
    deletes = [c.uid for c in plan_changes(g2, live, prune=True).changes if c.action == "delete"]
    assert deletes.index("network:perso") < deletes.index("acl:perso") < deletes.index("project:perso")


def test_parse_acl():
    obj = parse_acl({"name": "acl-pro", "description": "d", "config": {"user.anklume.managed": "true"},
                     "ingress": [{"action": "allow", "source": "10.0.0.0/24", "state": "enabled"}], "egress": None,
                     "used_by": ["/1.0/networks/net-pro"]})
    assert (obj.uid, obj.domain, obj.managed) == ("acl:pro", "pro", True)
    assert obj.rules == {"ingress": [{"action": "allow", "source": "10.0.0.0/24", "state": "enabled"}], "egress": []}


def test_known_by_its_mirrored_key_only_nothing_is_compared():
    """A plain build reads an ACL's and a bridge's keys from their project (exact=False): no rules,
    no bridge config; only `build --deep` (exact) compares them."""
    g = graph()
    live = live_of(g)
    for uid in ("acl:pro", "network:pro"):
        o = live[uid]
        live[uid] = msgspec.structs.replace(o, config={k: v for k, v in o.config.items() if k.startswith("user.")},
                                            rules={}, used_by=None, exact=False)
    assert not plan_changes(g, live).pending


def test_an_exact_bridge_with_a_default_action_changed_by_hand_is_updated():
    g = graph()
    live = live_of(g)
    net = live["network:pro"]
    live["network:pro"] = msgspec.structs.replace(
        net, config={**net.config, "security.acls.default.ingress.action": "allow"})
    plan = plan_changes(g, live)
    assert [(c.uid, [r.render() for r in c.reasons]) for c in plan.pending] == [
        ("network:pro", ["security.acls.default.ingress.action: 'allow' -> 'drop'"])]

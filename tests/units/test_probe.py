"""What ``verify --live --probe`` sends and expects, from the model alone (pure)."""

from __future__ import annotations

from anklume.units.probe import expected_open, parse_output, probe_script, probes, verdict
from tests.units.infra import make_infra
from tests.units.test_acl import DOC


def test_expectations_follow_the_model():
    infra = make_infra(DOC)
    assert expected_open(infra, ("admin", "adm"), ("pro", "pro-web"), "icmp", None)[0]
    assert not expected_open(infra, ("pro", "pro-web"), ("admin", "adm"), "icmp", None)[0]
    assert expected_open(infra, ("perso", "x"), ("pro", "pro-web"), "tcp", 8443) == (
        True, "network_policies[0] (perso reaches the pro web server)")
    assert not expected_open(infra, ("perso", "x"), ("pro", "pro-web"), "tcp", 8444)[0]
    assert not expected_open(infra, ("perso", "x"), ("pro", "pro-db"), "tcp", 8080)[0]
    # ports: all, bidirectional, from a machine: that machine only, both ways, every protocol
    assert expected_open(infra, ("perso", "perso-ws"), ("pro", "pro-web"), "icmp", None)[0]
    assert expected_open(infra, ("pro", "pro-web"), ("perso", "perso-ws"), "tcp", 22)[0]
    assert not expected_open(infra, ("perso", "other"), ("pro", "pro-web"), "icmp", None)[0]


def test_probes_cover_every_pair_and_each_flow_once():
    cases = probes(make_infra(DOC))
    icmp_pairs = {(c.src_domain, c.dst_domain) for c in cases if c.proto == "icmp"}
    assert icmp_pairs == {(a, b) for a in DOC["domains"] for b in DOC["domains"] if a != b}
    tcp = [(c.src, c.dst, c.port, c.expected) for c in cases if c.proto == "tcp"]
    # perso-ws reaches all of pro (policy 1, bidirectional): the port after 8443 and the reverse are open too
    assert tcp == [("perso-ws", "pro-web", 8080, True), ("perso-ws", "pro-web", 8444, True),
                   ("pro-web", "perso-ws", 8080, True)]
    assert len({(c.src, c.dst, c.proto, c.port) for c in cases}) == len(cases)


def test_a_domain_without_an_address_is_not_probed():
    doc = {**DOC, "domains": {**DOC["domains"], "empty": {"subnet_id": 9, "machines": {"m": {}}}}}
    cases = [c for c in probes(make_infra(doc)) if "empty" in (c.src_domain, c.dst_domain)]
    assert cases and all(c.src is None or c.dst_ip is None for c in cases)
    assert verdict(cases[0], None) == "not-probed"


def test_verdicts_and_output():
    c = probes(make_infra(DOC))[0]
    assert verdict(c, c.expected) in ("expected-open", "expected-closed")
    assert verdict(c, not c.expected) == "wrong"
    assert parse_output("OPEN\n") is True and parse_output("x\nCLOSED\n") is False
    assert parse_output("NOTOOL\n") is None and parse_output("") is None
    assert probe_script(c)[:2] == ["/bin/sh", "-c"]

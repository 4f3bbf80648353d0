"""Isolation between domains, proven with real packets on the private daemon.

Three domains (one ``trust_level: admin``) of busybox containers and one declared flow; each
container gets its address by hand (``ip``) and serves TCP on 8080 and 8081 (busybox ``httpd``);
the whole reachability matrix is measured from inside the containers (``ping``, ``nc``) and
printed.  Then the ACLs are changed by hand: ``verify --live`` reports it and ``build`` repairs it.
Packets go only between the test's own containers (and their gateways), inside the daemon's
network namespace.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.integration.build_env import BuildEnv
from tests.support.events import EventCounter

PORT, NEXT_PORT = 8080, 8081


@pytest.fixture(scope="module")
def iso(incus, tmp_path_factory):
    fp = incus.ensure_busybox_image()
    env = BuildEnv(incus, tmp_path_factory.mktemp("isolation"), fp)
    adm, pro, perso = env.dom(0), env.dom(1), env.dom(2)
    s = {adm: env.sid, pro: env.sid + 1, perso: env.sid + 2}
    ips = {f"{adm}-c": f"10.100.{s[adm]}.10", f"{pro}-web": f"10.100.{s[pro]}.10",
           f"{pro}-db": f"10.100.{s[pro]}.11", f"{perso}-ws": f"10.100.{s[perso]}.10"}
    doc = {
        "project_name": "t",
        "global": {"base_subnet": "10.100", "default_os_image": "local:busybox"},
        "domains": {
            adm: {"subnet_id": s[adm], "ephemeral": True, "trust_level": "admin",
                  "machines": {f"{adm}-c": {"ip": ips[f"{adm}-c"]}}},
            pro: {"subnet_id": s[pro], "ephemeral": True, "trust_level": "trusted",
                  "machines": {f"{pro}-web": {"ip": ips[f"{pro}-web"]}, f"{pro}-db": {"ip": ips[f"{pro}-db"]}}},
            perso: {"subnet_id": s[perso], "ephemeral": True, "trust_level": "untrusted",
                    "machines": {f"{perso}-ws": {"ip": ips[f"{perso}-ws"]}}},
        },
        "network_policies": [{"description": "perso reaches the pro web server", "from": perso,
                              "to": f"{pro}-web", "ports": [PORT], "protocol": "tcp"}],
    }
    infra, lock = env.infra_lock(doc)
    try:
        assert env.build(infra, lock) == 0, env.out.getvalue()
        domain_of = {m: d for d in (adm, pro, perso) for m in doc["domains"][d]["machines"]}
        for m, ip in ips.items():  # busybox: addresses by hand, then two small TCP servers
            gw = f"10.100.{s[domain_of[m]]}.254"
            env.sh(m, domain_of[m], f"ip -4 addr flush dev eth0; ip addr add {ip}/24 dev eth0; ip link set eth0 up; "
                                    f"ip route replace default via {gw}; mkdir -p /tmp/www; echo {m} > /tmp/www/index.html; "
                                    f"httpd -p {PORT} -h /tmp/www; httpd -p {NEXT_PORT} -h /tmp/www")
        yield env, infra, lock, ips, domain_of, s
    finally:
        env.cleanup()


def probe(env, src: str, project: str, dst_ip: str, what: str) -> bool:
    """One real packet exchange from ``src``: ``icmp`` (ping) or a TCP port (an HTTP request)."""
    if what == "icmp":
        script = f"ping -c 1 -W 2 {dst_ip} >/dev/null 2>&1 && echo OPEN || echo CLOSED"
    else:
        script = (f"printf 'GET / HTTP/1.0\\r\\n\\r\\n' | timeout 4 nc -w 2 {dst_ip} {what} 2>/dev/null "
                  f"| grep -q HTTP && echo OPEN || echo CLOSED")
    for _ in range(5):  # an exec right after a start may lose its output (see BuildEnv.cat)
        out = env.sh(src, project, script).strip()
        if out in ("OPEN", "CLOSED"):
            return out == "OPEN"
    raise AssertionError(f"probe from {src} to {dst_ip} {what}: no answer from the exec")


def measure(env, ips, domain_of, s, cases):
    """[(label, src, dst_ip, what, expected)] -> [(label, src, dst, what, expected, measured)], printed."""
    with ThreadPoolExecutor(max_workers=8) as pool:
        got = list(pool.map(lambda c: probe(env, c[1], domain_of[c[1]], c[2], c[3]), cases))
    rows = [(*c, g) for c, g in zip(cases, got)]
    print("\nreachability matrix (measured with real packets):")
    print(f"  {'case':<38} {'from':<12} {'to':<16} {'probe':<6} {'expected':<9} measured")
    for label, src, dst, what, want, have in rows:
        flag = "" if want == have else "   <-- WRONG"
        print(f"  {label:<38} {src:<12} {dst:<16} {what:<6} {'open' if want else 'closed':<9} "
              f"{'open' if have else 'closed'}{flag}")
    return rows


def matrix(ips, domain_of, s):
    adm, pro, perso = sorted(set(domain_of.values()), key=lambda d: s[d])
    a, web, db, ws = f"{adm}-c", f"{pro}-web", f"{pro}-db", f"{perso}-ws"
    gw = {d: f"10.100.{s[d]}.254" for d in s}
    P, N = str(PORT), str(NEXT_PORT)
    return [
        ("same domain (icmp)", db, ips[web], "icmp", True),
        ("same domain (tcp)", db, ips[web], N, True),
        ("own gateway: pro", web, gw[pro], "icmp", True),
        ("own gateway: perso", ws, gw[perso], "icmp", True),
        ("own gateway: admin", a, gw[adm], "icmp", True),
        ("declared flow perso -> pro-web:8080", ws, ips[web], P, True),
        ("port next to it (8081)", ws, ips[web], N, False),
        ("flow is to pro-web only (pro-db:8080)", ws, ips[db], P, False),
        ("perso -> pro (icmp)", ws, ips[web], "icmp", False),
        ("reverse: pro-web -> perso:8080", web, ips[ws], P, False),
        ("reverse: pro-web -> perso (icmp)", web, ips[ws], "icmp", False),
        ("pro -> admin (icmp)", web, ips[a], "icmp", False),
        ("pro -> admin (tcp)", db, ips[a], P, False),
        ("perso -> admin (icmp)", ws, ips[a], "icmp", False),
        ("perso -> admin (tcp)", ws, ips[a], N, False),
        ("admin -> pro (icmp)", a, ips[web], "icmp", True),
        ("admin -> pro (tcp 8081)", a, ips[db], N, True),
        ("admin -> perso (icmp)", a, ips[ws], "icmp", True),
        ("admin -> perso (tcp 8080)", a, ips[ws], P, True),
    ]


def test_reachability_matrix(iso):
    env, infra, lock, ips, domain_of, s = iso
    rows = measure(env, ips, domain_of, s, matrix(ips, domain_of, s))
    wrong = [r for r in rows if r[4] != r[5]]
    assert not wrong, wrong


def test_acl_tampering_is_reported_and_repaired(iso):
    env, infra, lock, ips, domain_of, s = iso
    adm, pro, perso = sorted(s, key=lambda d: s[d])
    ws, web = f"{perso}-ws", f"{pro}-web"
    rc, found = env.verify(infra, lock)
    assert rc == 0, found
    # 1. a rule added by hand to pro's ACL opens perso -> pro entirely
    env.incus.incus("network", "acl", "rule", "add", f"acl-{pro}", "ingress", "action=allow",
                    f"source=10.100.{s[perso]}.0/24")
    assert probe(env, ws, perso, ips[web], str(NEXT_PORT)) is True  # the hand edit is live
    rc, found = env.verify(infra, lock)
    assert rc == 1
    assert [(f["object"], f["field"], f["expected"]) for f in found] == [(f"acl:{pro}", "ingress rule", None)]
    assert f"source=10.100.{s[perso]}.0/24" in found[0]["actual"]
    # a plain build reads the ACLs' keys, mirrored on their projects (a no-op stays cheap): it does
    # not see a hand edit under a recorded key; `build --deep` reads the ACLs and repairs it
    assert env.plan(infra, lock)[f"acl:{pro}"]["action"] == "unchanged"
    assert env.plan(infra, lock, deep=True)[f"acl:{pro}"]["action"] == "update"
    with EventCounter(env.incus) as ev:
        assert env.build(infra, lock, deep=True) == 0, env.out.getvalue()
    writes = [(r.method, r.url) for r in ev.requests if r.method != "GET" and "/projects/default" not in r.url]
    # the ACL alone (and its key's mirror on its project, and the lease)
    assert [w for w in writes if "/projects/" not in w[1]] == [("PUT", f"/1.0/network-acls/acl-{pro}")], writes
    assert env.verify(infra, lock)[0] == 0
    assert probe(env, ws, perso, ips[web], str(NEXT_PORT)) is False
    assert probe(env, ws, perso, ips[web], str(PORT)) is True

    # 2. a declared rule removed by hand: the flow closes; reported as missing, repaired
    env.incus.incus("network", "acl", "rule", "remove", f"acl-{pro}", "ingress", f"destination={ips[web]}/32")
    assert probe(env, ws, perso, ips[web], str(PORT)) is False
    rc, found = env.verify(infra, lock)
    assert rc == 1 and [(f["object"], f["field"], f["actual"]) for f in found] == [(f"acl:{pro}", "ingress rule", None)]
    assert env.build(infra, lock, deep=True) == 0, env.out.getvalue()
    assert env.verify(infra, lock)[0] == 0
    assert probe(env, ws, perso, ips[web], str(PORT)) is True

    # 3. the bridge detached from its ACL by hand (everything would enter perso): reported, repaired
    env.incus.incus("network", "unset", f"net-{perso}", "security.acls")
    assert probe(env, web, pro, ips[ws], str(PORT)) is True
    rc, found = env.verify(infra, lock)
    assert rc == 1 and (f"network:{perso}", "config.security.acls", f"acl-{perso}", None) in [
        (f["object"], f["field"], f["expected"], f["actual"]) for f in found]
    assert env.plan(infra, lock, deep=True)[f"network:{perso}"]["action"] == "update"
    assert env.build(infra, lock, deep=True) == 0, env.out.getvalue()
    assert env.verify(infra, lock)[0] == 0
    assert probe(env, web, pro, ips[ws], str(PORT)) is False

    # 4. the bridge's default action changed by hand: reported, repaired by build --deep
    env.incus.incus("network", "set", f"net-{perso}", "security.acls.default.ingress.action=allow")
    assert probe(env, web, pro, ips[ws], str(PORT)) is True
    rc, found = env.verify(infra, lock)
    assert rc == 1 and [(f["object"], f["field"], f["expected"], f["actual"]) for f in found] == [
        (f"network:{perso}", "config.security.acls.default.ingress.action", "drop", "allow")]
    assert env.build(infra, lock, deep=True) == 0, env.out.getvalue()
    assert env.verify(infra, lock)[0] == 0
    assert probe(env, web, pro, ips[ws], str(PORT)) is False
    # and a no-op build stays a no-op: no write at all
    with EventCounter(env.incus) as ev:
        assert env.build(infra, lock) == 0
    assert ev.writes == 0 and ev.api_writes == 0, ev.requests


def probe_verdicts(env, infra, lock):
    import json

    from anklume.actions.verify import verify_live

    rc = verify_live(env.project, infra, lock, as_json=True, endpoint=env.incus.socket, console=env.console(),
                     probe=True)
    doc = json.loads(env.out.getvalue())
    return rc, {(p["src"], p["dst"], p["proto"], p["port"]): p["verdict"] for p in doc["probes"]}


def test_verify_probe_measures_the_matrix_itself(iso):
    """``verify --live --probe``: probes between the infra's own instances, through the Incus API."""
    env, infra, lock, ips, domain_of, s = iso
    adm, pro, perso = sorted(s, key=lambda d: s[d])
    a, web, ws = f"{adm}-c", f"{pro}-db", f"{perso}-ws"
    rc, got = probe_verdicts(env, infra, lock)
    print("\nverify --live --probe:", *(f"  {k}: {v}" for k, v in got.items()), sep="\n")
    assert rc == 0 and "wrong" not in got.values() and "not-probed" not in got.values()
    assert got[(a, f"{pro}-web", "icmp", None)] == "expected-open"
    assert got[(ws, f"{pro}-web", "icmp", None)] == "expected-closed"
    assert got[(ws, f"{pro}-web", "tcp", PORT)] == "expected-open"
    assert got[(ws, f"{pro}-web", "tcp", NEXT_PORT)] == "expected-closed"
    assert got[(f"{pro}-web", ws, "tcp", PORT)] == "expected-closed"
    assert len(got) == 6 + 3
    # a hand edit that opens perso -> pro: the probe says so, exit 1
    env.incus.incus("network", "acl", "rule", "add", f"acl-{pro}", "ingress", "action=allow",
                    f"source=10.100.{s[perso]}.0/24")
    try:
        rc, got = probe_verdicts(env, infra, lock)
        assert rc == 1
        assert got[(ws, f"{pro}-web", "icmp", None)] == "wrong"
        assert got[(ws, f"{pro}-web", "tcp", NEXT_PORT)] == "wrong"
    finally:
        assert env.build(infra, lock, deep=True) == 0, env.out.getvalue()
    assert probe_verdicts(env, infra, lock)[0] == 0

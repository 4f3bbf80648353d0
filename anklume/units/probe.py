"""``verify --live --probe``: the reachability the model promises, as probes to send (pure).

What each probe should find is computed from ``infra.yml`` alone (same domain, ``trust_level:
admin``, ``network_policies``), not from the ACLs anklume writes: the probes check the ACLs
against the model.  Probes go only from an instance of the infra to the address of another
instance of the infra.

- every ordered pair of domains: ICMP from the first machine with an ip of one to the first
  machine with an ip of the other;
- every declared TCP flow: its first port, the port after its last one, and the reverse
  direction; a flow with ``ports: all``: ICMP between its ends.  UDP is not probed (nothing
  tells a dropped datagram from an unanswered one).

A probe's script prints ``OPEN`` (an answer: a ping reply, a TCP connection accepted or
refused, which means the packet reached the instance), ``CLOSED`` (no answer within the
timeout) or ``NOTOOL`` (neither python3, bash, nc nor ping to probe with).
"""

from __future__ import annotations

import msgspec

from anklume.model.schema import Infra

TIMEOUT = 2  # seconds a probe waits for an answer


class Probe(msgspec.Struct, frozen=True):
    src_domain: str
    src: str | None  # the machine probed from (None: the domain has no machine with an ip)
    dst_domain: str
    dst: str | None
    dst_ip: str | None
    proto: str  # "icmp" or "tcp"
    port: int | None
    expected: bool
    why: str

    def label(self) -> str:
        what = "icmp" if self.proto == "icmp" else f"tcp/{self.port}"
        return f"{self.src_domain} -> {self.dst_domain} {what} ({self.src or '-'} -> {self.dst or '-'})"


def expected_open(infra: Infra, src: tuple[str, str], dst: tuple[str, str], proto: str,
                  port: int | None) -> tuple[bool, str]:
    """Whether the model lets ``src`` (domain, machine) reach ``dst`` with ``proto``/``port``."""
    (sd, sm), (dd, dm) = src, dst
    if sd == dd:
        return True, "same domain"
    if infra.domains[sd].trust_level == "admin":
        return True, f"{sd} has trust_level admin"
    for i, p in enumerate(infra.network_policies):
        ends = [(p.from_, p.to)] + ([(p.to, p.from_)] if p.bidirectional else [])
        for f, t in ends:
            if f in (sd, sm) and t in (dd, dm) and (p.ports == "all" or (proto == p.protocol and port in p.ports)):
                return True, f"network_policies[{i}]" + (f" ({p.description})" if p.description else "")
    return False, "no policy opens it"


def _first_with_ip(infra: Infra, domain: str) -> str | None:
    return next((m for m, machine in (infra.domains[domain].machines or {}).items() if machine.ip), None)


def _end(infra: Infra, name: str) -> tuple[str, str | None]:
    """(domain, machine) of a policy end: the machine itself, or its domain's first with an ip."""
    if name in infra.domains:
        return name, _first_with_ip(infra, name)
    for dname, domain in infra.domains.items():
        if name in (domain.machines or {}):
            return dname, name
    raise KeyError(name)  # pragma: no cover - validated


def _ip(infra: Infra, domain: str, machine: str | None) -> str | None:
    return None if machine is None else (infra.domains[domain].machines or {})[machine].ip


def probes(infra: Infra) -> list[Probe]:
    """Every probe, each once, in a stable order."""
    out: dict[tuple, Probe] = {}

    def add(sd: str, sm: str | None, dd: str, dm: str | None, proto: str, port: int | None) -> None:
        key = (sd, sm, dd, dm, proto, port)
        if key in out:
            return
        expected, why = expected_open(infra, (sd, sm or ""), (dd, dm or ""), proto, port)
        out[key] = Probe(sd, sm, dd, dm, _ip(infra, dd, dm), proto, port, expected, why)

    for a in infra.domains:
        for b in infra.domains:
            if a != b:
                add(a, _first_with_ip(infra, a), b, _first_with_ip(infra, b), "icmp", None)
    for p in infra.network_policies:
        (fd, fm), (td, tm) = _end(infra, p.from_), _end(infra, p.to)
        if p.ports == "all":
            add(fd, fm, td, tm, "icmp", None)
        elif p.protocol == "tcp":
            first, after = p.ports[0], max(p.ports) + 1
            add(fd, fm, td, tm, "tcp", first)
            if after <= 65535 and after not in p.ports:
                add(fd, fm, td, tm, "tcp", after)
            add(td, tm, fd, fm, "tcp", first)
    return list(out.values())


def probe_script(probe: Probe) -> list[str]:
    """The command run in the source instance (``sh -c``), printing OPEN, CLOSED or NOTOOL."""
    ip, t = probe.dst_ip, TIMEOUT
    if probe.proto == "icmp":
        script = (f"command -v ping >/dev/null 2>&1 || {{ echo NOTOOL; exit 0; }}; "
                  f"out=$(ping -c 1 -W {t} {ip} 2>&1); rc=$?; "
                  f"if [ $rc = 0 ]; then echo OPEN; "
                  f"elif echo \"$out\" | grep -qiE 'permission|not permitted|socket'; then echo NOTOOL; "
                  f"else echo CLOSED; fi")
        return ["/bin/sh", "-c", script]
    port = probe.port
    py = ("import socket,sys\ns=socket.socket();s.settimeout(float(sys.argv[3]))\n"
          "try:\n s.connect((sys.argv[1],int(sys.argv[2])));print('OPEN')\n"
          "except ConnectionRefusedError:\n print('OPEN')\nexcept OSError:\n print('CLOSED')\n")
    script = (f"if command -v python3 >/dev/null 2>&1; then python3 -c \"$0\" {ip} {port} {t}; "
              f"elif command -v bash >/dev/null 2>&1 && command -v timeout >/dev/null 2>&1; then "
              f"out=$(timeout {t + 1} bash -c 'exec 3<>/dev/tcp/{ip}/{port}' 2>&1); rc=$?; "
              f"if [ $rc = 0 ] || echo \"$out\" | grep -qi refused; then echo OPEN; else echo CLOSED; fi; "
              f"elif command -v nc >/dev/null 2>&1; then "
              f"T=; command -v timeout >/dev/null 2>&1 && T='timeout {t + 2}'; "
              f"out=$($T nc -w {t} {ip} {port} </dev/null 2>&1); rc=$?; "
              f"if [ $rc = 0 ] || echo \"$out\" | grep -qi refused; then echo OPEN; else echo CLOSED; fi; "
              f"else echo NOTOOL; fi")
    return ["/bin/sh", "-c", script, py]


def verdict(probe: Probe, measured: bool | None) -> str:
    """``expected-open``, ``expected-closed``, ``wrong`` or ``not-probed``."""
    if measured is None:
        return "not-probed"
    if measured != probe.expected:
        return "wrong"
    return "expected-open" if measured else "expected-closed"


def parse_output(stdout: str) -> bool | None:
    word = stdout.strip().splitlines()[-1].strip() if stdout.strip() else ""
    return {"OPEN": True, "CLOSED": False}.get(word)

"""``anklume verify``: the lock is fresh, and every generated file's managed section is
byte-for-byte what the lock renders; with ``--live``, the daemon and the artefacts placed in
instances are what the lock says (findings: :mod:`anklume.units.findings`), and nothing is left
half-placed in them (:func:`anklume.provision.readback.leftover_findings`).

It also reports a managed key set again outside its section.

Exit codes: 0 clean, 1 differences or findings (or an error).
"""

from __future__ import annotations

import difflib
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import msgspec

from rich.console import Console

from anklume.actions.build import endpoint_of
from anklume.actions.report import findings_json, print_findings
from anklume.backends.incus import IncusBackend
from anklume.engine import artefact_findings, observe
from anklume.errors import AnklumeError
from anklume.lock.schema import Lock
from anklume.model.schema import Infra
from anklume.project import Project
from anklume.provision.gpucheck import gpu_container_findings
from anklume.provision.inputs import project_units
from anklume.provision.readback import leftover_findings
from anklume.resolve.gpus import parse_resources
from anklume.units.findings import live_findings
from anklume.units.probe import Probe, parse_output, probe_script, probes, verdict
from anklume.render.managed import UnmergeableFile, extract_managed, managed_block, managed_keys_outside
from anklume.render.tree import render_tree
from anklume.render.write import read_tree_file


def do_verify(infra_file: Path, *, live: bool = False, as_json: bool = False, endpoint: str | None = None,
              deep: bool = False, probe: bool = False) -> int:
    out = Console(highlight=False, soft_wrap=True, markup=False, emoji=False, stderr=as_json)
    project = Project(infra_file)
    infra, lock = project.load()
    out.print(f"lock: {project.lock_file.name} is fresh")
    differences = 0
    rendered = render_tree(infra, lock)
    for rel, body in rendered.items():
        expected = managed_block(body)
        text = read_tree_file(project.root / rel, rel)  # never through a link, like build
        try:
            actual = None if text is None else extract_managed(text)
            stray = [] if actual is None else managed_keys_outside(text, body)
        except UnmergeableFile as exc:  # markers that do not make one section
            differences += 1
            out.print(f"{rel}: {exc.message}")
            continue
        for key, line in stray:  # YAML keeps the last value: this one overrides the managed one
            out.print(f"{rel}:{line}: the managed key '{key}' is also set outside the managed section "
                      "(its value there overrides the managed one); delete it, or set it in infra.yml")
        if actual == expected and not stray:
            continue
        differences += 1
        if actual == expected:
            continue
        if actual is None:
            out.print(f"{rel}: {'missing' if text is None else 'no managed section'}; run `anklume build`")
            continue
        # The section ends without a newline: add one so the diff's last line ends too.
        diff = difflib.unified_diff((actual + "\n").splitlines(keepends=True),
                                    (expected + "\n").splitlines(keepends=True),
                                    f"{rel} (on disk)", f"{rel} (from the lock)")
        out.out("".join(diff), end="")
    if differences:
        out.print(f"verify: {differences} of {len(rendered)} generated file(s) differ from the lock")
    else:
        out.print(f"tree: {len(rendered)} generated file(s) match the lock")
    code = 1 if differences else 0
    if live or probe:  # --probe implies --live
        code = max(code, verify_live(project, infra, lock, as_json=as_json, deep=deep,
                                     endpoint=endpoint_of(infra, endpoint), probe=probe))
    return code


def verify_live(project: Project, infra: Infra, lock: Lock, *, as_json: bool = False,
                endpoint: str | None = None, console: Console | None = None, deep: bool = False,
                probe: bool = False) -> int:
    """Compare the live daemon with the lock, without writing: 0 clean, 1 findings."""
    out = console or Console(highlight=False)
    graph = project_units(project, infra, lock)
    backend = IncusBackend(endpoint)
    live = observe(graph, backend, exact_networks=True)
    cards = parse_resources(backend.resources()) if any(p.member is None for p in lock.gpus.values()) else []
    member_cards = {m: member_gpus(backend, m) for m in sorted({p.member for p in lock.gpus.values() if p.member})}
    findings = live_findings(graph, live, lock, cards, owner=infra.project_name, member_cards=member_cards,
                             endpoint=backend.endpoint) + artefact_findings(
        graph, live, backend, lock, deep=deep) + leftover_findings(backend, infra, graph, live) + \
        gpu_container_findings(backend, graph, live, lock)
    measured = run_probes(backend, infra) if probe else None
    wrong = sum(1 for _, v, _ in measured or [] if v == "wrong")
    if as_json:
        doc = findings_json(findings)
        if measured is not None:
            doc["probes"] = [{**msgspec.to_builtins(p), "verdict": v, "detail": d} for p, v, d in measured]
        out.print_json(json.dumps(doc))
    else:
        if findings:
            print_findings(findings, out)
            out.print(f"[red]live state differs from the lock: {len(findings)} finding(s)[/]")
        else:
            out.print(f"live state matches the lock ({len(graph)} units"
                      + (f", {len(lock.gpus)} GPU slot(s)" if lock.gpus else "") + ")")
        if measured is not None:
            print_probes(measured, out)
    return 1 if findings or wrong else 0


def member_gpus(backend: IncusBackend, member: str) -> list | None:
    """The GPUs of cluster member ``member`` (``/1.0/resources?target=``); None when it does not answer."""
    try:
        return parse_resources(backend.resources(member))
    except AnklumeError:
        return None


#: Probes sent at once, and the most seconds one may take (the exec included).
PROBE_JOBS, PROBE_TIMEOUT = 16, 15


def run_probes(backend: IncusBackend, infra: Infra) -> list[tuple[Probe, str, str]]:
    """Each probe of :func:`anklume.units.probe.probes`, run from its source instance through the
    Incus API (in parallel, each bounded): (probe, verdict, detail).  A probe that cannot run (no
    machine with an ip, no tool, an exec that fails) is ``not-probed``, never a pass."""
    cases = probes(infra)

    def one(p: Probe) -> tuple[Probe, str, str]:
        if p.src is None or p.dst_ip is None:
            return p, "not-probed", "no machine with an ip on " + ("this side" if p.src is None else "the other side")
        try:
            res = backend.instance_io(p.src_domain, p.src).exec(probe_script(p), check=False, timeout=PROBE_TIMEOUT)
        except AnklumeError as exc:
            return p, "not-probed", f"exec failed: {exc.message}"
        text = res.stdout.decode(errors="replace")
        measured = parse_output(text)
        if measured is None:
            return p, "not-probed", "no probe tool in the instance (python3, bash, nc, ping)" \
                if "NOTOOL" in text else f"no answer from the probe (exit {res.rc})"
        return p, verdict(p, measured), f"{'open' if measured else 'closed'}; expected {'open' if p.expected else 'closed'}: {p.why}"

    with ThreadPoolExecutor(max_workers=PROBE_JOBS) as pool:
        return list(pool.map(one, cases))


def print_probes(measured: list[tuple[Probe, str, str]], out: Console) -> None:
    out.print("reachability (probes sent between the infra's own instances):")
    for p, v, detail in measured:
        mark = "[red]WRONG[/]" if v == "wrong" else v
        out.print(f"  {mark:<16} {p.label()}: {detail}")
    counts = {k: sum(1 for _, v, _ in measured if v == k) for k in ("expected-open", "expected-closed", "wrong",
                                                                    "not-probed")}
    out.print(f"probes: {counts['expected-open']} expected-open, {counts['expected-closed']} expected-closed, "
              f"{counts['wrong']} wrong, {counts['not-probed']} not probed (not checked)")

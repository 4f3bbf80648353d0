"""No-op build benchmark: D domains x M machines, fully built; then the median time of a build
that has nothing to do (and its API requests), against the original's way of looking (one
``incus`` CLI call per resource per run), measured in the same run on the same daemon.

    .venv/bin/python bench/build_noop.py [--domains 20] [--machines 5] [--runs 7]
    .venv/bin/python bench/build_noop.py --cluster 3 [--domains 4] [--machines 3]

``--cluster N``: the same infra on a single private incusd and on a real N-member cluster
(``tests.support.cluster.PrivateCluster``), its machines spread over the members, both started in
the same run: the no-op build's median time and API requests on each, and the requests each
member served (the daemon's own log of API requests, one ``incus monitor`` per member).

Needs root (private daemons in network namespaces, as the integration tests).
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from rich.console import Console  # noqa: E402

from anklume.actions.build import do_apply  # noqa: E402
from anklume.store import SpecStore  # noqa: E402
from anklume.project import Project  # noqa: E402
from tests.support.events import EventCounter  # noqa: E402
from tests.support.incusd import PrivateIncus  # noqa: E402
from tests.units.infra import make_infra, make_lock  # noqa: E402


def infra_doc(domains: int, machines: int) -> dict:
    doc: dict = {"project_name": "bench", "global": {"base_subnet": "10.100", "default_os_image": "local:busybox"},
                 "domains": {}}
    for d in range(domains):
        name = f"bd{d}"
        doc["domains"][name] = {"subnet_id": 150 + d, "ephemeral": True, "machines": {
            f"{name}-m{m}": {"ip": f"10.100.{150 + d}.{10 + m}", "config": {"limits.cpu": 1}} for m in range(machines)}}
    # a policy per domain: each reaches a port of the next one's first machine (an ACL rule each)
    doc["network_policies"] = [{"from": f"bd{d}", "to": f"bd{(d + 1) % domains}-m0", "ports": [8080]}
                               for d in range(domains) if domains > 1]
    return doc


class Bench:
    def __init__(self, incus, tmp: Path, doc: dict, *, members: list[str] = (), socket: str | None = None):
        self.incus = incus
        self.doc = doc
        self.socket = socket or incus.socket
        tmp.mkdir(parents=True, exist_ok=True)
        self.project = Project(tmp / "infra.yml")
        self.project.infra_file.write_text("# bench\n")
        self.store = SpecStore(tmp / "specs")
        self.fp = incus.ensure_busybox_image()
        self.infra = make_infra(doc)
        self.lock = make_lock(self.infra, default_fp=self.fp)
        if members:
            self.lock = spread(self.lock, self.infra, list(members))

    def build(self, *, jobs: int = 4, infra=None) -> tuple[int, str]:
        buf = io.StringIO()
        rc = do_apply(self.project, infra or self.infra, self.lock, plan_only=False, as_json=False, jobs=jobs,
                      endpoint=self.socket, specs=self.store, console=Console(file=buf, width=200))
        return rc, buf.getvalue()

    def cli_noop(self, runs: int) -> tuple[float, list[float]]:
        """The same no-op through the command line, in a project directory of its own."""
        import os
        import subprocess

        import yaml

        from anklume.lock.codec import encode_lock

        root = self.project.root / "cli"
        root.mkdir()
        (root / "infra.yml").write_text(yaml.safe_dump(self.doc, sort_keys=False))
        (root / "anklume.lock").write_bytes(encode_lock(self.lock))
        env = {**os.environ, "ANKLUME_INCUS": self.incus.socket, "ANKLUME_CACHE_DIR": str(root / "cache"),
               "XDG_DATA_HOME": str(root / "data")}
        argv = [str(REPO / ".venv" / "bin" / "anklume"), "build", "-f", str(root / "infra.yml")]

        def once() -> None:
            done = subprocess.run(argv, env=env, capture_output=True, text=True)
            assert done.returncode == 0 and "nothing to do" in done.stdout, done.stdout + done.stderr

        once()  # writes the tree and the infra memo
        return timed(once, runs)

    def v1_reads(self) -> int:
        """The original's way of finding out what is there: one CLI call per resource, every run
        (``incus project show``, ``network show``, ``profile show``, ``list <name> --format json``)."""
        calls = 0
        for dname, dom in self.doc["domains"].items():
            self.incus.incus("project", "show", dname)
            self.incus.incus("network", "show", f"net-{dname}")
            self.incus.incus("profile", "show", "default", "--project", dname)
            calls += 3
            for mname in dom["machines"]:
                self.incus.incus("list", mname, "--project", dname, "--format", "json")
                calls += 1
        return calls


def spread(lock, infra, members: list[str]):
    """``lock`` with a cluster section: the machines dealt over ``members`` in turn."""
    import msgspec

    from anklume.lock.schema import Cluster, ClusterMember, Placement, PlacementLocked, PlacementOriginal
    from anklume.model.needs import iter_machines

    placement = {m: Placement(original=PlacementOriginal(),
                              locked=PlacementLocked(member=members[i % len(members)], reason="bench: in turn"))
                 for i, (_d, _dom, m, _mach) in enumerate(iter_machines(infra))}
    cluster = Cluster(members={m: ClusterMember(architecture="x86_64") for m in members}, placement=placement)
    return msgspec.structs.replace(lock, cluster=cluster)


def noop_figures(bench: Bench, runs: int, watch: dict) -> tuple[float, int, dict[str, int]]:
    """Full build, then (median no-op seconds, requests anklume sent, requests each member served)."""
    rc, out = bench.build()
    assert rc == 0, out
    served = {}
    counters = {name: EventCounter(target) for name, target in watch.items()}
    for c in counters.values():
        c.start()
    try:
        rc, out = bench.build()
        for c in counters.values():
            c.flush()
    finally:
        for c in counters.values():
            c.stop()
    assert rc == 0 and "nothing to do" in out, out
    for name, c in counters.items():
        assert c.writes == 0 and c.api_writes == 0, (name, c.actions())
        served[name] = len(c.requests)
    sent = served[next(iter(watch))]  # anklume talks to the first one only
    median, _ = timed(lambda: bench.build(), runs)
    return median, sent, served


def cluster_main(args) -> None:
    from types import SimpleNamespace

    from tests.support.cluster import PrivateCluster

    doc = infra_doc(args.domains, args.machines)
    machines = args.domains * args.machines
    with tempfile.TemporaryDirectory() as tmp, PrivateIncus() as incus, PrivateCluster(members=args.cluster) as cl:
        single = Bench(incus, Path(tmp) / "single", doc)
        t_single, sent_single, _ = noop_figures(single, args.runs, {"daemon": incus})
        names = [m.name for m in cl.members]
        clustered = Bench(cl, Path(tmp) / "cluster", doc, members=names, socket=cl.socket(names[0]))
        watch = {n: SimpleNamespace(env=cl.env(n), socket=cl.socket(n)) for n in names}
        t_cluster, sent_cluster, served = noop_figures(clustered, args.runs, watch)
        print(f"no-op build, {args.domains} domains x {args.machines} machines ({machines} instances), median of "
              f"{args.runs}:")
        print(f"  single daemon: {t_single * 1000:.0f} ms, {sent_single} API requests")
        print(f"  {args.cluster}-member cluster (machines dealt over the members): {t_cluster * 1000:.0f} ms, "
              f"{sent_cluster} API requests sent to {names[0]}; requests each member served: "
              + ", ".join(f"{n} {c}" for n, c in served.items()))
        print(f"  ratio cluster / single: {t_cluster / t_single:.2f} in time, "
              f"{sent_cluster / max(sent_single, 1):.2f} in requests sent; 0 writes on every member")


def timed(fn, runs: int) -> tuple[float, list[float]]:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), times


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--domains", type=int, default=20)
    ap.add_argument("--machines", type=int, default=5)
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--jobs", type=int, default=4)
    ap.add_argument("--cluster", type=int, default=0, help="also build on a real N-member cluster and compare")
    args = ap.parse_args()
    if args.cluster:
        return cluster_main(args)
    with tempfile.TemporaryDirectory() as tmp, PrivateIncus() as incus:
        bench = Bench(incus, Path(tmp), infra_doc(args.domains, args.machines))
        units = args.domains * 4 + args.domains * args.machines
        t0 = time.perf_counter()
        rc, out = bench.build(jobs=args.jobs)
        full = time.perf_counter() - t0
        assert rc == 0, out
        print(f"full build: {units} units ({args.domains} domains x {args.machines} machines) in {full:.1f} s "
              f"(jobs={args.jobs})")

        with EventCounter(incus) as ev:
            rc, out = bench.build()
        assert rc == 0 and "nothing to do" in out, out
        reads = len(ev.requests)
        assert ev.writes == 0 and ev.api_writes == 0, ev.actions()

        noop, noop_all = timed(lambda: bench.build(), args.runs)
        with EventCounter(incus) as ev1:
            calls = bench.v1_reads()
        v1, v1_all = timed(bench.v1_reads, max(3, args.runs // 2))
        print(f"anklume no-op build: median {noop * 1000:.0f} ms over {args.runs} runs "
              f"(min {min(noop_all) * 1000:.0f}, max {max(noop_all) * 1000:.0f}); "
              f"{reads} API requests, 0 writes")
        print(f"original's way (one incus CLI call per resource): {calls} CLI calls, {len(ev1.requests)} API requests, "
              f"median {v1:.2f} s")
        print(f"ratio: {v1 / noop:.0f}x less time, {len(ev1.requests) / max(reads, 1):.0f}x fewer API requests")
        cli, cli_all = bench.cli_noop(args.runs)
        print(f"`anklume build` as a user runs it (a new process: start-up, infra.yml, lock, tree and Incus): "
              f"median {cli * 1000:.0f} ms (min {min(cli_all) * 1000:.0f}, max {max(cli_all) * 1000:.0f})")
        from anklume.backends.incus import IncusBackend

        backend = IncusBackend(incus.socket)
        parts = []
        for path, params in [("projects", {"recursion": "1"}), ("networks", {}),
                             ("profiles", {"recursion": "1", "all-projects": "true"}),
                             ("instances", {"recursion": "1", "all-projects": "true"}),
                             ("storage-pools/default/volumes", {"recursion": "1", "all-projects": "true"}),
                             ("network-acls", {"recursion": "1"}),
                             ("networks", {"recursion": "1"})]:
            t0 = time.perf_counter()
            backend.client.get(path, **params)
            label = path.split("/")[0] + ("?recursion=1" if params.get("recursion") else "")
            parts.append(f"{label} {(time.perf_counter() - t0) * 1000:.0f} ms")
        print("the listings (the plan reads all but the last; bridge keys come from their projects): "
              + ", ".join(parts))


if __name__ == "__main__":
    main()

"""Incremental build benchmark: D x M fully built, then one machine's config changes; the build
applies exactly one unit.  Reports its time and writes, against the original's way (it re-runs
every task: one CLI read per resource plus an ``incus config set`` per machine config key, always).

    .venv/bin/python bench/build_incremental.py [--domains 20] [--machines 5] [--runs 5]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import tempfile
import time
from pathlib import Path

from build_noop import Bench, infra_doc  # (sets sys.path for the repository)

from tests.support.events import EventCounter
from tests.support.incusd import PrivateIncus
from tests.units.infra import make_infra


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--domains", type=int, default=20)
    ap.add_argument("--machines", type=int, default=5)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp, PrivateIncus() as incus:
        doc = infra_doc(args.domains, args.machines)
        bench = Bench(incus, Path(tmp), doc)
        rc, out = bench.build()
        assert rc == 0, out
        times, writes, applied = [], [], []
        for run in range(args.runs):
            changed = copy.deepcopy(doc)
            dom = next(iter(changed["domains"].values()))
            machine = next(iter(dom["machines"].values()))
            machine["config"]["limits.cpu"] = 2 + run % 2
            with EventCounter(incus) as ev:
                t0 = time.perf_counter()
                rc, out = bench.build(infra=make_infra(changed))
                times.append(time.perf_counter() - t0)
            assert rc == 0, out
            writes.append(ev.api_writes)
            applied.append(out.count("done "))
        median = statistics.median(times) * 1000
        print(f"anklume: one machine changed among {args.domains * args.machines}: median {median:.0f} ms, "
              f"{statistics.median(writes):.0f} API writes (2 of them the build lease), units applied {applied}")

        def v1_apply() -> int:
            n = bench.v1_reads()
            for dname, dom in doc["domains"].items():
                for mname, m in dom["machines"].items():
                    for k, v in m["config"].items():
                        incus.incus("config", "set", mname, f"{k}={v}", "--project", dname)
                        n += 1
            return n

        with EventCounter(incus) as ev:
            t0 = time.perf_counter()
            calls = v1_apply()
            v1 = time.perf_counter() - t0
        print(f"original's way (re-run every task): {calls} CLI calls, {ev.api_writes} API writes, {v1:.2f} s")
        print(f"ratio: {v1 / statistics.median(times):.0f}x less time")


if __name__ == "__main__":
    main()

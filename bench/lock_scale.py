"""Scale benchmark of the lock and the tree: 250 domains x 40 machines (10,000 machines).

Prints the median of several runs (each a fresh `anklume` process, as a user
runs it) of:
  - `anklume lock --check`          (target < 0.5 s)
  - `anklume lock` with a warm cache (target < 2 s)
  - `anklume build --no-apply` on an unchanged tree (target < 2 s, writes no file)
  - `anklume lock` after one machine's line changed, every pin in the lock (target < 1.5 s):
    the parse memo misses, so infra.yml is parsed and validated again
  - the first `anklume build --no-apply`, writing every file of an empty tree (target: at most
    half the baseline's time)
  - peak memory of each (target < 300 MB)
and, measured in the same run, a straightforward baseline: parse infra.yml with
yaml.safe_load, render every file with yaml.dump and write it (into a new folder each run, as
the first build does; its runs alternate with the first builds').

    .venv/bin/python bench/lock_scale.py [--domains 250] [--machines 40] [--runs 5] [--tmp DIR]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.synthetic import synthetic_infra  # noqa: E402
from tests.support.mirror import RecordedMirror  # noqa: E402

BASELINE = r'''
import sys, yaml
from pathlib import Path
class D(yaml.SafeDumper):
    def increase_indent(self, flow=False, indentless=False):
        return super().increase_indent(flow, False)
def dump(d): return yaml.dump(d, Dumper=D, sort_keys=False, default_flow_style=False, allow_unicode=True)
root = Path(sys.argv[1]); infra = yaml.safe_load((root / "infra.yml").read_text()); g = infra["global"]
def write(rel, data):
    p = root / rel; p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text("---\n# === MANAGED BY infra.yml ===\n" + dump(data) + "# === END MANAGED ===\n")
write("group_vars/all.yml", {"project_name": infra["project_name"], "base_subnet": g["base_subnet"]})
for d, dom in infra["domains"].items():
    ms = dom.get("machines") or {}
    write(f"inventory/{d}.yml", {"all": {"children": {d: {"hosts": {m: {"ansible_host": v.get("ip")} for m, v in ms.items()}}}}})
    write(f"group_vars/{d}.yml", {"domain_name": d, "domain_description": dom.get("description", ""),
          "incus_network": {"name": f"net-{d}", "subnet": f"{g['base_subnet']}.{dom['subnet_id']}.0/24"}})
    for m, v in ms.items():
        write(f"host_vars/{m}.yml", {"instance_name": m, "instance_domain": d, "instance_ip": v.get("ip"),
              "instance_config": v.get("config"), "instance_roles": v.get("roles")})
'''


def timed(argv: list[str], env: dict[str, str]) -> tuple[float, int, int]:
    """(seconds, exit code, peak RSS in MB) of one process."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode not in (0,):
        sys.exit(f"{argv} failed: {proc.stderr.read().decode()}")
    return elapsed, proc.returncode, usage.ru_maxrss // 1024


def tree_mtimes(root: Path) -> dict[str, int]:
    return {str(p): p.stat().st_mtime_ns for d in ("inventory", "group_vars", "host_vars")
            for p in (root / d).glob("*.yml")}


def edit_one_machine(infra: Path, run: int) -> None:
    """Change one machine's line (its description), differently each run: the memo misses."""
    text = infra.read_text()
    start = text.index('"Machine 3 of domain 7')
    end = text.index('"', start + 1) + 1
    infra.write_text(text[:start] + f'"Machine 3 of domain 7, edit {run}"' + text[end:])


def spread(runs: list[tuple[float, int, int]]) -> str:
    return f"{min(r[0] for r in runs):.2f} to {max(r[0] for r in runs):.2f} s"


def row(label: str, secs: float, mb: int, target: str, ok: bool, extra: str = "") -> None:
    print(f"  {label:<44} {secs:6.2f} s  {mb:4d} MB   target {target}: {'ok' if ok else 'MISSED'}{extra}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--domains", type=int, default=250)
    parser.add_argument("--machines", type=int, default=40)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--tmp", type=Path, default=None,
                        help="where the scratch folder goes (default: the system's temp folder); see bench/README.md")
    args = parser.parse_args()
    anklume = [str(REPO / ".venv" / "bin" / "anklume")]
    if args.tmp is not None:
        args.tmp.mkdir(parents=True, exist_ok=True)
    with RecordedMirror() as mirror, tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        root = Path(tmp) / "proj"
        root.mkdir()
        (root / "infra.yml").write_text(synthetic_infra(args.domains, args.machines))
        env = {**os.environ, **mirror.env(), "ANKLUME_CACHE_DIR": f"{tmp}/cache"}
        f = ["-f", str(root / "infra.yml")]
        first_lock = timed(anklume + ["lock", *f], env)
        # First builds and baseline runs alternate, each into a new, empty folder, and nothing is
        # deleted before the end: on ext4 without a journal (this bench's machine), an inode
        # freed in the last 12 hours is skipped, at a cost, by every allocation that meets it
        # (fs/ext4/ialloc.c: recently_deleted), so deleting the last run's 10,501 files makes
        # the next run's creations quadratic (perf showed it): the bench would measure itself.
        first_builds, base = [], []
        for run in range(args.runs):
            fresh = Path(tmp) / f"first{run}"
            fresh.mkdir()
            for name in ("infra.yml", "anklume.lock"):
                shutil.copy(root / name, fresh / name)
            first_builds.append(timed(anklume + ["build", "-f", str(fresh / "infra.yml"), "--no-apply"], env))
            base_root = Path(tmp) / f"baseline{run}"
            base_root.mkdir()
            shutil.copy(root / "infra.yml", base_root / "infra.yml")
            base.append(timed([sys.executable, "-c", BASELINE, str(base_root)], env))
        first_build = (statistics.median(b[0] for b in first_builds), 0, max(b[2] for b in first_builds))
        timed(anklume + ["build", *f, "--no-apply"], env)  # the tree of the rows below
        print(f"{args.domains} domains x {args.machines} machines = {args.domains * args.machines} machines, "
              f"{len(tree_mtimes(root))} files; median of {args.runs} runs, each a new process")
        print(f"  first lock (cold: parse, validate, resolve)   {first_lock[0]:6.2f} s  {first_lock[2]:4d} MB")
        before = tree_mtimes(root)
        rows = {
            "lock --check": anklume + ["lock", *f, "--check"],
            "lock (warm cache)": anklume + ["lock", *f],
            "build --no-apply (no-op)": anklume + ["build", *f, "--no-apply"],
        }
        results = {}
        for label, argv in rows.items():
            runs = [timed(argv, env) for _ in range(args.runs)]
            results[label] = (statistics.median(r[0] for r in runs), max(r[2] for r in runs))
        assert tree_mtimes(root) == before, "a no-op build rewrote files"
        edits = []
        for run in range(args.runs):
            edit_one_machine(root / "infra.yml", run)
            edits.append(timed(anklume + ["lock", *f], env))
        edit_s, edit_mb = statistics.median(e[0] for e in edits), max(e[2] for e in edits)
        base_s = statistics.median(b[0] for b in base)
        targets = {"lock --check": 0.5, "lock (warm cache)": 2.0, "build --no-apply (no-op)": 2.0}
        for label, (secs, mb) in results.items():
            row(label, secs, mb, f"< {targets[label]} s, < 300 MB", secs < targets[label] and mb < 300,
                f"   baseline/this = {base_s / secs:5.1f}x")
        row("lock after one machine's line changed", edit_s, edit_mb, "< 1.5 s, < 300 MB",
            edit_s < 1.5 and edit_mb < 300, "   (every pin kept from the lock: nothing fetched)")
        row("first build --no-apply (writes every file)", first_build[0], first_build[2],
            f"<= baseline / 2 = {base_s / 2:.2f} s, < 300 MB", first_build[0] <= base_s / 2 and first_build[2] < 300,
            f"   this/baseline = {first_build[0] / base_s:4.2f}   (runs {spread(first_builds)})")
        print(f"  baseline: yaml.safe_load + yaml.dump + write every file   {base_s:6.2f} s  "
              f"{max(b[2] for b in base):4d} MB   (runs {spread(base)})")
        print("  no-op build rewrote no file (mtimes unchanged)")


if __name__ == "__main__":
    main()

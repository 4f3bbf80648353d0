"""The steps of ``scripts/gpu-check.sh``: does a GPU container built by anklume compute on the
pinned GPU?  One summary at the end: each step PASS, FAIL or SKIP, and a last line.

On a machine with an NVIDIA GPU and an Incus daemon (started by gpu-check.sh):

1. Incus lists the GPU in /1.0/resources;
2. a small Debian image with python3 is imported (``local:anklume-gpu-check``);
3. ``anklume gpus`` shows the card, its driver and what a container gets;
4. ``anklume lock`` pins the GPU of a one-machine infra from the real inventory, with its driver;
5. ``anklume build`` creates the GPU container;
6. ``anklume verify --live`` is clean (nvidia-smi inside included);
7. ``nvidia-smi -L`` inside lists the locked UUID;
8. a tiny CUDA program (scripts/gpu_check_cuda.py: ctypes on libcuda.so.1, cuInit,
   cuDeviceGetName, cuMemAlloc, a few MB there and back, compared) passes on the host, then
   inside the container on the locked card;
9. the same lock with another UUID recorded is refused by ``build``'s preflight.

``--dry-run`` (any machine, no GPU): the same steps against a private incusd of the test harness
(tests/support/incusd.py: its own network namespace and state directory), where what needs a GPU
is expected to be refused or to fail cleanly, and is checked for that: the lock comes from the
recorded H200 inventory, ``build`` refuses the GPU machine and builds the rest, ``verify --live``
reports the missing card, the CUDA program fails to load libcuda.so.1 in a container of the image.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import msgspec  # noqa: E402

from anklume.lock.codec import decode_lock, encode_lock  # noqa: E402
from anklume.resolve.gpus import parse_resources  # noqa: E402

DOMAIN = "gpuchk"
MACHINE = "gpuchk-llm"
PROBE = "gpuchk-probe"  # --dry-run: a plain container of the image, where the CUDA program runs
IMAGE_ALIAS = "anklume-gpu-check"
OTHER_UUID = "GPU-00000000-0000-0000-0000-000000000000"
CUDA_PROGRAM = REPO / "scripts" / "gpu_check_cuda.py"
INFRA = f"""\
project_name: gpu-check
global:
  base_subnet: "10.177"
  default_os_image: "local:{IMAGE_ALIAS}"
domains:
  {DOMAIN}:
    subnet_id: 1
    ephemeral: true
    machines:
      {MACHINE}:
        gpu: true
"""


class Report:
    def __init__(self) -> None:
        self.steps: list[tuple[str, str, str]] = []
        self.t0 = time.monotonic()

    def add(self, status: str, step: str, detail: str = "") -> bool:
        self.steps.append((status, step, detail))
        print(f"[{time.monotonic() - self.t0:6.1f}s] {status:4} {step}" + (f": {detail}" if detail else ""), flush=True)
        return status != "FAIL"

    def summary(self, headline: str) -> int:
        failed = [s for s in self.steps if s[0] == "FAIL"]
        passed = sum(1 for s in self.steps if s[0] == "PASS")
        print("\n=== gpu-check summary ===")
        for status, step, detail in self.steps:
            print(f"{status:4} {step}" + (f": {detail}" if detail else ""))
        print(f"gpu-check: {'OK' if not failed else 'FAILED'}: {passed} passed, {len(failed)} failed, "
              f"{len(self.steps) - passed - len(failed)} skipped in {time.monotonic() - self.t0:.0f} s; {headline}")
        return 1 if failed else 0


class Daemon:
    """The incus CLI and anklume against one daemon."""

    def __init__(self, socket: str, env: dict[str, str], work: Path):
        self.socket = socket
        self.env = env
        self.work = work
        self.incus_bin = shutil.which("incus", path=env.get("PATH")) or "incus"

    def incus(self, *args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
        done = subprocess.run([self.incus_bin, *args], env=self.env, capture_output=True, text=True,
                              timeout=timeout)
        if check and done.returncode != 0:
            raise RuntimeError(f"incus {' '.join(args)}: exit {done.returncode}: {done.stderr.strip()[-500:]}")
        return done

    def query(self, path: str):
        return json.loads(self.incus("query", path).stdout)

    def anklume(self, *args: str, cwd: Path | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
        env = dict(self.env, ANKLUME_INCUS=self.socket, ANKLUME_CACHE_DIR=str(self.work / "cache"),
                   XDG_DATA_HOME=str(self.work / "data"), NO_COLOR="1", COLUMNS="200", PYTHONUNBUFFERED="1")
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
        done = subprocess.run([sys.executable, "-m", "anklume", *args], cwd=cwd or self.work / "project", env=env,
                              capture_output=True, text=True, timeout=timeout)
        print(f"  $ anklume {' '.join(args)}  (exit {done.returncode})")
        for line in (done.stdout + done.stderr).rstrip().splitlines()[-40:]:
            print(f"    {line}")
        return done


def cleanup(d: Daemon) -> None:
    """What an earlier run left: the instances, the images copied into the domain's project, the
    project and its bridge (best effort)."""
    for project in (DOMAIN, "default"):
        for name in (MACHINE, PROBE):
            d.incus("delete", "--force", name, "--project", project, check=False)
    images = d.incus("image", "list", "--project", DOMAIN, "--format=json", check=False)
    if images.returncode == 0:
        for image in json.loads(images.stdout or "[]"):
            d.incus("image", "delete", image["fingerprint"], "--project", DOMAIN, check=False)
    d.incus("project", "delete", DOMAIN, check=False)
    d.incus("network", "delete", f"net-{DOMAIN}", check=False)


def import_image(d: Daemon, image_dir: Path) -> str:
    rootfs = next((p for p in (image_dir / "rootfs.tar.xz", image_dir / "rootfs.tar.gz") if p.exists()), None)
    meta = image_dir / "meta.tar.gz"
    if rootfs is None or not meta.exists():
        raise RuntimeError(f"{image_dir}: no meta.tar.gz + rootfs.tar.xz (run gpu-check.sh --prepare)")
    listing = json.loads(d.incus("image", "list", "--format=json").stdout)
    for image in listing:
        if any(a["name"] == IMAGE_ALIAS for a in image.get("aliases") or []):
            return image["fingerprint"]
    d.incus("image", "import", str(meta), str(rootfs), "--alias", IMAGE_ALIAS)
    listing = json.loads(d.incus("image", "list", "--format=json").stdout)
    return next(i["fingerprint"] for i in listing if any(a["name"] == IMAGE_ALIAS for a in i.get("aliases") or []))


def cuda_in(d: Daemon, instance: str, project: str) -> dict:
    d.incus("file", "push", str(CUDA_PROGRAM), f"{instance}/root/gpu_check_cuda.py", "--project", project)
    done = d.incus("exec", instance, "--project", project, "--", "python3", "/root/gpu_check_cuda.py", check=False,
                   timeout=120)
    return _cuda_result(done)


def cuda_on_host() -> dict:
    done = subprocess.run([sys.executable, str(CUDA_PROGRAM)], capture_output=True, text=True, timeout=120)
    return _cuda_result(done)


def _cuda_result(done: subprocess.CompletedProcess) -> dict:
    lines = done.stdout.strip().splitlines()
    try:
        return json.loads(lines[-1])
    except (IndexError, ValueError):
        return {"ok": False, "error": f"exit {done.returncode}: {(done.stderr or done.stdout).strip()[-300:]}"}


def dry_run_inventory(path: Path) -> None:
    """The recorded H200 host's inventory (tests/fixtures/gpu), with a driver reaching containers
    through nvidia.runtime: what `lock --gpu-inventory` takes in place of this GPU-less host's."""
    from anklume.resolve.gpus import encode_inventory, join_inventory, parse_nvidia_smi_csv, parse_resources, with_driver
    from tests.support.recorded import H200_RESOURCES, H200_SMI_CSV

    cards = join_inventory(parse_resources(json.loads(H200_RESOURCES.read_bytes())),
                           parse_nvidia_smi_csv(H200_SMI_CSV.read_text()))
    path.write_bytes(encode_inventory(with_driver(cards, cuda_version="13.0", mode="runtime")))


def in_container(d: Daemon, report: Report, *, dry: bool, pin) -> None:
    """Steps 6 to 8: verify --live, nvidia-smi -L inside, the CUDA program."""
    # 6. anklume verify --live
    verified = d.anklume("verify", "--live", "--json")
    try:
        findings = json.loads(verified.stdout)["findings"]
    except (ValueError, KeyError):
        findings = None
    if dry:
        ok = verified.returncode == 1 and findings is not None and any(
            f["object"] == f"gpu:{MACHINE}" and f["field"] == "pci" for f in findings)
        report.add("PASS" if ok else "FAIL", "anklume verify --live: the missing card reported",
                   f"exit {verified.returncode}, {len(findings or [])} finding(s)")
    else:
        report.add("PASS" if verified.returncode == 0 else "FAIL", "anklume verify --live (nvidia-smi inside)",
                   "clean" if verified.returncode == 0 else
                   "; ".join(f"{f['object']} {f['field']}: expected {f['expected']}, found {f['actual']}"
                             for f in findings or [])[:600] or verified.stderr.strip()[-300:])

    # 7. nvidia-smi -L inside
    if dry:
        report.add("SKIP", "nvidia-smi -L in the container", "no GPU container here")
    else:
        smi = d.incus("exec", MACHINE, "--project", DOMAIN, "--", "nvidia-smi", "-L", check=False)
        print(f"  $ incus exec {MACHINE} -- nvidia-smi -L  (exit {smi.returncode})\n    {smi.stdout.strip()}")
        ok = smi.returncode == 0 and pin.locked.uuid is not None and pin.locked.uuid in smi.stdout
        report.add("PASS" if ok else "FAIL", "nvidia-smi -L in the container shows the locked UUID",
                   (smi.stdout or smi.stderr).strip()[:300])

    # 8. the CUDA program: on the host, then in the container
    host = cuda_on_host()
    if dry:
        report.add("PASS" if not host["ok"] and "libcuda.so.1" in host.get("error", "") else "FAIL",
                   "CUDA on the host: fails cleanly without a driver", host.get("error", str(host)))
        d.incus("launch", f"{IMAGE_ALIAS}", PROBE, "--project", "default")
        inside = cuda_in(d, PROBE, "default")
        report.add("PASS" if not inside["ok"] and "libcuda.so.1" in inside.get("error", "") else "FAIL",
                   "CUDA program in a container of the image: python3 and ctypes run, libcuda.so.1 absent",
                   inside.get("error", str(inside)))
    else:
        report.add("PASS" if host["ok"] else "FAIL", "CUDA on the host", json.dumps(host, sort_keys=True))
        inside = cuda_in(d, MACHINE, DOMAIN)
        ok = inside["ok"] and (pin.locked.uuid is None or inside.get("uuid") == pin.locked.uuid)
        report.add("PASS" if ok else "FAIL", "CUDA in the container: cuInit, cuDeviceGetName, cuMemAlloc, "
                   "copy there and back", json.dumps(inside, sort_keys=True))


def check(d: Daemon, report: Report, *, dry: bool, image_dir: Path) -> str:
    """Every step; returns the headline of the summary."""
    project = d.work / "project"
    project.mkdir(parents=True, exist_ok=True)
    (project / "infra.yml").write_text(INFRA)
    headline = "no GPU checked (dry run)" if dry else "no GPU checked"

    # 1. Incus sees the GPU
    cards = [c for c in parse_resources(d.query("/1.0/resources")) if c.vendor_id == "10de"]
    if dry:
        report.add("PASS", "incus", f"private daemon at {d.socket}; {len(cards)} NVIDIA GPU(s) (none expected)")
    elif not report.add("PASS" if cards else "FAIL", "incus: the GPU in /1.0/resources",
                        ", ".join(f"{c.pci} {c.model}" for c in cards) or "no NVIDIA GPU"):
        return headline

    # 2. the image
    try:
        fp = import_image(d, image_dir)
        report.add("PASS", "image", f"local:{IMAGE_ALIAS} {fp[:12]} (Debian 12 with python3)")
    except (RuntimeError, subprocess.TimeoutExpired) as err:
        report.add("FAIL", "image", str(err))
        return headline

    # 3. anklume gpus
    table = d.anklume("gpus")
    inv = d.anklume("gpus", "--json")
    host_cards = json.loads(inv.stdout) if inv.returncode == 0 and inv.stdout.strip() else []
    if dry:
        report.add("PASS" if table.returncode == 0 and "no GPU found" in table.stdout else "FAIL",
                   "anklume gpus", "no GPU found (expected here)")
    else:
        modes = [f"{c['pci']} driver {c.get('driver_version')} (CUDA {c.get('cuda_version')}), "
                 f"mode {c.get('driver_mode')}, {len(c.get('driver_files') or [])} files" for c in host_cards]
        ok = table.returncode == 0 and any(c.get("driver_mode") for c in host_cards)
        report.add("PASS" if ok else "FAIL", "anklume gpus: the driver and the container mode",
                   "; ".join(modes) or table.stderr.strip()[-300:])

    # 4. anklume lock
    if dry:
        dry_run_inventory(d.work / "h200-inventory.json")
        locked = d.anklume("lock", "--gpu-inventory", str(d.work / "h200-inventory.json"))
    else:
        locked = d.anklume("lock")
    lock = None
    if locked.returncode == 0:
        lock = decode_lock((project / "anklume.lock").read_bytes())
    pin = lock.gpus.get(MACHINE) if lock else None
    if pin is None:
        report.add("FAIL", "anklume lock", (locked.stderr or locked.stdout).strip()[-300:])
        return headline
    drv = pin.driver
    headline = (f"GPU {pin.locked.model} {pin.locked.uuid} at {pin.locked.pci}, driver "
                f"{drv.version if drv else '?'} ({drv.mode if drv else 'no driver pinned'})")
    report.add("PASS" if drv is not None else "FAIL", "anklume lock: the GPU and its driver pinned",
               f"{pin.locked.pci} {pin.locked.uuid}, " + (f"driver {drv.version}, CUDA {drv.cuda}, mode {drv.mode}, "
                                                          f"{len(drv.files)} files" if drv else "no driver"))
    if dry:
        headline = "no GPU checked (dry run): " + headline

    # 5. anklume build
    built = d.anklume("build")
    instances = {i["name"] for i in d.query(f"/1.0/instances?project={DOMAIN}&recursion=1")} \
        if d.incus("project", "show", DOMAIN, check=False).returncode == 0 else set()
    if dry:
        ok = (built.returncode == 1 and f"refused: GPU of machine {MACHINE}" in built.stdout + built.stderr
              and MACHINE not in instances and d.incus("project", "show", DOMAIN, check=False).returncode == 0)
        report.add("PASS" if ok else "FAIL", "anklume build: the GPU machine refused, the rest built",
                   f"exit {built.returncode}, instances {sorted(instances)} (no GPU here)")
    else:
        report.add("PASS" if built.returncode == 0 and MACHINE in instances else "FAIL", "anklume build",
                   f"exit {built.returncode}")
    if dry or (built.returncode == 0 and MACHINE in instances):
        in_container(d, report, dry=dry, pin=pin)
    else:
        report.add("SKIP", "verify --live, nvidia-smi and CUDA in the container", "the build failed")

    # 9. the same lock with another UUID: refused by the preflight
    other = d.work / "project-other-uuid"
    other.mkdir(exist_ok=True)
    (other / "infra.yml").write_text(INFRA)
    edited = msgspec.structs.replace(pin, locked=msgspec.structs.replace(pin.locked, uuid=OTHER_UUID))
    swapped = msgspec.structs.replace(lock, gpus={MACHINE: edited})
    (other / "anklume.lock").write_bytes(encode_lock(swapped))
    refused = d.anklume("build", cwd=other)
    text = refused.stdout + refused.stderr
    ok = (refused.returncode == 1 and f"refused: GPU of machine {MACHINE}" in text and OTHER_UUID in text
          and "anklume lock --update gpus" in text)
    still = "" if dry else d.query(f"/1.0/instances/{MACHINE}?project={DOMAIN}")["status"]
    report.add("PASS" if ok and (dry or still == "Running") else "FAIL",
               "the lock with another UUID: refused by the preflight",
               f"exit {refused.returncode}" + ("" if dry else f", the container still {still}"))
    return headline


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dry-run", action="store_true", help="no GPU: a private incusd of the test harness")
    parser.add_argument("--socket", default="/var/lib/incus/unix.socket", help="the Incus daemon (not --dry-run)")
    parser.add_argument("--image", type=Path, help="a folder with meta.tar.gz and rootfs.tar.xz")
    parser.add_argument("--keep", action="store_true", help="leave the GPU container and its project")
    args = parser.parse_args(argv)
    report = Report()
    work = Path(tempfile.mkdtemp(prefix="anklume-gpu-check-"))
    os.chmod(work, 0o755)
    try:
        if args.dry_run:
            from tests.support.images import debian_gpu_check_image
            from tests.support.incusd import PrivateIncus

            image = args.image or debian_gpu_check_image().meta.parent
            with PrivateIncus() as inc:
                d = Daemon(inc.socket, inc.env, work)
                headline = check(d, report, dry=True, image_dir=image)
        else:
            if args.image is None:
                parser.error("--image DIR is needed (gpu-check.sh passes the carried one)")
            env = dict(os.environ, INCUS_DIR=str(Path(args.socket).parent))
            d = Daemon(args.socket, env, work)
            cleanup(d)
            try:
                headline = check(d, report, dry=False, image_dir=args.image)
            finally:
                if not args.keep:
                    cleanup(d)
    except Exception as err:  # a step that broke: said in the summary, never a bare traceback
        report.add("FAIL", "gpu-check itself", f"{type(err).__name__}: {err}")
        headline = "stopped"
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return report.summary(headline)


if __name__ == "__main__":
    sys.exit(main())

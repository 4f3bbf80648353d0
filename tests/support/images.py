"""Container images built locally for the tests, in Incus' split format (meta + rootfs tarballs).

- busybox: Debian's busybox-static, ~1 MB, built in milliseconds, byte-for-byte deterministic
  (sorted entries, fixed mtimes, uid/gid 0, gzip without name/mtime), so its fingerprint is the
  same on every run with the same busybox-static and zlib.
- debian-python: a minimal Debian 12 with python3 (for Ansible) and python3-venv (for the
  open_webui role), made by mmdebstrap; ~40 s to build once, then cached.

Both boot busybox `init` with an inittab that runs /etc/init.d/rcS (lo up, and a DHCP client on
eth0 when the instance has one) and then just keeps running.

Built tarballs are cached under $ANKLUME_TEST_CACHE, else $XDG_CACHE_HOME/anklume-tests, else
~/.cache/anklume-tests, keyed by the inputs (busybox binary hash, recipe version).
"""

from __future__ import annotations

import fcntl
import gzip
import hashlib
import io
import os
import platform
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .procs import SETUP_HINT, SetupError, find_binary, run

# Fixed timestamp for every tar member and the image's creation_date (2024-01-01T00:00:00Z).
EPOCH = 1704067200
RECIPE_VERSION = "1"

INITTAB = b"""\
# anklume test image: busybox init, no getty; init itself keeps the container running.
::sysinit:/etc/init.d/rcS
::ctrlaltdel:/sbin/reboot
::shutdown:/bin/true
"""

RCS = b"""\
#!/bin/sh
# anklume test image boot script. Every tool through busybox: Debian's busybox package installs
# no applet links, and its minbase has no iproute2.
busybox hostname -F /etc/hostname 2>/dev/null
busybox ip link set lo up 2>/dev/null
if [ -e /sys/class/net/eth0 ]; then
    # -b: go to background if no lease comes quickly (isolated networks have no DHCP).
    busybox udhcpc -b -t 3 -T 1 -A 5 -i eth0 -s /etc/anklume/udhcpc.script >/dev/null 2>&1
fi
exit 0
"""

UDHCPC_SCRIPT = b"""\
#!/bin/sh
# Minimal udhcpc hook: configure the address and default route, nothing else.
case "$1" in
    deconfig)
        busybox ip -4 addr flush dev "$interface"
        busybox ip link set "$interface" up
        ;;
    bound|renew)
        busybox ip -4 addr flush dev "$interface"
        busybox ip addr add "$ip/${mask:-24}" dev "$interface"
        if [ -n "$router" ]; then
            busybox ip route replace default via "${router%% *}" dev "$interface"
        fi
        ;;
esac
exit 0
"""

PASSWD = b"root:x:0:0:root:/root:/bin/sh\n"
GROUP = b"root:x:0:\n"
HOSTNAME_TPL = b"{{ instance.name }}\n"


@dataclass(frozen=True)
class ImageFiles:
    meta: Path
    rootfs: Path

    @property
    def fingerprint(self) -> str:
        """Incus' fingerprint of a split image: sha256 over metadata then rootfs."""
        h = hashlib.sha256()
        for p in (self.meta, self.rootfs):
            with open(p, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
        return h.hexdigest()


def _recipe_hash(*extra: object) -> str:
    """Key of a cached build: everything that goes into it (bump RECIPE_VERSION for code)."""
    h = hashlib.sha256()
    for part in (RECIPE_VERSION, INITTAB, RCS, UDHCPC_SCRIPT, PASSWD, GROUP, HOSTNAME_TPL,
                 EPOCH, *extra):
        h.update(repr(part).encode())
        h.update(b"\0")
    return h.hexdigest()[:16]


def cache_dir() -> Path:
    base = os.environ.get("ANKLUME_TEST_CACHE")
    if base:
        return Path(base)
    xdg = os.environ.get("XDG_CACHE_HOME")
    root = Path(xdg) if xdg else Path.home() / ".cache"
    return root / "anklume-tests"


def incus_arch() -> str:
    return platform.machine()


# --- deterministic tar/gzip ----------------------------------------------------------------------


class DeterministicTar:
    """Collects members, then writes them sorted with fixed metadata into a gzip stream."""

    def __init__(self) -> None:
        self._members: dict[str, tuple[tarfile.TarInfo, bytes | None]] = {}

    def _info(self, name: str, type_: bytes, mode: int) -> tarfile.TarInfo:
        ti = tarfile.TarInfo(name)
        ti.type = type_
        ti.mode = mode
        ti.mtime = EPOCH
        ti.uid = ti.gid = 0
        ti.uname = ti.gname = "root"
        return ti

    def _parents(self, name: str) -> None:
        if "/" in name:
            parent = name.rsplit("/", 1)[0]
            if parent not in self._members:
                self.dir(parent)

    def dir(self, name: str, mode: int = 0o755) -> None:
        name = name.strip("/")
        parts = name.split("/")
        for i in range(1, len(parts)):  # parents first
            parent = "/".join(parts[:i])
            if parent not in self._members:
                self._members[parent] = (self._info(parent, tarfile.DIRTYPE, 0o755), None)
        self._members[name] = (self._info(name, tarfile.DIRTYPE, mode), None)

    def file(self, name: str, data: bytes, mode: int = 0o644) -> None:
        name = name.strip("/")
        self._parents(name)
        ti = self._info(name, tarfile.REGTYPE, mode)
        ti.size = len(data)
        self._members[name] = (ti, data)

    def symlink(self, name: str, target: str) -> None:
        name = name.strip("/")
        self._parents(name)
        ti = self._info(name, tarfile.SYMTYPE, 0o777)
        ti.linkname = target
        self._members[name] = (ti, None)

    def tar_bytes(self) -> bytes:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
            for name in sorted(self._members):
                ti, data = self._members[name]
                tar.addfile(ti, io.BytesIO(data) if data is not None else None)
        return buf.getvalue()

    def write_gz(self, path: Path) -> None:
        _atomic_write(path, gzip_bytes(self.tar_bytes()))


def gzip_bytes(data: bytes, level: int = 9) -> bytes:
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0, compresslevel=level) as gz:
        gz.write(data)
    return buf.getvalue()


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def metadata_yaml(os_name: str, release: str, description: str) -> bytes:
    # Written by hand (stable key order, no yaml library dependency on output formatting).
    return (
        f"architecture: {incus_arch()}\n"
        f"creation_date: {EPOCH}\n"
        "properties:\n"
        f"  architecture: {incus_arch()}\n"
        f'  description: "{description}"\n'
        f"  os: {os_name}\n"
        f'  release: "{release}"\n'
        "templates:\n"
        "  /etc/hostname:\n"
        "    when:\n"
        "    - create\n"
        "    - copy\n"
        "    template: hostname.tpl\n"
    ).encode()


def write_meta(path: Path, os_name: str, release: str, description: str) -> None:
    t = DeterministicTar()
    t.file("metadata.yaml", metadata_yaml(os_name, release, description))
    t.dir("templates")
    t.file("templates/hostname.tpl", HOSTNAME_TPL)
    t.write_gz(path)


def _boot_files(t: DeterministicTar, usr_merged: bool) -> None:
    etc = "etc"
    t.file(f"{etc}/inittab", INITTAB)
    t.file(f"{etc}/init.d/rcS", RCS, 0o755)
    t.file(f"{etc}/anklume/udhcpc.script", UDHCPC_SCRIPT, 0o755)
    # /sbin/init -> busybox (in a merged-/usr tree /sbin is itself a link to usr/sbin)
    t.symlink("usr/sbin/init" if usr_merged else "sbin/init", "/bin/busybox")


# --- cache with a lock (two sessions may build at once) -------------------------------------------


def _cached(key: str, build: Callable[[Path], None]) -> ImageFiles:
    d = cache_dir() / key
    files = ImageFiles(d / "meta.tar.gz", d / "rootfs.tar.gz")
    if files.meta.exists() and files.rootfs.exists():
        return files
    d.parent.mkdir(parents=True, exist_ok=True)
    with open(cache_dir() / f".{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if files.meta.exists() and files.rootfs.exists():
            return files
        work = Path(tempfile.mkdtemp(dir=cache_dir(), prefix=f".{key}."))
        try:
            build(work)
            if d.exists():
                shutil.rmtree(d)
            os.replace(work, d)
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)
            raise
    return files


# --- busybox ---------------------------------------------------------------------------------------


def _busybox_binary() -> Path:
    for p in ("/bin/busybox", "/usr/bin/busybox"):
        if os.path.exists(p):
            out = run([p, "--list"], check=False).stdout
            if "init" in out.split() and "udhcpc" in out.split():
                return Path(p)
    raise SetupError(f"busybox-static (with init, udhcpc) not found; {SETUP_HINT}")


def _busybox_version() -> str:
    proc = run(["dpkg-query", "-W", "-f=${Version}", "busybox-static"], check=False)
    return proc.stdout.strip() if proc.returncode == 0 else "unknown"


def busybox_image_files() -> ImageFiles:
    binary = _busybox_binary()
    data = binary.read_bytes()
    version = _busybox_version()
    key = f"busybox-{incus_arch()}-{_recipe_hash(hashlib.sha256(data).hexdigest(), version)}"

    def build(work: Path) -> None:
        applets = run([str(binary), "--list-full"]).stdout.split()
        t = DeterministicTar()
        for d in ("bin", "sbin", "usr/bin", "usr/sbin", "dev", "proc", "sys", "run", "root",
                  "etc", "var/log", "mnt"):
            t.dir(d)
        t.dir("tmp", 0o1777)
        t.dir("var/tmp", 0o1777)
        t.file("bin/busybox", data, 0o755)
        for path in applets:
            if path in ("bin/busybox", "sbin/init"):
                continue
            t.symlink(path, "/bin/busybox")
        t.file("etc/passwd", PASSWD)
        t.file("etc/group", GROUP)
        t.file("etc/hostname", b"busybox\n")
        _boot_files(t, usr_merged=False)
        t.write_gz(work / "rootfs.tar.gz")
        write_meta(work / "meta.tar.gz", "busybox", version.split(":")[-1],
                   f"anklume test busybox {version}")

    return _cached(key, build)


# --- minimal Debian with python3 -----------------------------------------------------------------

DEBIAN_SUITE = "bookworm"
DEBIAN_MIRROR = "http://deb.debian.org/debian"
# python3-venv: `python3 -m venv` for the open_webui role (pulls only python3-pip-whl,
# python3-setuptools-whl and python3-distutils, a few MB).
DEBIAN_PACKAGES = ("python3", "python3-venv", "busybox", "udhcpc")
DEBIAN_EXCLUDES = (
    "/usr/share/man/*",
    "/usr/share/doc/*",
    "/usr/share/info/*",
    "/usr/share/locale/*",
    "/usr/share/lintian/*",
)


def _debian_overlay(path: Path) -> None:
    t = DeterministicTar()
    _boot_files(t, usr_merged=True)
    t.file("etc/hostname", b"debian\n")
    path.write_bytes(t.tar_bytes())


def debian_python_image_files() -> ImageFiles:
    mmdebstrap = find_binary("mmdebstrap")
    hook_dir = "/usr/share/mmdebstrap/hooks/merged-usr"
    if not os.path.isdir(hook_dir):
        raise SetupError(f"{hook_dir} missing; {SETUP_HINT}")
    recipe = _recipe_hash(DEBIAN_SUITE, DEBIAN_MIRROR, DEBIAN_PACKAGES, DEBIAN_EXCLUDES)
    key = f"debian-python-{DEBIAN_SUITE}-{incus_arch()}-{recipe}"

    def build(work: Path) -> None:
        overlay = work / "overlay.tar"
        _debian_overlay(overlay)
        out = work / "rootfs.tar"
        argv = [
            mmdebstrap,
            "--quiet",
            "--variant=minbase",
            "--include=" + ",".join(DEBIAN_PACKAGES),
            f"--hook-dir={hook_dir}",
            *(f"--dpkgopt=path-exclude={p}" for p in DEBIAN_EXCLUDES),
            f"--customize-hook=tar-in {overlay} /",
            DEBIAN_SUITE,
            str(out),
            DEBIAN_MIRROR,
        ]
        env = dict(os.environ, SOURCE_DATE_EPOCH=str(EPOCH), TMPDIR=str(work))
        proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=900)
        if proc.returncode != 0:
            raise RuntimeError(f"mmdebstrap failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
        with open(out, "rb") as src, open(work / "rootfs.tar.gz.tmp", "wb") as dst:
            with gzip.GzipFile(filename="", mode="wb", fileobj=dst, mtime=0, compresslevel=6) as gz:
                shutil.copyfileobj(src, gz, 1 << 20)
        os.replace(work / "rootfs.tar.gz.tmp", work / "rootfs.tar.gz")
        out.unlink()
        overlay.unlink()
        write_meta(work / "meta.tar.gz", "debian", "12", "anklume test Debian 12 with python3")

    return _cached(key, build)


# --- the smallest Debian with python3, for scripts/gpu-check.sh -------------------------------------

#: python3 (ctypes is in its standard library) and busybox (init, sh); nothing else.
GPU_CHECK_PACKAGES = ("python3", "busybox")
GPU_CHECK_EXCLUDES = DEBIAN_EXCLUDES


def debian_gpu_check_image(dest: Path | None = None) -> ImageFiles:
    """Debian 12 with python3 and busybox, xz-compressed (about 21 MB), into ``dest`` (default:
    the tests' image cache) as ``meta.tar.gz`` and ``rootfs.tar.xz``: what scripts/gpu-check.sh
    carries to a GPU machine, where it runs a CUDA program through ctypes.  Built by mmdebstrap
    (network, about 2 minutes), once."""
    if dest is None:
        recipe = _recipe_hash(DEBIAN_SUITE, DEBIAN_MIRROR, GPU_CHECK_PACKAGES, GPU_CHECK_EXCLUDES, "essential", "xz")
        dest = cache_dir() / f"debian-gpu-check-{DEBIAN_SUITE}-{incus_arch()}-{recipe}"
    files = ImageFiles(dest / "meta.tar.gz", dest / "rootfs.tar.xz")
    if files.meta.exists() and files.rootfs.exists():
        return files
    mmdebstrap = find_binary("mmdebstrap")
    xz = find_binary("xz")
    hook_dir = "/usr/share/mmdebstrap/hooks/merged-usr"
    if not os.path.isdir(hook_dir):
        raise SetupError(f"{hook_dir} missing; {SETUP_HINT}")
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest, prefix=".build.") as tmp:
        work = Path(tmp)
        overlay = work / "overlay.tar"
        _debian_overlay(overlay)
        out = work / "rootfs.tar"
        argv = [mmdebstrap, "--quiet", "--variant=essential", "--include=" + ",".join(GPU_CHECK_PACKAGES),
                f"--hook-dir={hook_dir}", *(f"--dpkgopt=path-exclude={p}" for p in GPU_CHECK_EXCLUDES),
                f"--customize-hook=tar-in {overlay} /", DEBIAN_SUITE, str(out), DEBIAN_MIRROR]
        env = dict(os.environ, SOURCE_DATE_EPOCH=str(EPOCH), TMPDIR=str(work))
        proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=900)
        if proc.returncode != 0:
            raise RuntimeError(f"mmdebstrap failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
        run([xz, "-9", "-T2", str(out)])
        os.replace(work / "rootfs.tar.xz", files.rootfs)
        write_meta(files.meta, "debian", "12", "anklume gpu-check: Debian 12 with python3")
    return files

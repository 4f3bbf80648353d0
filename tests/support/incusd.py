"""A private `incusd` for integration tests.

    with PrivateIncus() as inc:
        inc.ensure_busybox_image()
        client = inc.client()              # pylxd.Client over the private unix socket
        inc.incus("launch", "busybox", "c1")

The daemon runs in a network namespace of its own (`anklume-test-<pid>-<n>`, only `lo` up), so
its bridges, dnsmasq and containers cannot reach or be reached from the host network, with its
own state directory (INCUS_DIR in a fresh temp dir) and socket. /var/lib/incus is never used.
Teardown stops only what this object started: the daemon by PID, then whatever still lives in
its namespace (dnsmasq, container monitors) and their descendants; then the namespace and the
temp dir go.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from . import images
from .procs import (
    StartedOnEnter,
    SETUP_HINT,
    SetupError,
    find_binary,
    kill_pids,
    pid_alive,
    require_root,
    run,
    tail,
    wait_until,
    with_descendants,
)

_counter = itertools.count(1)

INCUSD_CANDIDATES = ("/usr/libexec/incus/incusd", "/usr/lib/incus/incusd", "/usr/bin/incusd",
                     "/usr/sbin/incusd")


def check_prerequisites() -> None:
    """Raise SetupError (with the setup.sh hint) if this machine cannot run PrivateIncus."""
    require_root()
    find_binary(*INCUSD_CANDIDATES)
    find_binary("incus")
    find_binary("ip")
    find_binary("dnsmasq")
    if not os.path.exists("/bin/busybox"):
        raise SetupError(f"busybox-static not installed; {SETUP_HINT}")


TMP_PREFIX = "anklume-incus-"
OWNER_FILE = "owner"
_NETNS_RE = re.compile(r"^anklume-test-(\d+)-\d+$")


def _netns_pids(name: str) -> list[int]:
    proc = run(["ip", "netns", "pids", name], check=False)
    return [int(x) for x in proc.stdout.split() if x.isdigit()]


def _destroy_netns(name: str) -> str | None:
    """Kill what lives in the namespace (all started by its incusd) and their descendants
    (container payloads have namespaces of their own), then delete it. Returns a problem."""
    pids: list[int] = []
    for _ in range(50):
        pids = with_descendants(_netns_pids(name))
        if not pids:
            break
        kill_pids(pids, signal.SIGKILL)
        time.sleep(0.1)
    else:
        return f"processes survive in netns {name}: {pids}"
    proc = run(["ip", "netns", "delete", name], check=False)
    if proc.returncode != 0 and os.path.exists(f"/run/netns/{name}"):
        return f"ip netns delete {name}: {proc.stderr.strip()}"
    return None


def _unmount_under(root: Path) -> None:
    prefix = str(root).rstrip("/") + "/"
    with open("/proc/mounts") as f:
        # /proc/mounts escapes space, tab, newline and backslash as octal
        targets = [re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), line.split()[1])
                   for line in f]
    for target in sorted((t for t in targets if (t + "/").startswith(prefix)),
                         key=len, reverse=True):
        run(["umount", "-l", target], check=False)


LXC_LOCK_ROOT = Path("/run/lxc/lock")


def _remove_lxc_locks(tmp: Path, prefix: str = TMP_PREFIX) -> None:
    """liblxc keeps lock dirs under /run/lxc/lock/<lxcpath>: drop the ones of our temp dir."""
    locks = LXC_LOCK_ROOT / tmp.resolve().relative_to("/")
    if locks.name.startswith(prefix):
        shutil.rmtree(locks, ignore_errors=True)


def sweep_stale(netns_re: re.Pattern, tmp_prefix: str, base_dir: str | None = None) -> list[str]:
    """Remove what an earlier test process (now dead, e.g. SIGKILLed) left: the namespaces whose
    name ``netns_re`` matches with a dead PID as its first group, the temp dirs ``<tmp_prefix>*``
    whose owner file names a dead PID, and liblxc's lock dirs whose temp dir is gone."""
    cleaned: list[str] = []
    listing = run(["ip", "netns", "list"], check=False).stdout
    for line in listing.splitlines():
        name = line.split()[0] if line.split() else ""
        m = netns_re.match(name)
        if m and int(m.group(1)) != os.getpid() and not pid_alive(int(m.group(1))):
            if _destroy_netns(name) is None:
                cleaned.append(name)
    root = Path(base_dir or tempfile.gettempdir())
    for d in root.glob(tmp_prefix + "*"):
        try:
            owner = int((d / OWNER_FILE).read_text().split()[0])
        except (OSError, ValueError, IndexError):
            continue
        if owner != os.getpid() and not pid_alive(owner):
            _unmount_under(d)
            shutil.rmtree(d, ignore_errors=True)
            _remove_lxc_locks(d, tmp_prefix)
            cleaned.append(str(d))
    locks = LXC_LOCK_ROOT / root.resolve().relative_to("/")
    for d in locks.glob(tmp_prefix + "*"):  # lock dirs whose daemon dir is gone
        if not (root / d.name).exists():
            shutil.rmtree(d, ignore_errors=True)
    return cleaned


def cleanup_stale(base_dir: str | None = None) -> list[str]:
    """What a dead test process left of its PrivateIncus: namespaces named
    anklume-test-<pid>-<n> and temp dirs whose owner file names a dead PID."""
    return sweep_stale(_NETNS_RE, TMP_PREFIX, base_dir)


class PrivateIncus(StartedOnEnter):
    """An incusd in its own network namespace and state directory. Context manager."""

    def __init__(self, *, start_timeout: float = 60.0, stop_timeout: float = 20.0,
                 base_dir: str | None = None) -> None:
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self._base_dir = base_dir
        self.netns: str | None = None
        self.tmp: Path | None = None
        self.dir: Path | None = None  # INCUS_DIR
        self.log_path: Path | None = None
        self.proc: subprocess.Popen | None = None
        self._log_file = None
        self._client = None
        self.startup_seconds: float | None = None

    # --- lifecycle -------------------------------------------------------------------------

    @property
    def socket(self) -> str:
        assert self.dir is not None, "daemon not started"
        return str(self.dir / "unix.socket")

    @property
    def env(self) -> dict[str, str]:
        """Environment for the incus CLI (and anything else) to talk to this daemon."""
        assert self.tmp is not None and self.dir is not None
        env = dict(os.environ)
        env["INCUS_DIR"] = str(self.dir)
        env["INCUS_CONF"] = str(self.tmp / "cli")  # keep ~/.config/incus untouched
        env.pop("INCUS_REMOTE", None)
        env.pop("INCUS_PROJECT", None)
        return env

    def start(self) -> None:
        check_prerequisites()
        t0 = time.monotonic()
        incusd = find_binary(*INCUSD_CANDIDATES)
        ip = find_binary("ip")
        cleanup_stale(self._base_dir)

        name = f"anklume-test-{os.getpid()}-{next(_counter)}"
        self.tmp = Path(tempfile.mkdtemp(prefix=TMP_PREFIX, dir=self._base_dir))
        os.chmod(self.tmp, 0o711)  # containers' idmapped paths need traversal
        (self.tmp / OWNER_FILE).write_text(f"{os.getpid()} {name}\n")
        self.dir = self.tmp / "var"
        self.dir.mkdir(mode=0o711)
        (self.tmp / "cli").mkdir(mode=0o700)
        self.log_path = self.tmp / "incusd.log"

        run([ip, "netns", "add", name])
        self.netns = name
        run([ip, "-n", name, "link", "set", "lo", "up"])

        env = self.env
        # A minimal, predictable PATH for the daemon (it runs dnsmasq, ip, nft, ...).
        env["PATH"] = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
        self._log_file = open(self.log_path, "ab")
        # `ip netns exec` execs the command in place: self.proc.pid is incusd's PID.
        self.proc = subprocess.Popen(
            [ip, "netns", "exec", name, incusd, "--group", "root"],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            wait_until(lambda: os.path.exists(self.socket) or self.proc.poll() is not None,
                       self.start_timeout, what="the incusd socket")
            if self.proc.poll() is not None:
                raise RuntimeError("incusd exited")
            self.incus("admin", "waitready", f"--timeout={int(self.start_timeout)}",
                       timeout=self.start_timeout + 5)
            self._init_storage()
        except Exception as e:
            raise RuntimeError(
                f"private incusd failed to start: {e}\n--- {self.log_path} ---\n"
                f"{tail(str(self.log_path))}"
            ) from e
        self.startup_seconds = time.monotonic() - t0

    def _init_storage(self) -> None:
        # `incus admin init --minimal` looks for a free subnet and fails in an empty namespace:
        # a dir pool named default, and the default profile's root disk, by hand.
        pools = json.loads(self.incus("storage", "list", "--format=json"))
        if not any(p["name"] == "default" for p in pools):
            self.incus("storage", "create", "default", "dir")
        devices = self.client().profiles.get("default").devices
        if "root" not in devices:
            self.incus("profile", "device", "add", "default", "root", "disk", "path=/",
                       "pool=default")

    def stop(self) -> None:
        """Tear everything down; safe to call twice or after a failed start."""
        errors: list[str] = []
        if self.proc is not None and self.proc.poll() is None:
            self._graceful_shutdown()
        if self.proc is not None:
            self._stop_daemon_process()
        if self.netns is not None:
            problem = _destroy_netns(self.netns)
            if problem:
                errors.append(problem)
            self.netns = None
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        if self.tmp is not None:
            _unmount_under(self.tmp)
            if os.environ.get("ANKLUME_KEEP_INCUS_DIR"):
                print(f"keeping {self.tmp} (ANKLUME_KEEP_INCUS_DIR)")
            else:
                shutil.rmtree(self.tmp, ignore_errors=True)
                if self.tmp.exists():
                    errors.append(f"could not remove {self.tmp}")
                _remove_lxc_locks(self.tmp)
            self.tmp = None
        self._client = None
        if errors:
            raise RuntimeError("private incusd teardown: " + "; ".join(errors))

    def _graceful_shutdown(self) -> None:
        # Stop every instance hard first (busybox init needs no graceful shutdown), then ask
        # the daemon to shut down.
        try:
            listing = json.loads(self.incus("list", "--all-projects", "--format=json",
                                            timeout=30))
            for inst in listing:
                if inst.get("status") != "Stopped":
                    self.incus("stop", "--force", "--project", inst.get("project", "default"),
                               inst["name"], check=False, timeout=30)
        except Exception as e:  # the daemon may be wedged: the kills that follow handle it
            print(f"private incusd: stopping instances failed: {e}", file=sys.stderr)
        try:
            self.incus("admin", "shutdown", f"--timeout={int(self.stop_timeout)}", check=False,
                       timeout=self.stop_timeout + 5)
        except subprocess.TimeoutExpired:
            pass

    def _stop_daemon_process(self) -> None:
        assert self.proc is not None
        if self.proc.poll() is None:
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(timeout=self.stop_timeout)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(timeout=10)

    def namespace_pids(self) -> list[int]:
        """PIDs whose network namespace is ours (incusd, dnsmasq, container monitors...)."""
        return _netns_pids(self.netns) if self.netns else []

    # --- access --------------------------------------------------------------------------------

    def client(self, project: str | None = None):
        """A pylxd.Client over the private socket (cached for project=None)."""
        import pylxd

        if project is not None:
            return pylxd.Client(endpoint=self.socket, project=project)
        if self._client is None:
            self._client = pylxd.Client(endpoint=self.socket)
        return self._client

    def incus(self, *args: str, input: str | None = None, check: bool = True,
              timeout: float = 120) -> str:
        """Run the incus CLI against this daemon; return stdout (raise with stderr on error)."""
        argv = [find_binary("incus"), *args]
        return run(argv, env=self.env, input=input, check=check, timeout=timeout).stdout

    # --- helpers for tests -----------------------------------------------------------------------

    def create_project(self, name: str, config: dict[str, str] | None = None,
                       pool: str = "default") -> None:
        """Create a project; if it has its own profiles, give its default profile a root disk."""
        args = ["project", "create", name]
        args += [f"{k}={v}" for k, v in (config or {}).items()]
        self.incus(*args)
        devices = self.client(project=name).profiles.get("default").devices
        if "root" not in devices:
            self.incus("profile", "device", "add", "default", "root", "disk", "path=/",
                       f"pool={pool}", "--project", name)

    def purge_project(self, name: str) -> None:
        """Delete a project and everything in it (instances, images, profiles, networks,
        custom volumes). For test cleanup on the shared session daemon."""
        q = lambda *a: json.loads(self.incus(*a, "--project", name, "--format=json"))  # noqa: E731
        if name not in {p["name"] for p in json.loads(self.incus("project", "list",
                                                                 "--format=json"))}:
            return
        for inst in q("list"):
            for attempt in range(100):  # an interrupted create may still hold the instance
                try:
                    self.incus("delete", "--force", inst["name"], "--project", name)
                    break
                except subprocess.CalledProcessError as e:
                    if "busy" not in str(e) or attempt == 99:
                        raise
                    time.sleep(0.3)
        project = json.loads(self.incus("query", f"/1.0/projects/{name}"))
        cfg = project.get("config") or {}
        if cfg.get("features.images") == "true":
            for img in q("image", "list"):
                self.incus("image", "delete", img["fingerprint"], "--project", name)
        if cfg.get("features.storage.volumes") == "true":
            for vol in q("storage", "volume", "list", "default"):
                if vol.get("type") == "custom":
                    self.incus("storage", "volume", "delete", "default", vol["name"],
                               "--project", name)
        if cfg.get("features.networks") == "true":
            for net in q("network", "list"):
                if net.get("managed"):
                    self.incus("network", "delete", net["name"], "--project", name)
        if cfg.get("features.profiles") == "true":
            for prof in q("profile", "list"):
                if prof["name"] != "default":
                    self.incus("profile", "delete", prof["name"], "--project", name)
        if name != "default":
            self.incus("project", "delete", name)
            # the domain's bridge and ACL live in the default project (features.networks=false):
            # gone with it, so that later tests on the shared daemon do not meet them
            for kind, obj in (("network", f"net-{name}"), ("network acl", f"acl-{name}")):
                found = self.incus(*kind.split(), "show", obj, check=False)
                if "user.anklume.managed" in found:
                    self.incus(*kind.split(), "delete", obj, check=False)  # best effort: cleanup

    def _import_image(self, files: images.ImageFiles, alias: str, project: str) -> str:
        fingerprint = files.fingerprint
        listing = json.loads(self.incus("image", "list", "--project", project,
                                        "--format=json"))
        have = {img["fingerprint"]: img for img in listing}
        if fingerprint not in have:
            self.incus("image", "import", str(files.meta), str(files.rootfs),
                       "--project", project)
        aliases = {a["name"] for img in listing for a in img.get("aliases") or []}
        current = None
        if alias in aliases:
            current = next(img["fingerprint"] for img in listing
                           if any(a["name"] == alias for a in img.get("aliases") or []))
        if current != fingerprint:
            if current is not None:
                self.incus("image", "alias", "delete", alias, "--project", project)
            self.incus("image", "alias", "create", alias, fingerprint, "--project", project)
        return fingerprint

    def ensure_busybox_image(self, alias: str = "busybox", project: str = "default") -> str:
        """Import the (cached, deterministic) busybox image under alias; return its fingerprint."""
        return self._import_image(images.busybox_image_files(), alias, project)

    def ensure_debian_python_image(self, alias: str = "debian-python",
                                   project: str = "default") -> str:
        """Import the (cached) minimal Debian 12 + python3 image; builds it once (~35 s)."""
        return self._import_image(images.debian_python_image_files(), alias, project)

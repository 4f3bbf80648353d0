"""A real multi-member Incus cluster on this one machine, for integration tests.

    with PrivateCluster(members=3) as cl:
        cl.ensure_busybox_image()
        cl.incus("launch", "busybox", "c1", "--target", "m3")
        cl.client("m1").instances.get("c1").location        # "m3"
        cl.kill_member("m2"); cl.wait_status("m2", "Offline", timeout=60)
        cl.restart_member("m2")                             # ready and Online again

Layout (k counts the clusters this test process started, n the members):

- namespace `anklume-cl-<pid>-<k>-hub` holds a bridge `br0`;
- namespace `anklume-cl-<pid>-<k>-m<n>` holds `eth0` 192.0.2.<n>/24, a veth whose peer `v<n>`
  is on the hub's bridge. TEST-NET-1, no default route: the cluster traffic (https on :8443)
  never leaves our namespaces;
- temp dir `anklume-cluster-*` (owner file: our PID) with `m<n>/` (that member's INCUS_DIR),
  `m<n>.log`, and `cli/` (INCUS_CONF). /var/lib/incus is never used: every CLI call gets
  INCUS_DIR and INCUS_CONF.

Member 1 gets the storage pool `default` (dir), the default profile's root disk, its https
address and `cluster enable m1`; the others join with a token and `incus admin init --preseed`
run inside their own namespace (the joining client connects to the address in the token).
No network and no project are created: the code under test makes its own.

Teardown stops only what this object started: the daemons by PID, then whatever still lives
in its namespaces (dnsmasq, `[lxc monitor]`, container payloads) and their descendants; then
mounts, the temp dir, liblxc's lock dir for it and the namespaces go. `cleanup_stale()` does
the same for namespaces and temp dirs left by a dead test process.

Measured here (Incus 6.0.4, 2 CPUs): 3 members Online 1.6-2.3 s after start (daemons ready
~0.9 s); a killed member is Offline 7.4-10 s later (`cluster.offline_threshold` 11 s, the
minimum Incus accepts); restarted, it is ready in 0.7-1.2 s and Online at the next heartbeat,
1-7.4 s in all. While a member is down its instances list with status Error, and anything
routed to it (`incus info/exec`, `GET /1.0/resources?target=<it>`, `launch --target <it>`)
fails with `Server isn't ready yet` or `connection refused`; an untargeted launch goes to a
live member.
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
from dataclasses import dataclass, field
from pathlib import Path

from . import images
from .incusd import INCUSD_CANDIDATES, _destroy_netns, _remove_lxc_locks, _unmount_under, sweep_stale
from .procs import (
    StartedOnEnter,
    each_process,
    SETUP_HINT,
    SetupError,
    find_binary,
    pid_alive,
    require_root,
    run,
    tail,
    wait_until,
)

TMP_PREFIX = "anklume-cluster-"
OWNER_FILE = "owner"
NETNS_PREFIX = "anklume-cl-"
_NETNS_RE = re.compile(r"^anklume-cl-(\d+)-\d+-(?:hub|m\d+)$")
SUBNET = "192.0.2"  # TEST-NET-1 (RFC 5737): nothing real lives there
PORT = 8443
MAX_MEMBERS = 9
DAEMON_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
LXC_LOCK_ROOT = Path("/run/lxc/lock")
#: the smallest value Incus accepts ("Value must be greater than '10'")
MIN_OFFLINE_THRESHOLD = 11

_counter = itertools.count(1)


def check_prerequisites() -> None:
    """Raise SetupError (with the setup.sh hint) if this machine cannot run PrivateCluster."""
    require_root()
    find_binary(*INCUSD_CANDIDATES)
    find_binary("incus")
    find_binary("ip")
    find_binary("dnsmasq")  # the bridges that the code under test creates need it
    if not os.path.exists("/bin/busybox"):
        raise SetupError(f"busybox-static not installed; {SETUP_HINT}")


# --- cleanup helpers ------------------------------------------------------------------------------


def _lock_dir(tmp: Path) -> Path:
    return LXC_LOCK_ROOT / tmp.resolve().relative_to("/")


def _processes_mentioning(text: str) -> list[tuple[int, str]]:
    """(pid, command line) of every process whose command line contains text."""
    needle = text.encode()
    return [(pid, cmdline.replace(b"\0", b" ").decode(errors="replace")) for pid, cmdline in each_process("cmdline")
            if pid != os.getpid() and needle in cmdline and pid_alive(pid)]


def _netns_names() -> list[str]:
    listing = run(["ip", "netns", "list"], check=False).stdout
    return [line.split()[0] for line in listing.splitlines() if line.split()]


def cleanup_stale(base_dir: str | None = None) -> list[str]:
    """Remove what an earlier test process (now dead, e.g. SIGKILLed) left: namespaces named
    anklume-cl-<pid>-<k>-{hub,m<n>} (with the daemons and containers living in them) and
    temp dirs anklume-cluster-* whose owner file names a dead PID."""
    return sweep_stale(_NETNS_RE, TMP_PREFIX, base_dir)


# --- the cluster ----------------------------------------------------------------------------------


@dataclass
class Member:
    """One cluster member: its own namespace, INCUS_DIR, address and incusd process."""

    name: str  # m<n>
    index: int  # n, 1-based
    dir: Path  # INCUS_DIR
    netns: str
    address: str  # 192.0.2.<n>:8443
    log_path: Path
    proc: subprocess.Popen | None = field(default=None, repr=False)

    @property
    def socket(self) -> str:
        return str(self.dir / "unix.socket")

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


class PrivateCluster(StartedOnEnter):
    """N incusd daemons, each in a network namespace of its own, clustered. Context manager."""

    def __init__(self, members: int = 3, *, offline_threshold: int = MIN_OFFLINE_THRESHOLD,
                 start_timeout: float = 90.0, stop_grace: float = 2.0,
                 base_dir: str | None = None) -> None:
        if not 1 <= members <= MAX_MEMBERS:
            raise ValueError(f"members must be 1..{MAX_MEMBERS}, not {members}")
        if offline_threshold < MIN_OFFLINE_THRESHOLD:
            raise ValueError(f"Incus refuses cluster.offline_threshold < {MIN_OFFLINE_THRESHOLD}")
        self.size = members
        self.offline_threshold = offline_threshold
        self.start_timeout = start_timeout
        self.stop_grace = stop_grace
        self._base_dir = base_dir
        self.prefix: str | None = None  # anklume-cl-<pid>-<k>
        self.hub_netns: str | None = None
        self.tmp: Path | None = None
        self.members: list[Member] = []
        self._netns_made: list[str] = []
        self._log_files: dict[str, object] = {}
        self._clients: dict[str, object] = {}
        self.startup_seconds: float | None = None
        #: figures measured by the harness or its tests (name -> seconds), for the summary
        self.timings: dict[str, float] = {}

    # --- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        check_prerequisites()
        t0 = time.monotonic()
        cleanup_stale(self._base_dir)
        self.prefix = f"{NETNS_PREFIX}{os.getpid()}-{next(_counter)}"
        self.tmp = Path(tempfile.mkdtemp(prefix=TMP_PREFIX, dir=self._base_dir))
        os.chmod(self.tmp, 0o711)  # containers' idmapped paths need traversal
        (self.tmp / OWNER_FILE).write_text(f"{os.getpid()} {self.prefix}\n")
        (self.tmp / "cli").mkdir(mode=0o700)
        for n in range(1, self.size + 1):
            d = self.tmp / f"m{n}"
            d.mkdir()
            os.chmod(d, 0o711)
            self.members.append(Member(
                name=f"m{n}", index=n, dir=d, netns=f"{self.prefix}-m{n}",
                address=f"{SUBNET}.{n}:{PORT}", log_path=self.tmp / f"m{n}.log"))
        try:
            self._make_network()
            for m in self.members:
                self._spawn(m)
            for m in self.members:
                self._wait_ready(m)
            self.timings["cluster daemons ready"] = time.monotonic() - t0
            self._bootstrap_first()
            for m in self.members[1:]:
                self._join(m)
            self.wait_online(timeout=self.start_timeout)
        except Exception as e:
            raise RuntimeError(f"private cluster failed to start: {e}\n{self._log_tails()}") from e
        self.startup_seconds = time.monotonic() - t0

    def _make_network(self) -> None:
        ip = find_binary("ip")
        hub = f"{self.prefix}-hub"
        run([ip, "netns", "add", hub])
        self._netns_made.append(hub)
        self.hub_netns = hub
        run([ip, "-n", hub, "link", "set", "lo", "up"])
        run([ip, "-n", hub, "link", "add", "br0", "type", "bridge"])
        run([ip, "-n", hub, "link", "set", "br0", "up"])
        for m in self.members:
            run([ip, "netns", "add", m.netns])
            self._netns_made.append(m.netns)
            run([ip, "-n", m.netns, "link", "set", "lo", "up"])
            run([ip, "-n", m.netns, "link", "add", "eth0", "type", "veth", "peer", "name",
                 f"v{m.index}", "netns", hub])
            run([ip, "-n", hub, "link", "set", f"v{m.index}", "master", "br0", "up"])
            run([ip, "-n", m.netns, "addr", "add", f"{SUBNET}.{m.index}/24", "dev", "eth0"])
            run([ip, "-n", m.netns, "link", "set", "eth0", "up"])

    def _spawn(self, m: Member) -> None:
        """Start m's incusd in its namespace (`ip netns exec` execs in place: proc.pid is
        incusd's PID)."""
        env = self.env(m.name)
        env["PATH"] = DAEMON_PATH  # a minimal, predictable PATH (it runs dnsmasq, ip, nft...)
        log = self._log_files.get(m.name)
        if log is None:
            log = self._log_files[m.name] = open(m.log_path, "ab")
        # a SIGKILLed daemon leaves its socket file: waiting for the socket must see a new one
        try:
            os.unlink(m.socket)
        except FileNotFoundError:
            pass
        m.proc = subprocess.Popen(
            [find_binary("ip"), "netns", "exec", m.netns, find_binary(*INCUSD_CANDIDATES),
             "--group", "root"],
            env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def _wait_ready(self, m: Member) -> None:
        wait_until(lambda: os.path.exists(m.socket) or not m.alive(), self.start_timeout,
                   what=f"the {m.name} incusd socket")
        if not m.alive():
            raise RuntimeError(f"{m.name}: incusd exited ({m.proc.returncode})")
        self.incus("admin", "waitready", f"--timeout={int(self.start_timeout)}", member=m.name,
                   timeout=self.start_timeout + 5)

    def _bootstrap_first(self) -> None:
        m1 = self.members[0]
        # `incus admin init --minimal` looks for a free subnet: pool and root disk by hand.
        self.incus("storage", "create", "default", "dir")
        self.incus("profile", "device", "add", "default", "root", "disk", "path=/",
                   "pool=default")
        self.incus("config", "set", "core.https_address", m1.address)
        self.incus("cluster", "enable", m1.name)
        self.incus("config", "set", "cluster.offline_threshold", str(self.offline_threshold))

    def _join(self, m: Member) -> None:
        token = self.incus("cluster", "add", m.name, "--quiet").strip()
        pools = json.loads(self.incus("storage", "list", "--format=json"))
        preseed = {"cluster": {
            "enabled": True,
            "server_name": m.name,
            "server_address": m.address,
            "cluster_token": token,
            "member_config": [{"entity": "storage-pool", "name": p["name"], "key": "source",
                               "value": ""} for p in pools],
        }}
        # JSON is YAML. The joining client connects to the cluster address in the token: it
        # must run inside the member's namespace (from the host: connection refused).
        run([find_binary("ip"), "netns", "exec", m.netns, find_binary("incus"), "admin", "init",
             "--preseed"], env=self.env(m.name), input=json.dumps(preseed),
            timeout=self.start_timeout)

    def stop(self) -> None:
        """Tear everything down; safe to call twice or after a failed start. Raises if
        something of ours is left (namespace, process, temp dir)."""
        errors: list[str] = []
        t0 = time.monotonic()
        if any(m.alive() for m in self.members):
            self._delete_instances()
        self._stop_daemons([m for m in self.members if m.proc is not None])
        for name in reversed(self._netns_made):  # members first, the hub last
            if os.path.exists(f"/run/netns/{name}"):
                problem = _destroy_netns(name)
                if problem:
                    errors.append(problem)
        self._netns_made = []
        for f in self._log_files.values():
            f.close()
        self._log_files = {}
        self._clients = {}
        if self.tmp is not None:
            tmp = self.tmp
            _unmount_under(tmp)
            left = _processes_mentioning(str(tmp) + "/")
            if left:
                errors.append(f"processes of {tmp} survive: {left}")
            if os.environ.get("ANKLUME_KEEP_INCUS_DIR"):
                print(f"keeping {tmp} (ANKLUME_KEEP_INCUS_DIR)")
            else:
                shutil.rmtree(tmp, ignore_errors=True)
                if tmp.exists():
                    errors.append(f"could not remove {tmp}")
                _remove_lxc_locks(tmp, TMP_PREFIX)
                if _lock_dir(tmp).exists():
                    errors.append(f"could not remove {_lock_dir(tmp)}")
            self.tmp = None
        if self.prefix is not None:
            left_ns = [n for n in _netns_names() if n.startswith(self.prefix + "-")]
            if left_ns:
                errors.append(f"namespaces left: {left_ns}")
        if self.members:
            self.timings["cluster stop"] = time.monotonic() - t0
        self.members = []
        if errors:
            raise RuntimeError("private cluster teardown: " + "; ".join(errors))

    def _delete_instances(self) -> None:
        """Delete every instance (all projects) through a live member; those on a dead member
        cannot be (their processes are killed with its namespace)."""
        try:
            member = self._live_member()
            listing = json.loads(self.incus("list", "--all-projects", "--format=json",
                                            member=member, timeout=30))
        except Exception as e:  # the cluster may be wedged: the kills that follow handle it
            print(f"private cluster: listing instances failed: {e}", file=sys.stderr)
            return
        live = {m.name for m in self.members if m.alive()}
        for inst in listing:
            if inst.get("location") not in live:
                continue
            try:
                self.incus("delete", "--force", "--project", inst.get("project", "default"),
                           inst["name"], member=member, check=False, timeout=30)
            except subprocess.TimeoutExpired:
                print(f"private cluster: deleting {inst['name']} timed out", file=sys.stderr)

    def _stop_daemons(self, members: list[Member]) -> None:
        """SIGTERM (incusd leaves its instances running), SIGKILL after the grace period: with
        all members stopping at once, the last one waits for a quorum that is gone (measured:
        two exit in 0.1-0.3 s, the third never); the state is discarded anyway."""
        live = [m for m in members if m.alive()]
        for m in live:
            m.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.stop_grace
        for m in live:
            try:
                m.proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                m.proc.kill()
        for m in members:
            if m.proc is not None:
                m.proc.wait(timeout=30)  # reap

    # --- access --------------------------------------------------------------------------------

    def member(self, name_or_index: str | int = "m1") -> Member:
        """A member by name ("m2") or 1-based number (2)."""
        for m in self.members:
            if name_or_index in (m.name, m.index):
                return m
        raise KeyError(f"no member {name_or_index!r} in {[m.name for m in self.members]}")

    def socket(self, name_or_index: str | int = "m1") -> str:
        return self.member(name_or_index).socket

    def env(self, member: str | int = "m1") -> dict[str, str]:
        """Environment for the incus CLI to talk to that member's daemon (never
        /var/lib/incus, never ~/.config/incus)."""
        assert self.tmp is not None, "cluster not started"
        env = dict(os.environ)
        env["INCUS_DIR"] = str(self.member(member).dir)
        env["INCUS_CONF"] = str(self.tmp / "cli")
        env.pop("INCUS_REMOTE", None)
        env.pop("INCUS_PROJECT", None)
        return env

    def incus(self, *args: str, member: str | int = "m1", input: str | None = None,
              check: bool = True, timeout: float = 120) -> str:
        """Run the incus CLI against a member's unix socket; return stdout (raise with stderr
        on error). Any live member sees the whole cluster."""
        argv = [find_binary("incus"), *args]
        return run(argv, env=self.env(member), input=input, check=check, timeout=timeout).stdout

    def client(self, member: str | int = "m1", project: str | None = None):
        """A pylxd.Client over that member's unix socket (cached for project=None)."""
        import pylxd

        m = self.member(member)
        if project is not None:
            return pylxd.Client(endpoint=m.socket, project=project)
        if m.name not in self._clients:
            self._clients[m.name] = pylxd.Client(endpoint=m.socket)
        return self._clients[m.name]

    def query(self, path: str, member: str | int | None = None, timeout: float = 30):
        """GET an API path (`/1.0/...`) through a member (default: a live one); the metadata."""
        member = member if member is not None else self._live_member()
        return json.loads(self.incus("query", path, member=member, timeout=timeout))

    def _live_member(self, avoid: str | None = None) -> str:
        live = [m.name for m in self.members if m.alive()]
        if not live:
            raise RuntimeError("no cluster member is running")
        preferred = [n for n in live if n != avoid]
        return (preferred or live)[0]

    # --- cluster state ---------------------------------------------------------------------------

    def member_status(self, name: str) -> str:
        """The cluster's own view of a member: "Online", "Offline", "Evacuated", ... (asked of
        another live member when there is one)."""
        return self.query(f"/1.0/cluster/members/{name}",
                          member=self._live_member(avoid=name))["status"]

    def statuses(self) -> dict[str, str]:
        """name -> status of every member, as the cluster sees them."""
        listing = self.query("/1.0/cluster/members?recursion=1")
        return {m["server_name"]: m["status"] for m in listing}

    def wait_status(self, name: str, status: str, timeout: float = 60.0,
                    interval: float = 0.2) -> float:
        """Poll the cluster until `name` has `status`; return the seconds it took. Raises
        TimeoutError with the last status and the log tails."""
        t0 = time.monotonic()
        last = "?"
        while True:
            try:
                last = self.member_status(name)
            except Exception as e:  # a member answering "not ready" while it starts
                last = f"error: {e}"
            if last == status:
                return time.monotonic() - t0
            if time.monotonic() - t0 > timeout:
                raise TimeoutError(f"{name} not {status} after {timeout:.0f}s (last: {last})\n"
                                   f"{self._log_tails()}")
            time.sleep(interval)

    def wait_reachable(self, name: str, timeout: float = 60.0, interval: float = 0.2) -> float:
        """Poll until every live member reaches `name` (`GET /1.0/resources?target=<name>` through
        each): a member the leader lists Online may still be "not ready" in another member's view
        until its next heartbeat reaches it. Returns the seconds it took."""
        t0 = time.monotonic()
        for other in [m.name for m in self.members if m.alive()]:
            while True:
                try:
                    self.query(f"/1.0/resources?target={name}", member=other)
                    break
                except Exception as e:  # "Server isn't ready yet", seen right after a restart
                    if time.monotonic() - t0 > timeout:
                        raise TimeoutError(f"{other} does not reach {name} after {timeout:.0f}s: {e}") from e
                    time.sleep(interval)
        return time.monotonic() - t0

    def wait_online(self, timeout: float = 60.0) -> float:
        """Poll until every member is Online; return the seconds it took."""
        t0 = time.monotonic()
        last: dict[str, str] | str = {}
        while True:
            try:
                last = self.statuses()
                if len(last) == len(self.members) and all(s == "Online" for s in last.values()):
                    return time.monotonic() - t0
            except Exception as e:
                last = f"error: {e}"
            if time.monotonic() - t0 > timeout:
                raise TimeoutError(f"not all members Online after {timeout:.0f}s: {last}")
            time.sleep(0.2)

    def kill_member(self, name: str, grace: float = 5.0) -> None:
        """Stop a member's daemon as a crash would: SIGTERM by its PID, SIGKILL after `grace`.
        Its containers stay running (incusd leaves them on SIGTERM)."""
        m = self.member(name)
        if not m.alive():
            raise RuntimeError(f"{name} is not running")
        self._clients.pop(m.name, None)
        m.proc.send_signal(signal.SIGTERM)
        try:
            m.proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            m.proc.kill()
            m.proc.wait(timeout=30)

    def restart_member(self, name: str, timeout: float = 90.0) -> float:
        """Start a stopped member's incusd again in its namespace; wait until it is ready and
        the cluster sees it Online. Returns the seconds it took."""
        m = self.member(name)
        if m.alive():
            raise RuntimeError(f"{name} is still running")
        t0 = time.monotonic()
        self._clients.pop(m.name, None)
        self._spawn(m)
        try:
            self._wait_ready(m)
            self.wait_status(name, "Online", timeout=max(1.0, timeout - (time.monotonic() - t0)))
            self.wait_reachable(name, timeout=max(1.0, timeout - (time.monotonic() - t0)))
        except Exception as e:
            raise RuntimeError(f"{name} did not come back: {e}\n{self._log_tails()}") from e
        return time.monotonic() - t0

    def _log_tails(self, n: int = 15) -> str:
        return "\n".join(f"--- {m.log_path} ---\n{tail(str(m.log_path), n)}"
                         for m in self.members)

    # --- helpers for tests -----------------------------------------------------------------------

    def create_project(self, name: str, config: dict[str, str] | None = None,
                       pool: str = "default") -> None:
        """Create a project; if it has its own profiles, give its default profile a root disk
        (else launches fail: `No root device could be found`)."""
        config_args = [a for k, v in (config or {}).items() for a in ("-c", f"{k}={v}")]
        self.incus("project", "create", name, *config_args)
        profile = self.query(f"/1.0/profiles/default?project={name}", member="m1")
        if "root" not in (profile.get("devices") or {}):
            self.incus("profile", "device", "add", "default", "root", "disk", "path=/",
                       f"pool={pool}", "--project", name)

    def purge_project(self, name: str) -> None:
        """Delete a project and everything in it (instances, images, custom volumes, profiles,
        networks), then its `net-<name>` bridge and `acl-<name>` ACL in the default project if
        anklume made them. Through a live member; instances on a dead member cannot go."""
        member = self._live_member()
        inc = lambda *a, **kw: self.incus(*a, member=member, **kw)  # noqa: E731
        q = lambda *a: json.loads(inc(*a, "--project", name, "--format=json"))  # noqa: E731
        if name not in {p["name"] for p in json.loads(inc("project", "list", "--format=json"))}:
            return
        for inst in q("list"):
            for attempt in range(100):  # an interrupted create may still hold the instance
                try:
                    inc("delete", "--force", inst["name"], "--project", name)
                    break
                except subprocess.CalledProcessError as e:
                    if "busy" not in str(e) or attempt == 99:
                        raise
                    time.sleep(0.3)
        cfg = self.query(f"/1.0/projects/{name}", member=member).get("config") or {}
        if cfg.get("features.images") == "true":
            for img in q("image", "list"):
                inc("image", "delete", img["fingerprint"], "--project", name)
        if cfg.get("features.storage.volumes") == "true":
            for pool in json.loads(inc("storage", "list", "--format=json")):
                for vol in q("storage", "volume", "list", pool["name"]):
                    if vol.get("type") != "custom":
                        continue
                    # with dir pools a custom volume lives on one member, and two members may
                    # hold one of the same name: say which (unambiguous names work without)
                    target = ["--target", vol["location"]] if vol.get("location") else []
                    inc("storage", "volume", "delete", pool["name"], vol["name"], *target,
                        "--project", name)
        if cfg.get("features.networks") == "true":
            for net in q("network", "list"):
                if net.get("managed"):
                    inc("network", "delete", net["name"], "--project", name)
        if cfg.get("features.profiles") == "true":
            for prof in q("profile", "list"):
                if prof["name"] != "default":
                    inc("profile", "delete", prof["name"], "--project", name)
        if name != "default":
            inc("project", "delete", name)
            for kind, obj in (("network", f"net-{name}"), ("network acl", f"acl-{name}")):
                found = inc(*kind.split(), "show", obj, check=False)
                if "user.anklume.managed" in found:
                    inc(*kind.split(), "delete", obj, check=False)  # best effort: cleanup

    def ensure_busybox_image(self, alias: str = "busybox", project: str = "default") -> str:
        """Import the (cached, deterministic) busybox image once into the cluster under alias;
        return its fingerprint. Members fetch it from each other on first use."""
        return self._import_image(images.busybox_image_files(), alias, project)

    def ensure_debian_python_image(self, alias: str = "debian-python", project: str = "default") -> str:
        """Import the (cached) minimal Debian 12 + python3 image; builds it once (~35 s)."""
        return self._import_image(images.debian_python_image_files(), alias, project)

    def _import_image(self, files: images.ImageFiles, alias: str, project: str) -> str:
        member = self._live_member()
        fingerprint = files.fingerprint
        listing = json.loads(self.incus("image", "list", "--project", project, "--format=json",
                                        member=member))
        if fingerprint not in {img["fingerprint"] for img in listing}:
            self.incus("image", "import", str(files.meta), str(files.rootfs), "--project",
                       project, member=member)
        current = next((img["fingerprint"] for img in listing
                        if any(a["name"] == alias for a in img.get("aliases") or [])), None)
        if current != fingerprint:
            if current is not None:
                self.incus("image", "alias", "delete", alias, "--project", project,
                           member=member)
            self.incus("image", "alias", "create", alias, fingerprint, "--project", project,
                       member=member)
        return fingerprint

    def namespace_pids(self, member: str | int = "m1") -> list[int]:
        """PIDs living in that member's network namespace (incusd, dnsmasq, lxc monitors)."""
        proc = run(["ip", "netns", "pids", self.member(member).netns], check=False)
        return [int(x) for x in proc.stdout.split() if x.isdigit()]

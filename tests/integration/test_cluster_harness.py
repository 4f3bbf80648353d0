"""The cluster harness itself (tests/support/cluster.py), against real incusd daemons: members
Online, placement with --target, a member killed and restarted, a teardown that leaves nothing.

Bounds come from the figures measured on this machine (Incus 6.0.4): a killed member shows
Offline about one offline threshold (11 s) later, and comes back Online in 2-13 s.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from tests.support import cluster as cluster_support
from tests.support.cluster import PrivateCluster, cleanup_stale
from tests.support.procs import CommandError, pid_alive, run

OFFLINE_BOUND = 45.0  # threshold 11 s plus heartbeat rounds; measured ~10 s
ONLINE_BOUND = 60.0  # measured 2-13 s (the next heartbeat)


def _instances(cl, project: str, member: str = "m1") -> dict[str, dict]:
    listing = json.loads(cl.incus("list", "--project", project, "--format=json", member=member))
    return {i["name"]: i for i in listing}


def test_three_members_online_each_in_its_namespace(cluster):
    assert [m.name for m in cluster.members] == ["m1", "m2", "m3"]
    assert cluster.statuses() == {"m1": "Online", "m2": "Online", "m3": "Online"}
    rows = [line.split(",") for line in cluster.incus("cluster", "list", "-f", "csv").splitlines()]
    assert sorted((r[0], r[1]) for r in rows) == [
        ("m1", "https://192.0.2.1:8443"), ("m2", "https://192.0.2.2:8443"),
        ("m3", "https://192.0.2.3:8443")]
    assert all("ONLINE" in r for r in rows)
    own_netns = os.readlink(f"/proc/{os.getpid()}/ns/net")
    seen = set()
    for m in cluster.members:
        assert m.alive() and m.pid in cluster.namespace_pids(m.name)
        assert not m.socket.startswith("/var/lib/incus") and os.path.exists(m.socket)
        ns = os.readlink(f"/proc/{m.pid}/ns/net")
        assert ns != own_netns and ns not in seen
        seen.add(ns)
        # every member answers for the whole cluster, over its own socket
        assert cluster.client(m.name).host_info["environment"]["server_name"] == m.name
        assert len(cluster.client(m.name).cluster.members.all()) == 3
    assert cluster.incus("config", "get", "cluster.offline_threshold").strip() == "11"
    # nothing made for the code under test: no managed network, only the default project
    nets = json.loads(cluster.incus("network", "list", "--format=json"))
    assert [n["name"] for n in nets if n["managed"]] == []
    assert "busybox" in cluster.incus("image", "alias", "list", "-f", "csv")


def test_launch_with_target_lands_on_that_member(cluster):
    project = "cltarget"
    cluster.purge_project(project)
    cluster.create_project(project, {"features.profiles": "true"})
    try:
        cluster.ensure_busybox_image(project=project)
        t0 = time.monotonic()
        cluster.incus("launch", "busybox", "c1", "--target", "m3", "--project", project)
        cluster.timings["cluster launch --target m3"] = time.monotonic() - t0
        assert _instances(cluster, project)["c1"]["location"] == "m3"
        assert cluster.client("m2", project=project).instances.get("c1").location == "m3"
        # exec through m1 is forwarded to m3
        out = cluster.incus("exec", "c1", "--project", project, "--", "cat", "/etc/hostname")
        assert out.strip() == "c1"
        # a custom volume of a dir pool lives on one member (purge_project names it)
        cluster.incus("storage", "volume", "create", "default", "v1", "--target", "m2",
                      "--project", project)
        vols = json.loads(cluster.incus("storage", "volume", "list", "default", "--project",
                                        project, "--format=json"))
        assert [(v["name"], v["location"]) for v in vols if v["type"] == "custom"] == [("v1", "m2")]
    finally:
        cluster.purge_project(project)
    assert project not in cluster.incus("project", "list", "-f", "csv")


def test_kill_member_goes_offline_then_restart_brings_it_back(cluster):
    project = "clkill"
    cluster.purge_project(project)
    cluster.create_project(project, {"features.images": "false"})
    try:
        cluster.incus("launch", "busybox", "on-m2", "--target", "m2", "--project", project)
        pid = cluster.member("m2").pid
        t0 = time.monotonic()
        cluster.kill_member("m2")
        assert not pid_alive(pid)
        elapsed = cluster.wait_status("m2", "Offline", timeout=OFFLINE_BOUND)
        offline = time.monotonic() - t0
        cluster.timings["cluster m2 Offline after kill"] = offline
        assert elapsed <= OFFLINE_BOUND
        assert cluster.statuses() == {"m1": "Online", "m2": "Offline", "m3": "Online"}

        # what the rest of the cluster sees while m2 is down
        listed = _instances(cluster, project)
        assert listed["on-m2"]["location"] == "m2" and listed["on-m2"]["status"] == "Error"
        with pytest.raises(CommandError):
            cluster.incus("query", "/1.0/resources?target=m2", timeout=30)
        with pytest.raises(CommandError):
            cluster.incus("launch", "busybox", "c-target", "--target", "m2", "--project", project)
        cluster.incus("launch", "busybox", "c-any", "--project", project)  # placed on a live one
        assert _instances(cluster, project)["c-any"]["location"] in ("m1", "m3")

        back = cluster.restart_member("m2", timeout=ONLINE_BOUND)
        cluster.timings["cluster m2 restart to Online"] = back
        assert cluster.member("m2").pid != pid
        assert cluster.statuses() == {"m1": "Online", "m2": "Online", "m3": "Online"}
        # SIGTERM left its container running: it is Running again once m2 is back
        assert _instances(cluster, project)["on-m2"]["status"] == "Running"
    finally:
        cluster.purge_project(project)


def test_teardown_leaves_nothing_even_with_a_dead_member():
    cl = PrivateCluster(members=2)
    with cl:
        prefix, tmp = cl.prefix, cl.tmp
        cl.ensure_busybox_image()
        cl.incus("launch", "busybox", "c2", "--target", "m2")
        cl.incus("launch", "busybox", "c1", "--target", "m1")
        pids = [m.pid for m in cl.members]
        monitors = [p for m in cl.members for p in cl.namespace_pids(m.name) if p not in pids]
        assert monitors  # the containers' [lxc monitor] processes
        cl.kill_member("m2")  # its container keeps running, out of the API's reach
    assert not [n for n in run(["ip", "netns", "list"]).stdout.split() if n.startswith(prefix)]
    assert not any(pid_alive(p) for p in pids + monitors)
    assert not tmp.exists()
    assert not (Path("/run/lxc/lock") / tmp.relative_to("/")).exists()
    assert not cluster_support._processes_mentioning(str(tmp))
    cl.stop()  # twice is harmless


def test_cleanup_stale_removes_what_a_dead_process_left():
    dead = subprocess.Popen(["true"])
    dead.wait()
    assert not pid_alive(dead.pid)
    prefix = f"{cluster_support.NETNS_PREFIX}{dead.pid}-1"
    tmp = Path(tempfile.mkdtemp(prefix=cluster_support.TMP_PREFIX))
    (tmp / cluster_support.OWNER_FILE).write_text(f"{dead.pid} {prefix}\n")
    ns = f"{prefix}-m1"
    run(["ip", "netns", "add", ns])
    orphan = subprocess.Popen(["ip", "netns", "exec", ns, "sleep", "300"],
                              start_new_session=True)
    try:
        cleaned = cleanup_stale()
        assert ns in cleaned and str(tmp) in cleaned
        assert orphan.wait(timeout=10) != 0  # killed
        assert not os.path.exists(f"/run/netns/{ns}") and not tmp.exists()
    finally:
        if orphan.poll() is None:
            orphan.kill()
            orphan.wait()
        if os.path.exists(f"/run/netns/{ns}"):
            run(["ip", "netns", "delete", ns], check=False)

"""anklume across a real 3-member Incus cluster (`tests.support.cluster.PrivateCluster`, started by
the `cluster` fixture): `lock` places the machines (explicitly and automatically) and pins it, `build`
creates each instance on its member, a no-op build writes nothing, `verify --live` is clean; a
changed target moves that machine only; a member that goes down blocks its units only, and the next
build, once it is back, converges."""

from __future__ import annotations

import itertools
import json
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from click.testing import CliRunner

from anklume.cli import main
from anklume.lock.codec import decode_lock
from tests.support.events import EventCounter

_ids = itertools.count(1)


class ClusterProject:
    """An infra.yml of 2 domains x 3 machines in a directory of its own, built with the CLI against
    member ``via`` of the cluster (any member answers for the whole cluster)."""

    def __init__(self, cluster, tmp_path: Path, via: str = "m2"):
        n = next(_ids)
        self.cluster = cluster
        self.root = tmp_path
        self.pro, self.perso = f"c{n}pro", f"c{n}perso"
        self.later = f"c{n}later"  # a domain a test may add
        self.sid = 20 + 3 * n
        self.env = {"ANKLUME_INCUS": cluster.socket(via), "ANKLUME_CACHE_DIR": str(tmp_path / "cache"),
                    "XDG_DATA_HOME": str(tmp_path / "data")}
        self.doc = {
            "project_name": f"cl{n}",
            "global": {"base_subnet": "10.120", "default_os_image": "local:busybox"},
            "domains": {
                self.pro: {"subnet_id": self.sid, "ephemeral": True, "machines": {
                    f"{self.pro}-a": {"target": "m1", "config": {"limits.cpu": 1}},  # explicit
                    f"{self.pro}-b": {"config": {"limits.cpu": 1}},  # automatic
                    f"{self.pro}-c": {"ephemeral": False},  # automatic, protected
                }},
                self.perso: {"subnet_id": self.sid + 1, "ephemeral": True, "target": "m3", "machines": {
                    f"{self.perso}-a": {"storage_volumes": {"shared": {"path": "/srv", "size": "16MiB"}}},
                    f"{self.perso}-b": {"target": "m2"},  # the machine's own, over the domain's
                    f"{self.perso}-c": {"storage_volumes": {"shared": {"path": "/srv", "size": "16MiB"}}},
                }},
            },
        }
        self.write()

    def machines(self) -> dict[str, str]:
        return {m: d for d, dom in self.doc["domains"].items() for m in dom["machines"]}

    def write(self) -> None:
        (self.root / "infra.yml").write_text(yaml.safe_dump(self.doc, sort_keys=False))

    def cli(self, *args: str, code: int | None = 0):
        result = CliRunner().invoke(main, [*args, "-f", str(self.root / "infra.yml")], env=self.env)
        if code is not None:
            assert result.exit_code == code, result.output
        return result

    def lock(self):
        return decode_lock((self.root / "anklume.lock").read_bytes())

    def placement(self) -> dict[str, str]:
        return {m: p.locked.member for m, p in self.lock().cluster.placement.items()}

    def built(self) -> dict[str, str]:
        """Locked and built: machine -> its member."""
        self.cli("lock")
        self.cli("build")
        return self.placement()

    def describe_all(self, text: str) -> None:
        """Every machine's description set to ``text``, then locked."""
        for domain in self.doc["domains"].values():
            for machine in domain["machines"].values():
                machine["description"] = text
        self.write()
        self.cli("lock")

    def descriptions(self) -> dict[str, str]:
        return {inst["name"]: inst.get("description") for project in (self.pro, self.perso)
                for inst in self.cluster.query(f"/1.0/instances?project={project}&recursion=1")}

    def locations(self) -> dict[str, str]:
        out = {}
        for project in self.doc["domains"]:
            for inst in json.loads(self.cluster.incus("query", f"/1.0/instances?project={project}&recursion=1")):
                out[inst["name"]] = inst["location"]
        return out

    def cleanup(self) -> None:
        projects = {p["name"] for p in self.cluster.query("/1.0/projects?recursion=1")}
        for project in (self.pro, self.perso, self.later):
            if project not in projects:
                continue
            for inst in self.cluster.query(f"/1.0/instances?project={project}&recursion=1") or []:
                if (inst.get("config") or {}).get("security.protection.delete") == "true":
                    self.cluster.incus("config", "unset", inst["name"], "security.protection.delete",
                                       "--project", project)
            self.cluster.purge_project(project)


@pytest.fixture
def project(cluster, tmp_path):
    cluster.ensure_busybox_image()
    ctx = ClusterProject(cluster, tmp_path)
    yield ctx
    for name in ("m1", "m2", "m3"):  # a test that stopped a member brings it back
        if cluster.member_status(name) != "Online":
            cluster.restart_member(name)
    ctx.cleanup()


def other_than(member: str) -> str:
    return next(m for m in ("m1", "m2", "m3") if m != member)


def counters(cluster):
    """One EventCounter per member: the API requests each member served, and the writes."""
    return {m.name: EventCounter(SimpleNamespace(env=cluster.env(m.name), socket=cluster.socket(m.name)))
            for m in cluster.members}


def test_build_places_every_machine_on_its_member_and_a_noop_writes_nothing(project):
    project.cli("lock")
    placed = project.placement()
    lock = project.lock()
    assert set(lock.cluster.members) == {"m1", "m2", "m3"}
    assert set(placed) == set(project.machines())
    # explicit placements, then the automatic ones, each with its reason
    assert placed[f"{project.pro}-a"] == "m1" and placed[f"{project.perso}-b"] == "m2"
    assert placed[f"{project.perso}-a"] == placed[f"{project.perso}-c"] == "m3"
    reasons = {m: p.locked.reason for m, p in lock.cluster.placement.items()}
    assert "machine" in reasons[f"{project.pro}-a"] and "domain" in reasons[f"{project.perso}-a"]
    assert all(reasons[m] for m in placed)
    # the same infra and the same cluster facts: the same bytes, from scratch
    first = (project.root / "anklume.lock").read_bytes()
    (project.root / "anklume.lock").unlink()
    project.cli("lock")
    assert (project.root / "anklume.lock").read_bytes() == first

    project.cli("build")
    assert project.locations() == placed
    volumes = project.cluster.query(f"/1.0/storage-pools/default/volumes/custom?project={project.perso}&recursion=1")
    assert [(v["name"], v["location"]) for v in volumes] == [("shared", "m3")]  # with the machines mounting it

    watch = counters(project.cluster)
    for counter in watch.values():
        counter.start()
    try:
        result = project.cli("build")
        for counter in watch.values():
            counter.flush()
    finally:
        for counter in watch.values():
            counter.stop()
    assert "nothing to do" in result.output
    assert {m: c.writes for m, c in watch.items()} == {"m1": 0, "m2": 0, "m3": 0}
    assert {m: c.api_writes for m, c in watch.items()} == {"m1": 0, "m2": 0, "m3": 0}
    project.cli("verify", "--live")


def test_a_changed_target_moves_that_machine_only(project):
    before = project.built()
    mover = f"{project.pro}-b"
    new = other_than(before[mover])
    project.doc["domains"][project.pro]["machines"][mover]["target"] = new
    project.write()
    project.cli("lock")
    after = project.placement()
    assert after == {**before, mover: new}

    plan = json.loads(project.cli("build", "--plan", "--json", code=2).output)
    pending = {c["unit"]: c["action"] for c in plan["changes"] if c["action"] != "unchanged"}
    assert pending == {f"instance:{mover}": "move"}
    project.cli("build")
    assert project.locations() == after
    project.cli("verify", "--live")
    project.cli("build")  # and then nothing to do


def test_a_member_down_blocks_its_units_and_the_next_build_converges(project):
    placed = project.built()
    down = "m3"
    on_down = sorted(m for m, member in placed.items() if member == down)
    assert on_down  # the domain perso is placed there
    # and a new domain on m1: Incus makes its bridge on every member, so it waits for m3 too
    project.doc["domains"][project.later] = {"subnet_id": project.sid + 2, "ephemeral": True, "target": "m1",
                                             "machines": {f"{project.later}-a": {}}}
    project.describe_all("after the outage")

    timeline = []
    t0 = time.monotonic()
    project.cluster.kill_member(down)
    timeline.append(("killed", time.monotonic() - t0))
    project.cluster.wait_status(down, "Offline", timeout=60)  # the cluster's own status
    timeline.append(("Offline", time.monotonic() - t0))

    plan = project.cli("build", "--plan", code=1)
    assert f"cluster member {down} is Offline" in plan.output
    result = project.cli("build", code=1)
    timeline.append(("build (member down)", time.monotonic() - t0))
    assert f"blocked: cluster member {down} is Offline" in result.output
    described = project.descriptions()
    for machine, member in placed.items():
        if member != down:
            assert described[machine] == "after the outage", machine
    assert f"network:{project.later}" in result.output and "(a bridge is made on every member)" in result.output
    assert f"net-{project.later}" not in {n["name"] for n in project.cluster.query("/1.0/networks?recursion=1")}

    project.cluster.restart_member(down)
    timeline.append(("Online again", time.monotonic() - t0))
    project.cli("build")
    timeline.append(("build converged", time.monotonic() - t0))
    project.cli("verify", "--live")
    assert project.locations() == {**placed, f"{project.later}-a": "m1"}
    print("outage timeline: " + ", ".join(f"{what} at {when:.1f} s" for what, when in timeline))


def test_exec_and_files_reach_instances_on_every_member(project):
    """What provisioning uses (artefacts, models, roles through the connection plugin): InstanceIO,
    through one member's socket, on instances of every member (the cluster routes it)."""
    import io

    from anklume.backends.incus import IncusBackend

    project.cli("lock")
    project.cli("build")
    backend = IncusBackend(project.cluster.socket("m1"))
    domains = project.machines()
    for machine, member in sorted(project.placement().items()):
        files = backend.instance_io(domains[machine], machine)
        payload = f"placed on {member}\n".encode() * 1000
        files.push("/root/probe.txt", payload)
        out = io.BytesIO()
        assert files.pull("/root/probe.txt", out) == len(payload) and out.getvalue() == payload
        result = files.exec(["sh", "-c", "busybox hostname; busybox wc -c < /root/probe.txt"])
        assert result.rc == 0
        assert result.stdout.decode().split() == [machine, str(len(payload))], (machine, member)


def test_a_hand_move_is_found_and_undone_and_a_protected_machine_moves_only_with_replace(project):
    placed = project.built()
    # moved by hand to another member: verify --live finds it, build moves it back
    loose = f"{project.pro}-b"
    elsewhere = other_than(placed[loose])
    for step in (["stop", "--force", loose], ["move", loose, "--target", elsewhere], ["start", loose]):
        project.cluster.incus(*step, "--project", project.pro)
    said = project.cli("verify", "--live", "--json", code=1).output  # (stderr's lines first)
    found = json.loads(said[said.index("{\n"):])["findings"]
    assert {"object": f"instance:{loose}", "field": "location", "expected": placed[loose],
            "actual": elsewhere} in found
    project.cli("build")
    assert project.locations()[loose] == placed[loose]

    # a protected machine (ephemeral: false) whose target changes: blocked, then moved with --replace
    kept = f"{project.pro}-c"
    new = other_than(placed[kept])
    project.doc["domains"][project.pro]["machines"][kept]["target"] = new
    project.write()
    project.cli("lock")
    result = project.cli("build", code=1)
    assert "pass --replace to move it" in result.output
    assert project.locations()[kept] == placed[kept]
    project.cli("build", "--replace")
    assert project.locations()[kept] == new
    config = project.cluster.query(f"/1.0/instances/{kept}?project={project.pro}")["config"]
    assert config["security.protection.delete"] == "true"
    project.cli("verify", "--live")


def test_a_role_runs_through_ansible_on_an_instance_of_another_member(cluster, tmp_path):
    """ansible-runner and the anklume_incus connection plugin, through m1's socket, into a Debian
    container that runs on m3 (the role of tests/integration/test_runner.py)."""
    from anklume.provision.runner import run_role
    from anklume.render.tree import render_tree
    from anklume.render.write import apply_tree, diff_tree
    from tests.integration.test_runner import DOMAIN, MACHINE, ROLES, TASKS, infra_doc
    from tests.units.infra import make_infra

    tree = tmp_path / "tree"
    apply_tree(diff_tree(tree, render_tree(make_infra(infra_doc()))))
    cluster.purge_project(DOMAIN)
    cluster.create_project(DOMAIN)
    try:
        cluster.ensure_debian_python_image(project=DOMAIN)
        cluster.incus("launch", "debian-python", MACHINE, "--project", DOMAIN, "--target", "m3")
        assert cluster.query(f"/1.0/instances/{MACHINE}?project={DOMAIN}")["location"] == "m3"
        result = run_role(tree_root=tree, domain=DOMAIN, machine=MACHINE, role="anklume_probe", roles_path=[ROLES],
                          endpoint=cluster.socket("m1"), work_dir=tmp_path / "work",
                          extravars={"probe_extra": "from extravars"})
        assert result.tasks == TASKS and result.changed == 5 and result.ok == 8
    finally:
        cluster.purge_project(DOMAIN)


def test_a_build_right_after_a_member_stops_applies_the_rest(project):
    """No wait for the cluster to see the member offline: whether Incus already says Offline or
    the member just does not answer, its units wait and everything else applies."""
    placed = project.built()
    project.describe_all("changed at once")
    project.cluster.kill_member("m3")
    result = project.cli("build", code=1)
    assert "blocked: cluster member m3 is " in result.output
    described = project.descriptions()
    assert {m: described[m] for m, member in placed.items() if member != "m3"} == \
        {m: "changed at once" for m, member in placed.items() if member != "m3"}
    project.cluster.wait_status("m3", "Offline", timeout=60)
    project.cluster.restart_member("m3")
    project.cli("build")
    project.cli("verify", "--live")


def test_lock_build_and_verify_over_https_through_another_member(project, tmp_path):
    """The way a user reaches a cluster from another machine: `incus remote add lab
    https://<member> --accept-certificate` (the CLI keeps the cluster's certificate, which names the
    host, 127.0.0.1 and ::1, not the member's address), then ANKLUME_INCUS=<that URL>.  anklume runs
    inside m1's namespace and talks https to m2 at 192.0.2.2, which forwards to m1 and m3.  The lock
    has the same bytes as over the unix socket; exec and files reach an instance on m3."""
    import os
    import subprocess
    import sys

    from tests.support.procs import find_binary

    cluster = project.cluster
    conf = tmp_path / "incus-cli"
    conf.mkdir()
    url = f"https://{cluster.member('m2').address}"
    env = {**os.environ, "INCUS_CONF": str(conf), **project.env, "ANKLUME_INCUS": url}
    env.pop("INCUS_DIR", None)
    ip, incus = find_binary("ip"), find_binary("incus")
    anklume = str(Path(sys.executable).parent / "anklume")

    def inside(*argv: str) -> subprocess.CompletedProcess:
        return subprocess.run([ip, "netns", "exec", cluster.member("m1").netns, *argv], env=env,
                              capture_output=True, text=True, timeout=300, check=False)

    made = subprocess.run([incus, "remote", "generate-certificate"], env=env, capture_output=True, text=True)
    assert made.returncode == 0, made.stderr
    cluster.incus("config", "trust", "add-certificate", str(conf / "client.crt"), "--name", "anklume-https-test")
    try:
        added = inside(incus, "remote", "add", "lab", url, "--accept-certificate")
        assert added.returncode == 0, added.stderr
        assert (conf / "servercerts" / "lab.crt").exists()
        infra = str(project.root / "infra.yml")
        for argv in (["lock"], ["build"], ["verify", "--live"]):
            done = inside(anklume, *argv, "-f", infra)
            assert done.returncode == 0, f"{argv}: {done.stdout}\n{done.stderr}"
        again = inside(anklume, "build", "-f", infra)
        assert again.returncode == 0 and "nothing to do" in again.stdout, again.stdout
        placed = project.placement()
        assert project.locations() == placed and set(placed.values()) == {"m1", "m2", "m3"}

        # exec and files through m2's https address, into an instance on m3
        on_m3 = next(m for m, member in placed.items() if member == "m3")
        domain = project.machines()[on_m3]
        probe = ("from anklume.backends.incus.client import IncusClient\n"
                 "from anklume.backends.incus.files import InstanceIO\n"
                 "import sys\n"
                 "io = InstanceIO(IncusClient(sys.argv[1]), sys.argv[2], sys.argv[3])\n"
                 "io.push('/tmp/over-https', b'pushed over https')\n"
                 "sys.stdout.write(io.exec(['cat', '/tmp/over-https']).stdout.decode())\n")
        done = inside(sys.executable, "-c", probe, url, domain, on_m3)
        assert done.returncode == 0 and done.stdout == "pushed over https", done.stderr

        # the same lock over the unix socket
        over_https = (project.root / "anklume.lock").read_bytes()
        (project.root / "anklume.lock").unlink()
        project.cli("lock")
        assert (project.root / "anklume.lock").read_bytes() == over_https
    finally:
        inside(incus, "remote", "remove", "lab")
        trusted = json.loads(cluster.incus("config", "trust", "list", "--format=json"))
        for cert in trusted:
            if cert.get("name") == "anklume-https-test":
                cluster.incus("config", "trust", "remove", cert["fingerprint"])

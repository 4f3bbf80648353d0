"""Shared helpers for the build / verify integration tests against the private incusd."""

from __future__ import annotations

import io
import itertools
import json
import time
from pathlib import Path

from rich.console import Console

from anklume.actions.build import do_apply
from anklume.store import SpecStore
from anklume.actions.verify import verify_live
from anklume.project import Project
from tests.support import images
from tests.units.infra import make_infra, make_lock

_ids = itertools.count(1)


class BuildEnv:
    """Distinct domain names and subnets per test (bridges are global); purged afterwards."""

    def __init__(self, incus, tmp_path: Path, fingerprint: str):
        n = next(_ids)
        self.incus = incus
        self.fp = fingerprint
        self.tag = f"b{n}"
        self.sid = 100 + 3 * n  # three subnets per test: 10.100.<sid..sid+2>
        self.project = Project(tmp_path / "infra.yml")
        self.project.infra_file.write_text("# the tests pass Infra and Lock directly\n")
        self.store = SpecStore(tmp_path / "specs")
        self.out = io.StringIO()
        self.domains: list[str] = []

    def dom(self, i: int) -> str:
        name = f"{self.tag}d{i}"
        if name not in self.domains:
            self.domains.append(name)
        return name

    def doc(self, *, image: str = "local:busybox") -> dict:
        """Two domains: d0 (ephemeral) with web + db (db protected, with a volume) and a declared
        profile; d1 (ephemeral) with app."""
        d0, d1 = self.dom(0), self.dom(1)
        s0, s1 = self.sid, self.sid + 1
        return {
            "project_name": "t",
            "global": {"base_subnet": "10.100", "default_os_image": image},
            "domains": {
                d0: {"subnet_id": s0, "description": "first domain", "ephemeral": True,
                     "profiles": {"extra": {"description": "extra profile",
                                            "config": {"user.note": "hello", "boot.autostart.priority": 5},
                                            "devices": {"scratch": {"type": "disk", "source": "/tmp",
                                                                    "path": "/mnt/scratch"}}}},
                     "machines": {
                         f"{d0}-web": {"ip": f"10.100.{s0}.10", "profiles": ["default", "extra"],
                                       "config": {"limits.cpu": 1, "security.nesting": True}},
                         f"{d0}-db": {"ip": f"10.100.{s0}.11", "ephemeral": False,
                                      "storage_volumes": {f"{d0}-data": {"size": "64MiB", "path": "/data"}}},
                     }},
                d1: {"subnet_id": s1, "ephemeral": True, "machines": {
                    f"{d1}-app": {"ip": f"10.100.{s1}.10"}}},
            },
        }

    def infra_lock(self, doc: dict, fingerprints: dict[str, str] | None = None):
        infra = make_infra(doc)
        return infra, make_lock(infra, fingerprints, default_fp=self.fp)

    def console(self) -> Console:
        self.out = io.StringIO()
        return Console(file=self.out, width=250, highlight=False)

    def build(self, infra, lock, *, plan_only: bool = False, prune: bool = False, replace: bool = False,
              as_json: bool = False, jobs: int = 4, adopt: tuple[str, ...] = (), deep: bool = False) -> int:
        extra = {"adopt": adopt} if adopt else {}
        if deep:
            extra["deep"] = True
        return do_apply(self.project, infra, lock, plan_only=plan_only, as_json=as_json, jobs=jobs, prune=prune,
                        replace=replace, endpoint=self.incus.socket, specs=self.store, console=self.console(),
                        **extra)

    def plan(self, infra, lock, **kw) -> dict[str, dict]:
        """``build --plan --json``: unit -> its change."""
        self.build(infra, lock, plan_only=True, as_json=True, **kw)
        return {c["unit"]: c for c in json.loads(self.out.getvalue())["changes"]}

    def images(self, project: str) -> list[dict]:
        return self.query(f"/1.0/images?project={project}&recursion=1")

    def backups(self, project: str) -> dict[str, str]:
        """The anklume-before-* aliases of a project: alias -> fingerprint."""
        return {a["name"]: i["fingerprint"] for i in self.images(project) for a in i.get("aliases") or []
                if a["name"].startswith("anklume-before-")}

    def sh(self, name: str, project: str, script: str) -> str:
        return self.incus.incus("exec", name, "--project", project, "--", "sh", "-c", script)

    def cat(self, name: str, project: str, *paths: str) -> str:
        """Files read inside an instance.  Incus sometimes loses the whole output of an exec run
        right after the instance started (status 0, nothing on stdout: seen with busybox): a
        marker printed last tells a lost output from an empty file, and the exec is run again."""
        for _ in range(10):
            out = self.sh(name, project, f"cat {' '.join(paths)}; echo '<end>'")
            if out.endswith("<end>\n"):
                return out[:-len("<end>\n")]
            time.sleep(0.3)
        raise AssertionError(f"exec in {name} returned no output 10 times")

    def verify(self, infra, lock) -> tuple[int, list[dict]]:
        rc = verify_live(self.project, infra, lock, as_json=True, endpoint=self.incus.socket,
                            console=self.console())
        return rc, json.loads(self.out.getvalue())["findings"]

    def query(self, path: str):
        return json.loads(self.incus.incus("query", path))

    def instance(self, name: str, project: str) -> dict:
        return self.query(f"/1.0/instances/{name}?project={project}")

    def cleanup(self) -> None:
        projects = {p["name"] for p in self.query("/1.0/projects?recursion=1")}
        for d in self.domains:
            if d not in projects:
                continue
            for inst in self.query(f"/1.0/instances?project={d}&recursion=1"):
                if inst["config"].get("security.protection.delete") == "true":
                    self.incus.incus("config", "unset", inst["name"], "security.protection.delete", "--project", d)
            self.incus.purge_project(d)
        nets = {n["name"] for n in json.loads(self.incus.incus("network", "list", "--format=json"))}
        for d in self.domains:
            if f"net-{d}" in nets:
                self.incus.incus("network", "delete", f"net-{d}")
        acls = {a["name"] for a in self.query("/1.0/network-acls?recursion=1")}
        for d in self.domains:  # after the bridges that used them
            if f"acl-{d}" in acls:
                self.incus.incus("network", "acl", "delete", f"acl-{d}")


def second_busybox(incus, tmp_path: Path, release: str = "v2") -> str:
    """The busybox rootfs with other metadata: another fingerprint, imported as busybox-<release>."""
    base = images.busybox_image_files()
    meta = tmp_path / f"meta-{release}.tar.gz"
    images.write_meta(meta, "busybox", release, f"anklume test busybox {release}")
    files = images.ImageFiles(meta, base.rootfs)
    return incus._import_image(files, f"busybox-{release}", "default")

"""`anklume lock`, `build` and `verify --live` against a REMOTE Incus over https, the way a user
reaches one: `incus remote add NAME URL --accept-certificate` (the Incus CLI keeps the server's
certificate in servercerts/NAME.crt and a client certificate the server trusts), then
ANKLUME_INCUS=URL.  The build runs a role, so the Ansible connection plugin goes over https too.

The private daemon listens on 127.0.0.1 of its own network namespace; anklume runs inside that
namespace (`ip netns exec`), so nothing leaves it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.support.procs import find_binary

URL = "https://127.0.0.1:18444"
DOMAIN = "rm"


def test_build_and_verify_a_remote_incus_over_https(incus, tmp_path):
    incus.ensure_debian_python_image("debian-python")
    conf = incus.env["INCUS_CONF"]
    if not Path(conf, "client.crt").exists():
        incus.incus("remote", "generate-certificate")
    incus.incus("config", "trust", "add-certificate", f"{conf}/client.crt", check=False)
    incus.incus("config", "set", "core.https_address", URL.removeprefix("https://"))
    ip = find_binary("ip")
    env = {**os.environ, "INCUS_CONF": conf, "ANKLUME_INCUS": URL, "ANKLUME_CACHE_DIR": str(tmp_path / "cache"),
           "XDG_DATA_HOME": str(tmp_path / "data")}
    env.pop("INCUS_DIR", None)
    anklume = str(Path(sys.executable).parent / "anklume")

    def inside(*argv: str) -> subprocess.CompletedProcess:
        return subprocess.run([ip, "netns", "exec", incus.netns, *argv], env=env, capture_output=True, text=True,
                              timeout=600, check=False)

    (tmp_path / "infra.yml").write_text(json.dumps({
        "project_name": "remote",
        "global": {"base_subnet": "10.121", "default_os_image": "local:debian-python"},
        "domains": {DOMAIN: {"subnet_id": 3, "ephemeral": True, "machines": {
            "rm-box": {"ip": "10.121.3.10", "roles": ["base_system"],
                       "vars": {"base_system_packages": [], "anklume_require_systemd": False}}}}},
    }))
    try:
        added = inside(find_binary("incus"), "remote", "add", "lab", URL, "--accept-certificate")
        assert added.returncode == 0, added.stderr
        assert Path(conf, "servercerts", "lab.crt").exists()
        infra = str(tmp_path / "infra.yml")
        for argv in (["lock"], ["build"], ["verify", "--live"]):
            done = inside(anklume, *argv, "-f", infra)
            assert done.returncode == 0, f"{argv}: {done.stdout}\n{done.stderr}"
        again = inside(anklume, "build", "-f", infra)
        assert again.returncode == 0 and "nothing to do" in again.stdout, again.stdout
        config = json.loads(incus.incus("query", f"/1.0/instances/rm-box?project={DOMAIN}"))["config"]
        assert any(k.startswith("user.anklume.unit.role.") for k in config)
    finally:
        incus.incus("config", "unset", "core.https_address")
        inside(find_binary("incus"), "remote", "remove", "lab")
        incus.purge_project(DOMAIN)
        nets = {n["name"] for n in json.loads(incus.incus("network", "list", "--format=json"))}
        if f"net-{DOMAIN}" in nets:
            incus.incus("network", "delete", f"net-{DOMAIN}")

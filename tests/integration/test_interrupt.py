"""Ctrl-C during `anklume build` against the private daemon: exit 130, as the README's table of exit
codes says, and the next build converges to a state `verify --live` finds clean."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from click.testing import CliRunner

from anklume.cli import main

README = Path(__file__).resolve().parents[2] / "README.md"
DOMAINS = ("int0", "int1")
INFRA = {
    "project_name": "interrupt",
    "global": {"base_subnet": "10.123", "default_os_image": "local:busybox"},
    "domains": {d: {"subnet_id": i + 1, "ephemeral": True, "machines": {
        f"{d}-a": {"ip": f"10.123.{i + 1}.10"}, f"{d}-b": {"ip": f"10.123.{i + 1}.11"}}}
        for i, d in enumerate(DOMAINS)},
}


def test_the_readme_documents_exit_130():
    table = README.read_text().split("## Commands and exit codes", 1)[1].split("\n\n", 2)[1]
    assert any(re.search(r"Ctrl-C.*\|\s*130\s*\|$", row) for row in table.splitlines()), table


def test_ctrl_c_mid_build_exits_130_then_the_next_build_converges(incus, tmp_path):
    incus.ensure_busybox_image()
    infra_file = tmp_path / "infra.yml"
    infra_file.write_text(json.dumps(INFRA, indent=2))  # JSON is YAML
    env = {"ANKLUME_INCUS": incus.socket, "ANKLUME_CACHE_DIR": str(tmp_path / "cache"),
           "XDG_DATA_HOME": str(tmp_path / "data")}
    try:
        assert CliRunner().invoke(main, ["lock", "-f", str(infra_file)], env=env).exit_code == 0
        anklume = str(Path(sys.executable).parent / "anklume")
        proc = subprocess.Popen([anklume, "build", "-f", str(infra_file)], env={**os.environ, **env},
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        # interrupt it once it writes (it holds the daemon's lease while it applies)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and proc.poll() is None and "user.anklume.lease" not in json.loads(
                incus.incus("query", "/1.0/projects/default"))["config"]:
            time.sleep(0.02)
        assert proc.poll() is None, proc.communicate()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 130, (out, err)
        assert "interrupted" in err

        result = CliRunner().invoke(main, ["build", "-f", str(infra_file)], env=env)
        assert result.exit_code == 0, result.output
        result = CliRunner().invoke(main, ["verify", "--live", "-f", str(infra_file)], env=env)
        assert result.exit_code == 0, result.output
    finally:
        for d in DOMAINS:
            incus.purge_project(d)
        nets = {n["name"] for n in json.loads(incus.incus("network", "list", "--format=json"))}
        for d in DOMAINS:
            if f"net-{d}" in nets:
                incus.incus("network", "delete", f"net-{d}")

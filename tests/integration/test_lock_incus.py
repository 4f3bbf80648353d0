"""`anklume lock` and `anklume gpus` against a real incusd (private, in a netns)."""

from __future__ import annotations

import json

from click.testing import CliRunner

from anklume.cli import main
from anklume.lock.codec import decode_lock
from anklume.resolve.gpus import parse_inventory_file

INFRA = """\
project_name: local-images
global:
  default_os_image: "local:busybox"
domains:
  lab:
    subnet_id: 1
    machines:
      box1: {ip: "10.100.1.10"}
      box2: {os_image: "busybox"}
"""


def test_local_alias_is_pinned_to_the_daemons_fingerprint(incus, tmp_path):
    fingerprint = incus.ensure_busybox_image()
    (tmp_path / "infra.yml").write_text(INFRA)
    env = {"ANKLUME_INCUS": incus.socket, "ANKLUME_CACHE_DIR": str(tmp_path / "cache")}
    result = CliRunner().invoke(main, ["lock", "-f", str(tmp_path / "infra.yml")], env=env)
    assert result.exit_code == 0, result.output
    lock = decode_lock((tmp_path / "anklume.lock").read_bytes())
    assert list(lock.images) == ["local:busybox"]  # "busybox" without a remote is local, as the CLI reads it
    pin = lock.images["local:busybox"]
    assert pin.locked.fingerprint == fingerprint
    assert pin.original.remote == "local" and pin.original.type == "container"
    # offline, a new local alias cannot be asked for
    (tmp_path / "infra.yml").write_text(INFRA.replace('box2: {os_image: "busybox"}', 'box2: {os_image: "local:other"}'))
    result = CliRunner().invoke(main, ["lock", "-f", str(tmp_path / "infra.yml"), "--offline"], env=env)
    assert result.exit_code == 1 and "local:other" in result.output


def test_unknown_local_alias_is_a_clear_error(incus, tmp_path):
    (tmp_path / "infra.yml").write_text(INFRA.replace('"local:busybox"', '"local:no-such-image"'))
    env = {"ANKLUME_INCUS": incus.socket, "ANKLUME_CACHE_DIR": str(tmp_path / "cache")}
    result = CliRunner().invoke(main, ["lock", "-f", str(tmp_path / "infra.yml")], env=env)
    assert result.exit_code == 1
    assert "local:no-such-image is not an image alias" in result.output
    assert not (tmp_path / "anklume.lock").exists()


def test_gpus_reads_the_daemons_resources(incus, tmp_path):
    """This machine has no GPU: the real daemon's inventory is empty, in both forms."""
    result = CliRunner().invoke(main, ["gpus", "--json", "--incus", incus.socket])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == []
    assert parse_inventory_file(result.output.encode()) == []
    result = CliRunner().invoke(main, ["gpus", "--incus", incus.socket])
    assert "no GPU found" in result.output


def test_unreachable_incus_is_a_clear_error(tmp_path):
    (tmp_path / "infra.yml").write_text(INFRA)
    env = {"ANKLUME_INCUS": str(tmp_path / "no.socket"), "ANKLUME_CACHE_DIR": str(tmp_path / "cache")}
    result = CliRunner().invoke(main, ["lock", "-f", str(tmp_path / "infra.yml")], env=env)
    assert result.exit_code == 1
    assert "no.socket" in result.output and "Traceback" not in result.output

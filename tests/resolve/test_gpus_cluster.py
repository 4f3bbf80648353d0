"""`anklume gpus` on a cluster: the GPUs per member, through the CLI, against an Incus API test
double serving a real cluster's recorded answers; the recorded H200 host's resources are served in
place of /1.0/resources?target=m2 (tests/support/cluster_recorded.py)."""

from __future__ import annotations

import json

from click.testing import CliRunner

from anklume.cli import main
from anklume.resolve.gpus import parse_inventory_map
from tests.support.cluster_recorded import cluster_routes


def test_gpus_lists_each_members_gpus(fake_incus, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.setenv("PATH", "/nonexistent")  # no nvidia-smi: the API's view only
    incus = fake_incus(cluster_routes(gpu_members=["m2"]))
    result = CliRunner().invoke(main, ["gpus", "--incus", incus.socket])
    assert result.exit_code == 0, result.output
    header, row = [line for line in result.output.splitlines() if "PCI" in line or "0000:" in line]
    words = lambda line: [w for w in line.split() if w not in "┃│"]  # noqa: E731
    assert words(header)[:2] == ["member", "PCI"] and words(row)[:2] == ["m2", "0000:00:06.0"]
    data = CliRunner().invoke(main, ["gpus", "--json", "--incus", incus.socket]).output
    doc = json.loads(data)
    assert sorted(doc) == ["m1", "m2", "m3"] and doc["m1"] == [] and doc["m2"][0]["model"] == "NVIDIA H200"
    assert parse_inventory_map(data.encode())["m2"][0].pci == "0000:00:06.0"


def test_a_member_that_is_down_is_named_and_left_out(fake_incus):
    incus = fake_incus(cluster_routes(m3_offline=True))
    result = CliRunner().invoke(main, ["gpus", "--json", "--incus", incus.socket])
    assert result.exit_code == 0, result.output
    assert "member m3: Offline: its GPUs cannot be read now" in result.stderr
    assert sorted(json.loads(result.stdout)) == ["m1", "m2"]


def test_no_gpu_on_any_member(fake_incus):
    result = CliRunner().invoke(main, ["gpus", "--incus", fake_incus(cluster_routes()).socket])
    assert result.exit_code == 0 and "no GPU found on the 3 member(s) read" in result.output


def test_a_single_server_keeps_its_json_shape(fake_incus):
    routes = {"/1.0/cluster": {"enabled": False, "server_name": ""}, "/1.0/resources": {"gpu": {"cards": []}}}
    result = CliRunner().invoke(main, ["gpus", "--json", "--incus", fake_incus(routes).socket])
    assert result.exit_code == 0 and json.loads(result.output) == []

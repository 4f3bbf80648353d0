"""The test harness itself, against the real daemons: a private incusd, a loopback registry, a
loopback HTTP server, and the write counter."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import socket
import time
import urllib.error
import urllib.request

import pytest

from tests.support import images
from tests.support.events import EventCounter
from tests.support.registry import DOCKER_MANIFEST_V2, RegistryError

# --- incusd ------------------------------------------------------------------------------------


def test_private_daemon_is_up_and_private(incus):
    assert incus.proc.poll() is None
    assert os.path.exists(incus.socket)
    assert not incus.socket.startswith("/var/lib/incus")
    info = incus.client().host_info
    assert info["api_status"] == "stable"
    assert info["environment"]["server"] == "incus"
    # the daemon lives in our namespace, which has nothing but lo
    assert incus.proc.pid in incus.namespace_pids()
    own = os.readlink(f"/proc/{os.getpid()}/ns/net")
    assert os.readlink(f"/proc/{incus.proc.pid}/ns/net") != own
    # storage: a dir pool named default, and the default profile's root disk on it
    pools = [p.name for p in incus.client().storage_pools.all()]
    assert "default" in pools
    root = incus.client().profiles.get("default").devices["root"]
    assert root == {"type": "disk", "path": "/", "pool": "default"}


def test_busybox_image_is_deterministic(tmp_path, monkeypatch, incus):
    monkeypatch.setenv("ANKLUME_TEST_CACHE", str(tmp_path / "a"))
    a = images.busybox_image_files()
    monkeypatch.setenv("ANKLUME_TEST_CACHE", str(tmp_path / "b"))
    b = images.busybox_image_files()
    assert a.meta.read_bytes() == b.meta.read_bytes()
    assert a.rootfs.read_bytes() == b.rootfs.read_bytes()
    # Incus computes the same fingerprint as we do, and the session image is this one
    imported = {img.fingerprint for img in incus.client().images.all()}
    assert a.fingerprint in imported
    assert incus.ensure_busybox_image() == a.fingerprint  # idempotent
    # a tiny rootfs: busybox and its links, no more
    assert len(gzip.decompress(a.rootfs.read_bytes())) < 4 * 1024 * 1024


def _make_bridge(incus, name, octet):
    incus.incus("network", "create", name, f"ipv4.address=10.100.{octet}.254/24",
                "ipv4.nat=false", "ipv6.address=none")


def test_launch_in_project_on_bridge_counts_writes(incus, incus_project):
    project = incus_project
    bridge = "net-t1"
    _make_bridge(incus, bridge, 1)
    try:
        client = incus.client(project=project)
        with EventCounter(incus) as launch:
            inst = client.instances.create(
                {
                    "name": "c1",
                    "source": {"type": "image", "alias": "busybox"},
                    "devices": {"eth0": {"type": "nic", "network": bridge, "name": "eth0"}},
                    "config": {"user.anklume.test": "1"},
                },
                wait=True,
            )
            inst.start(wait=True)
        actions = [e.action for e in launch.events]
        assert "instance-created" in actions and "instance-started" in actions, actions
        assert launch.writes > 0
        assert all(e.project == project for e in launch.events if e.action.startswith("inst"))
        assert launch.api_writes >= 2  # POST /1.0/instances, PUT .../state

        inst.sync()
        assert inst.status == "Running"
        res = inst.execute(["echo", "hi"])
        assert res.exit_code == 0 and res.stdout.strip() == "hi"

        # the bridge is in the private namespace only, and DHCP on it works
        out = incus.incus("exec", "c1", "--project", project, "--", "cat", "/etc/hostname")
        assert out.strip() == "c1"
        _wait_for_address(incus, "c1", project, "10.100.1.")
        assert not os.path.exists(f"/sys/class/net/{bridge}")  # not on the host

        with EventCounter(incus) as reads:
            c = incus.client(project=project)
            c.instances.all()
            c.instances.get("c1").state()
            c.profiles.all()
            incus.client().networks.get(bridge)
            c.api.instances.get(params={"recursion": "1"})
            incus.incus("list", "--project", project, "--format=json")
        assert reads.writes == 0, reads.actions()
        assert reads.api_writes == 0, reads.requests
        assert len(reads.requests) >= 6

        with EventCounter(incus) as one:
            inst = client.instances.get("c1")
            inst.config["user.anklume.test"] = "2"
            inst.save(wait=True)
        assert one.actions() == [("instance-updated", f"/1.0/instances/c1?project={project}")]
    finally:
        incus.purge_project(project)
        incus.incus("network", "delete", bridge)


def test_event_counter_sees_nothing_when_idle(incus):
    with EventCounter(incus) as ev:
        pass
    assert ev.writes == 0 and ev.requests == []


@pytest.mark.slow
def test_debian_python_image_runs_python(incus, incus_project):
    incus.ensure_debian_python_image(project=incus_project)
    bridge = "net-t2"
    _make_bridge(incus, bridge, 2)
    try:
        incus.incus("launch", "debian-python", "py1", "--project", incus_project,
                    "--network", bridge)
        out = incus.incus("exec", "py1", "--project", incus_project, "--", "python3", "-c",
                          "import json, sys; print(json.dumps(sys.version_info[:2]))")
        assert json.loads(out) == [3, 11]
        ps = incus.incus("exec", "py1", "--project", incus_project, "--", "busybox", "ps")
        assert "init" in ps
        assert _wait_for_address(incus, "py1", incus_project, "10.100.2.")
    finally:
        incus.purge_project(incus_project)
        incus.incus("network", "delete", bridge)


def _wait_for_address(incus, name, project, prefix, timeout=15.0):
    deadline = time.monotonic() + timeout
    addr = ""
    while time.monotonic() < deadline:
        addr = incus.incus("exec", name, "--project", project, "--", "busybox", "ip", "-4",
                           "-o", "addr", "show", "dev", "eth0")
        if prefix in addr:
            return addr
        time.sleep(0.25)
    raise AssertionError(f"{name}: no {prefix}x address on eth0: {addr!r}")


# --- registry ----------------------------------------------------------------------------------

OLLAMA_MODEL = "application/vnd.ollama.image.model"
OLLAMA_LICENSE = "application/vnd.ollama.image.license"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"


def test_registry_roundtrip_with_ollama_media_types(registry):
    repo = "library/tinymodel"
    config = json.dumps({"model_format": "gguf", "model_family": "test"},
                        separators=(",", ":")).encode()
    model = os.urandom(4096)
    license_ = b"test licence\n"
    layers = [(model, OLLAMA_MODEL), (license_, OLLAMA_LICENSE)]

    cfg_digest = registry.push_blob(repo, config)
    layer_digests = [registry.push_blob(repo, data) for data, _ in layers]
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": DOCKER_MANIFEST_V2,
            "config": {"mediaType": DOCKER_CONFIG, "digest": cfg_digest, "size": len(config)},
            "layers": [
                {"mediaType": mt, "digest": d, "size": len(data)}
                for (data, mt), d in zip(layers, layer_digests)
            ],
        },
        indent=3,  # odd formatting on purpose: the bytes, not the JSON, are the identity
    ).encode()
    digest = registry.push_manifest(repo, "1b", manifest)
    assert digest == "sha256:" + hashlib.sha256(manifest).hexdigest()

    for ref in ("1b", digest):
        req = urllib.request.Request(f"{registry.url}/v2/{repo}/manifests/{ref}",
                                     headers={"Accept": DOCKER_MANIFEST_V2})
        with urllib.request.urlopen(req, timeout=10) as r:
            body = r.read()
            assert body == manifest
            assert r.headers["Docker-Content-Digest"] == digest
            assert r.headers["Content-Type"] == DOCKER_MANIFEST_V2

    assert registry.get_blob(repo, layer_digests[0]) == model
    assert registry.get_blob(repo, cfg_digest) == config

    # a manifest naming a blob the registry lacks is refused
    missing = manifest.replace(layer_digests[1].encode(), ("sha256:" + "0" * 64).encode())
    with pytest.raises(RegistryError, match="MANIFEST_BLOB_UNKNOWN"):
        registry.push_manifest(repo, "broken", missing)


def test_registry_listens_on_loopback_only(registry):
    assert registry.url.startswith("http://127.0.0.1:")
    with open("/proc/net/tcp") as f:
        rows = [line.split() for line in f.readlines()[1:]]
    port_hex = f"{registry.port:04X}"
    listening = [r[1] for r in rows if r[3] == "0A" and r[1].endswith(":" + port_hex)]
    assert listening == ["0100007F:" + port_hex]


# --- http server ---------------------------------------------------------------------------------


def test_http_serve_records_requests_and_overrides(http_serve):
    srv = http_serve({"/a.json": b'{"a":1}', "/gone": b"x"}, status={"/gone": 410},
                     delay={"/slow": 1.0})
    with urllib.request.urlopen(srv.url + "/a.json?x=1", timeout=5) as r:
        assert r.read() == b'{"a":1}'
        assert r.headers["Content-Type"] == "application/json"
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(srv.url + "/gone", timeout=5)
    assert e.value.code == 410
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(srv.url + "/nope", timeout=5)
    assert e.value.code == 404
    with pytest.raises((socket.timeout, urllib.error.URLError, TimeoutError)):
        urllib.request.urlopen(srv.url + "/slow", timeout=0.2)
    assert srv.requests[:3] == ["/a.json?x=1", "/gone", "/nope"]
    assert srv.hits("/a.json") == 1


def test_http_serve_directory(http_serve, tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "f.txt").write_bytes(b"hello")
    srv = http_serve(tmp_path)
    with urllib.request.urlopen(srv.url + "/sub/f.txt", timeout=5) as r:
        assert r.read() == b"hello"
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(srv.url + "/../../etc/passwd", timeout=5)
    assert e.value.code == 404

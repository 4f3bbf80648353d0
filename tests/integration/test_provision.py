"""End to end, on real parts: `anklume lock` and `anklume build` of an Ollama machine and an Open WebUI
machine into the private incusd, with the models in a real OCI registry on loopback, the Ollama release
and the Open WebUI package served from loopback, and the roles run by ansible-runner through anklume's
Incus connection plugin into minimal Debian containers.

Test doubles (named so): the `ollama` program inside the release tarball
(tests/support/ollama_double.py: answers --version and lists the models it finds, as a real Ollama
would) and the Open WebUI wheel (tests/support/webui_double.py: the real one pulls GBs, torch among
them). Everything else is real; systemd cannot boot in containers on these machines, so the roles
configure the services and say they did not start them (``anklume_require_systemd: false``).
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from anklume.backends.incus.files import InstanceIO
from anklume.backends.incus import IncusBackend
from anklume.cli import main
from anklume.lock.codec import decode_lock
from anklume.units.inside import PARTIAL_SUFFIX
from tests.support.models import make_model, push_model
from tests.support.ollama_double import build_ollama_release
from tests.support.webui_double import pypi_files

OLLAMA_VERSION = "0.13.1"
WEBUI_VERSION = "0.12.4"
REPO = "library/tiny"


@pytest.fixture
def llm(incus, registry, http_serve, tmp_path):
    """A project directory with an infra.yml for one Ollama and one Open WebUI machine, its sources
    served on loopback; purged afterwards."""
    incus.ensure_debian_python_image("debian-python")
    first = make_model(seed=11)
    push_model(registry, REPO, "1", first.manifest, first.blobs)
    tarball, sums, asset = build_ollama_release(OLLAMA_VERSION)
    server = http_serve({f"/v{OLLAMA_VERSION}/sha256sum.txt": sums, f"/v{OLLAMA_VERSION}/{asset}": tarball})
    server.files.update(pypi_files(WEBUI_VERSION, server.url))
    d = "llm"
    doc = {
        "project_name": "llm-e2e",
        "global": {"base_subnet": "10.120", "default_os_image": "local:debian-python",
                   "ollama": {"version": OLLAMA_VERSION}, "open_webui": {"version": WEBUI_VERSION},
                   "sources": {"ollama_registry": registry.url, "ollama_releases": server.url,
                               "pypi": server.url}},
        "domains": {d: {"subnet_id": 7, "ephemeral": True, "machines": {
            "llm-ollama": {"ip": "10.120.7.10", "roles": ["base_system", "ollama_server"], "models": ["tiny:1"],
                           "storage_volumes": {"llm-models": {"size": "256MiB", "path": "/root/.ollama"}},
                           "vars": {"anklume_require_systemd": False, "base_system_packages": []}},
            "llm-webui": {"ip": "10.120.7.11", "roles": ["open_webui"],
                          "vars": {"anklume_require_systemd": False}},
        }}},
    }
    (tmp_path / "infra.yml").write_text(json.dumps(doc, indent=2))  # JSON is YAML
    env = {"ANKLUME_INCUS": incus.socket, "ANKLUME_CACHE_DIR": str(tmp_path / "cache"),
           "XDG_DATA_HOME": str(tmp_path / "data")}
    ctx = type("Ctx", (), {})()
    ctx.root, ctx.env, ctx.domain, ctx.first, ctx.server, ctx.registry = tmp_path, env, d, first, server, registry
    ctx.backend = IncusBackend(incus.socket)
    ctx.io = lambda m: InstanceIO(ctx.backend, d, m)
    try:
        yield ctx
    finally:
        incus.purge_project(d)  # with the domain's bridge and ACL


def cli(ctx, *args: str):
    result = CliRunner().invoke(main, [*args, "-f", str(ctx.root / "infra.yml")], env=ctx.env)
    return result.exit_code, result.output


def build_json(ctx, *extra: str) -> dict:
    code, output = cli(ctx, "build", "--json", *extra)
    assert code == 0, output
    return json.loads(output[output.index("{"):])


def findings(ctx, *extra: str) -> list[dict]:
    code, output = cli(ctx, "verify", "--live", "--json", *extra)
    found = json.loads(output[output.index("{"):])["findings"]
    assert (code == 1) == bool(found), output
    return found


def test_ollama_and_open_webui_end_to_end(llm):
    ctx = llm
    code, out = cli(ctx, "lock")
    assert code == 0, out
    lock = decode_lock((ctx.root / "anklume.lock").read_bytes())
    assert lock.models["tiny:1"].locked.digest == ctx.first.digest
    assert lock.open_webui is not None and lock.open_webui.locked.version == WEBUI_VERSION

    report = build_json(ctx)
    done = {uid for uid, r in report["results"].items() if r["status"] == "ok"}
    assert {"ollama:llm-ollama/ollama", "model:llm-ollama/tiny:1", "role:llm-ollama/base_system",
            "role:llm-ollama/ollama_server", "wheel:llm-webui/open-webui", "role:llm-webui/open_webui"} <= done

    ollama = ctx.io("llm-ollama")
    # what a real Ollama would see, offline, with no pull: the pinned digest's first 12 hex
    listed = ollama.exec(["/usr/local/bin/ollama", "list"], env={"OLLAMA_MODELS": "/root/.ollama/models"})
    assert ctx.first.id in listed.stdout.decode() and "tiny:1" in listed.stdout.decode()
    version = ollama.exec(["/usr/local/bin/ollama", "--version"]).stdout.decode()
    assert OLLAMA_VERSION in version
    manifest = "/root/.ollama/models/manifests/registry.ollama.ai/library/tiny/1"
    blobs = {f"/root/.ollama/models/blobs/{d.replace(':', '-')}": d[7:] for d in ctx.first.blobs}
    hashes = ollama.sha256([manifest, *blobs])
    assert hashes[manifest] == ctx.first.digest[7:]
    assert all(hashes[p] == h for p, h in blobs.items())
    # on the machine's storage volume
    mounts = ollama.exec(["cat", "/proc/mounts"]).stdout.decode()
    assert " /root/.ollama " in mounts
    override = ollama.exec(["cat", "/etc/systemd/system/ollama.service.d/override.conf"]).stdout.decode()
    assert 'OLLAMA_HOST=0.0.0.0:11434' in override and "OLLAMA_MODELS=/root/.ollama/models" in override

    webui = ctx.io("llm-webui")
    unit = webui.exec(["cat", "/etc/systemd/system/open-webui.service"]).stdout.decode()
    assert "OLLAMA_BASE_URL=http://10.120.7.10:11434" in unit and "--port 3000" in unit
    ran = webui.exec(["/opt/open-webui-venv/bin/open-webui"], env={"OLLAMA_BASE_URL": "http://10.120.7.10:11434"})
    assert WEBUI_VERSION in ran.stdout.decode()

    code, out = cli(ctx, "verify", "--live", "--deep")
    assert code == 0, out

    # nothing changed: nothing runs, nothing travels
    report = build_json(ctx)
    assert report["results"] == {} and report["pending"] == 0

    # a new pin for the model (the tag now names other bytes): only that model unit runs, and only
    # the blobs it does not share with the old one travel
    second = make_model(seed=12)
    push_model(ctx.registry, REPO, "1", second.manifest, second.blobs)
    code, out = cli(ctx, "lock", "--update", "tiny:1")
    assert code == 0, out
    report = build_json(ctx)
    assert set(report["results"]) == {"model:llm-ollama/tiny:1"}, report["results"]
    new = set(second.blobs) - set(ctx.first.blobs)
    assert new and set(second.blobs) & set(ctx.first.blobs)  # the two models share blobs
    assert report["transferred"]["model:llm-ollama/tiny:1"] == sum(len(second.blobs[d]) for d in new)
    listed = ollama.exec(["/usr/local/bin/ollama", "list"], env={"OLLAMA_MODELS": "/root/.ollama/models"})
    assert second.id in listed.stdout.decode()

    # a blob damaged inside the instance: verify finds it, build repairs it
    big = max(second.blobs, key=lambda d: len(second.blobs[d]))
    path = f"/root/.ollama/models/blobs/{big.replace(':', '-')}"
    ollama.exec(["sh", "-c", 'echo garbage >> "$0"', path])
    found = findings(ctx)
    assert [(f["object"], f["field"]) for f in found] == [("model:llm-ollama/tiny:1", path)], found
    report = build_json(ctx)
    assert set(report["results"]) == {"model:llm-ollama/tiny:1"}
    assert report["transferred"]["model:llm-ollama/tiny:1"] == len(second.blobs[big])
    assert ollama.sha256([path])[path] == big[7:]

    # same size, one byte flipped: only the deep check sees it
    ollama.exec(["python3", "-c", "import sys; f = open(sys.argv[1], 'r+b'); f.seek(100); b = f.read(1); "
                 "f.seek(100); f.write(bytes([b[0] ^ 1]))", path])
    assert findings(ctx) == []
    found = findings(ctx, "--deep")
    assert [(f["object"], f["field"]) for f in found] == [("model:llm-ollama/tiny:1", path)], found
    assert found[0]["expected"] == f"sha256 {big[7:]}"
    report = build_json(ctx, "--deep")
    assert set(report["results"]) == {"model:llm-ollama/tiny:1"}
    assert findings(ctx, "--deep") == []

    # a file unpacked from the Ollama release, altered in place: the deep check compares every file
    # of the release with the store's tarball; the repair re-places the release, no role re-runs
    lib = "/usr/local/lib/ollama/libggml-test-double.so"
    ollama.exec(["python3", "-c", "import sys; f = open(sys.argv[1], 'r+b'); f.write(b'X')", lib])
    found = findings(ctx, "--deep")
    assert [(f["object"], f["field"]) for f in found] == [("ollama:llm-ollama/ollama", lib)], found
    report = build_json(ctx, "--deep")
    assert set(report["results"]) == {"ollama:llm-ollama/ollama"}
    assert findings(ctx, "--deep") == []


def test_a_recreated_instance_reruns_what_is_inside_it(llm, incus):
    ctx = llm
    assert cli(ctx, "lock")[0] == 0
    build_json(ctx)
    incus.incus("delete", "--force", "llm-webui", "--project", ctx.domain)
    report = build_json(ctx)
    assert set(report["results"]) == {"instance:llm-webui", "wheel:llm-webui/open-webui",
                                      "role:llm-webui/open_webui"}


def test_a_role_edit_reruns_that_role_only(llm):
    ctx = llm
    assert cli(ctx, "lock")[0] == 0
    build_json(ctx)
    # a user role beside infra.yml takes precedence over the shipped one of the same name
    role = ctx.root / "roles" / "base_system" / "tasks"
    role.mkdir(parents=True)
    (role / "main.yml").write_text("- name: mark the host\n  ansible.builtin.copy:\n"
                                   "    dest: /etc/anklume-user-role\n    content: \"user role\\n\"\n")
    report = build_json(ctx)
    assert set(report["results"]) == {"role:llm-ollama/base_system"}
    assert ctx.io("llm-ollama").exec(["cat", "/etc/anklume-user-role"]).stdout == b"user role\n"
    # the user's own variable below the managed section re-runs that host's roles
    host_vars = ctx.root / "host_vars" / "llm-webui.yml"
    host_vars.write_text(host_vars.read_text() + "open_webui_port: 3001\n")
    report = build_json(ctx)
    assert set(report["results"]) == {"role:llm-webui/open_webui"}
    unit = ctx.io("llm-webui").exec(["cat", "/etc/systemd/system/open-webui.service"]).stdout.decode()
    assert "--port 3001" in unit


def test_a_failing_role_names_the_task_and_records_nothing(llm):
    ctx = llm
    doc = json.loads((ctx.root / "infra.yml").read_text())
    doc["domains"][ctx.domain]["machines"]["llm-webui"]["vars"]["anklume_require_systemd"] = True
    (ctx.root / "infra.yml").write_text(json.dumps(doc, indent=2))
    assert cli(ctx, "lock")[0] == 0
    code, out = cli(ctx, "build")
    assert code == 1
    assert "role:llm-webui/open_webui" in out and "systemd" in out, out
    config = ctx.backend.client.get("instances/llm-webui", project=ctx.domain)["config"]
    assert not any(k.startswith("user.anklume.unit.role.") for k in config)


def test_a_corrupted_store_copy_is_fetched_again_not_placed(llm):
    ctx = llm
    assert cli(ctx, "lock")[0] == 0
    build_json(ctx)
    big = max(ctx.first.blobs, key=lambda d: len(ctx.first.blobs[d]))
    stored = ctx.root / "cache" / "store" / "sha256" / big[7:]
    stored.chmod(0o644)
    data = bytearray(stored.read_bytes())
    data[1000] ^= 0xFF  # same size: only a hash can tell
    stored.write_bytes(bytes(data))
    path = f"/root/.ollama/models/blobs/{big.replace(':', '-')}"
    ctx.io("llm-ollama").exec(["rm", path])

    code, out = cli(ctx, "build")
    assert code == 0, out
    # the store's ensure re-hashes a copy changed since it hashed it: fetched again before any push,
    # so the instance never received the corrupted bytes
    assert "local store's copy" not in out, out
    assert hashlib.sha256(stored.read_bytes()).hexdigest() == big[7:]
    assert ctx.io("llm-ollama").sha256([path])[path] == big[7:]
    assert findings(ctx, "--deep") == []


def test_an_isolated_domain_installs_open_webui_from_a_pushed_wheelhouse(llm):
    """The instances have no route to PyPI: Open WebUI's dependencies come from a wheelhouse on the
    controller that anklume pushes beside the pinned wheel."""
    from tests.support.webui_double import build_dependency_wheel

    ctx = llm
    ctx.server.files.update(pypi_files(WEBUI_VERSION, ctx.server.url, requires=("anklume-test-dep>=1",)))
    house = ctx.root / "wheelhouse"
    house.mkdir()
    name, data = build_dependency_wheel("anklume-test-dep", "1.0")
    (house / name).write_bytes(data)
    doc = json.loads((ctx.root / "infra.yml").read_text())
    doc["domains"][ctx.domain]["machines"]["llm-webui"]["vars"]["open_webui_wheelhouse_src"] = "wheelhouse"
    (ctx.root / "infra.yml").write_text(json.dumps(doc, indent=2))
    assert cli(ctx, "lock")[0] == 0
    report = build_json(ctx)
    assert report["results"]["role:llm-webui/open_webui"]["status"] == "ok", report["results"]
    webui = ctx.io("llm-webui")
    shown = webui.exec(["/opt/open-webui-venv/bin/python", "-c", "import anklume_test_dep as d; print(d.__version__)"])
    assert shown.stdout == b"1.0\n"
    assert webui.sha256([f"/var/cache/anklume/wheels/{name}"])[f"/var/cache/anklume/wheels/{name}"] == \
        hashlib.sha256(data).hexdigest()
    assert build_json(ctx)["results"] == {}

    # a new wheel in the wheelhouse: that machine's wheel unit and its role run again, nothing else
    name2, data2 = build_dependency_wheel("anklume-other-dep", "2.0")
    (house / name2).write_bytes(data2)
    report = build_json(ctx)
    assert set(report["results"]) == {"wheel:llm-webui/open-webui", "role:llm-webui/open_webui"}
    assert report["transferred"]["wheel:llm-webui/open-webui"] == len(data2)


def test_kill_9_during_provisioning_then_the_next_build_converges(llm):
    """The whole build process group killed at a random point while artefacts travel and roles run
    (seed printed; ANKLUME_CRASH_SEED replays it): nothing is recorded that did not apply, and the
    next build converges to a state verify --live --deep finds clean."""
    import os
    import random
    import signal
    import sys
    import time

    ctx = llm
    assert cli(ctx, "lock")[0] == 0
    seed = int(os.environ.get("ANKLUME_CRASH_SEED") or random.randrange(1 << 30))
    print(f"ANKLUME_CRASH_SEED={seed}")
    rng = random.Random(seed)
    anklume = str(Path(sys.executable).parent / "anklume")
    for trial in range(2):
        proc = subprocess.Popen([anklume, "build", "-f", str(ctx.root / "infra.yml")], env={**os.environ, **ctx.env},
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        time.sleep(rng.uniform(1.0, 12.0))
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        # what is recorded as applied is whole: no recorded artefact is missing or altered.  A file
        # in transit (*.anklume-partial) is what a kill mid-transfer leaves by design: verify reports
        # it, and the next build's placement in that directory clears it (checked below)
        damaged = [f for f in findings(ctx, "--deep") if f["field"].startswith("/")
                   and not (f["field"].endswith(PARTIAL_SUFFIX) and f["expected"] == "absent")]
        assert damaged == [], (f"seed {seed}, trial {trial}", damaged)
    report = build_json(ctx)
    assert all(r["status"] == "ok" for r in report["results"].values()), (seed, report["results"])
    assert findings(ctx, "--deep") == [], f"seed {seed}"
    assert build_json(ctx)["results"] == {}
    listed = ctx.io("llm-ollama").exec(["/usr/local/bin/ollama", "list"], env={"OLLAMA_MODELS": "/root/.ollama/models"})
    assert ctx.first.id in listed.stdout.decode()


"""Hostile input through the command line: every case is a one-screen error, exit 1, no
traceback, and nothing written."""

from __future__ import annotations

import json
import shutil

import msgspec
import pytest
from click.testing import CliRunner

from anklume.cli import main
from anklume.model.schema import Infra
from anklume.project import load_infra_memo
from tests.support.lockfiles import EXAMPLES, LOCKFILES

COMMANDS = (["lock", "--check"], ["build", "--no-apply"], ["verify"], ["graph"])


def files(root) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def built(tmp_path):
    """examples/gpu-workstation with its committed lock, built (--no-apply)."""
    root = tmp_path / "proj"
    root.mkdir()
    shutil.copy(EXAMPLES / "gpu-workstation" / "infra.yml", root / "infra.yml")
    shutil.copy(LOCKFILES / "gpu-workstation.lock", root / "anklume.lock")
    assert CliRunner().invoke(main, ["build", "-f", str(root / "infra.yml"), "--no-apply"]).exit_code == 0
    return root


def run(root, argv, env=None):
    command, *rest = argv
    return CliRunner().invoke(main, [command, "-f", str(root / "infra.yml"), *rest],
                              env={"ANKLUME_CACHE_DIR": str(root.parent / "cache"), **(env or {})})


def assert_clean_failure(root, argv, before, *words, env=None):
    result = run(root, argv, env)
    assert result.exit_code == 1, (argv, result.output, result.exception)
    assert result.exception is None or isinstance(result.exception, SystemExit), (argv, result.exception)
    assert "Traceback" not in result.output
    for word in words:
        assert word in result.output, (argv, result.output)
    assert files(root) == before, argv
    return result


@pytest.mark.parametrize("old, new, words", [
    ('description: "Ansible controller"', 'description: "\\ud800"', ("surrogate", "infra.yml:25")),
    ("roles: [base_system]\n\n  perso:", "roles: [base_system]\n        vars: {big: 99999999999999999999999999}\n"
                                         "\n  perso:", ("64 bits", "vars.big")),
    ('limits.cpu: "4"', "limits.cpu: 18446744073709551616", ("64 bits", "config.limits.cpu")),
    ("size: 50GiB", "size: 1000000000000000000000000000000", ("64 bits", "storage_volumes.ollama-models.size")),
])
def test_values_no_encoder_can_hold_are_problems(built, old, new, words):
    text = (built / "infra.yml").read_text()
    assert text.count(old) == 1
    (built / "infra.yml").write_text(text.replace(old, new))
    before = files(built)
    for argv in COMMANDS:
        assert_clean_failure(built, argv, before, *words)


def test_the_memo_skips_a_model_it_cannot_encode(tmp_path, monkeypatch):
    """Loading refuses such values; if one got through, it would cost the memo, not the command."""
    import anklume.project as project

    good = msgspec.json.decode(b'{"project_name": "p", "global": {}, "domains": {}}', type=Infra)
    odd = msgspec.structs.replace(good, project_name="\ud800")
    monkeypatch.setattr(project, "load_infra", lambda data, file: odd)
    assert load_infra_memo(b"x", "infra.yml", tmp_path) is odd
    assert list(tmp_path.iterdir()) == []


# -- the lock is a file anyone can edit: every value is checked, never taken on trust ------------

OTHER_SHA = "sha256:" + "1" * 64


def _set(path: str, value):
    """A mutation of the lock document: ``value`` at the dotted ``path`` ([i] for list items)."""
    def mutate(doc: dict) -> None:
        *parents, last = _parts(path)
        node = doc
        for part in parents:
            node = node[part]
        node[last] = value
    return mutate


def _parts(path: str) -> list:
    return [int(piece) if piece.isdigit() else piece for piece in path.split("/")]


GEMMA = "models/gemma:2b/locked"


def _image(path: str, value):
    """``value`` at ``path`` inside the locked part of the image pin."""
    def mutate(doc: dict) -> None:
        node = doc["images"]["images:debian/buster"]["locked"]
        *parents, last = _parts(path)
        for part in parents:
            node = node[part]
        node[last] = value
    return mutate


def _rename(field: str, old: str, new: str):
    def mutate(doc: dict) -> None:
        doc[field][new] = doc[field].pop(old)
    return mutate


LOCK_CASES = [
    # (id, mutation, words the message must hold)
    ("manifest-digest", _set(f"{GEMMA}/digest", OTHER_SHA),
     ["models.gemma:2b.locked.digest", "is not the sha256 of the manifest"]),
    ("digest-path", _set(f"{GEMMA}/digest", "sha256:../../../etc/passwd"),
     ["models.gemma:2b.locked.digest", "a digest 'sha256:' and 64 lower-case hex digits"]),
    ("layer-digest-path", _set(f"{GEMMA}/layers/0/digest", "sha256:../../x"),
     ["models.gemma:2b.locked.layers[0].digest"]),
    ("layer-not-in-manifest", _set(f"{GEMMA}/layers/1/size", 8434),
     ["models.gemma:2b.locked.layers", "the manifest says"]),
    ("model-size-sum", _set(f"{GEMMA}/size", 1), ["models.gemma:2b.locked.size", "the manifest says"]),
    ("model-name", _set(f"{GEMMA}/name", "registry.ollama.ai/library/evil:2b"),
     ["models.gemma:2b.locked.name"]),
    ("model-key", _rename("models", "gemma:2b", "llama3.2:1b"), ["models.llama3.2:1b", "original.ref"]),
    ("negative-layer", _set(f"{GEMMA}/layers/0/size", -1), ["models.gemma:2b.locked.layers[0].size", ">= 0"]),
    ("huge-layer", _set(f"{GEMMA}/layers/0/size", 10**30), ["models.gemma:2b.locked.layers[0].size"]),
    ("fingerprint", _image("fingerprint", "../../../etc"),
     ["images.images:debian/buster.locked.fingerprint", "64 lower-case hex digits"]),
    ("image-path", _image("root/path", "../../../etc/shadow"), ["images.images:debian/buster.locked.root.path"]),
    ("image-size", _image("root/size", -5), ["images.images:debian/buster.locked.root.size"]),
    ("image-server", _image("server", "file:///etc"), ["images.images:debian/buster.locked.server"]),
    ("image-key", _rename("images", "images:debian/buster", "images:debian/13"),
     ["images.images:debian/13", "original"]),
    ("ollama-url", _set("ollama/locked/url", "file:///etc/passwd"),
     ["ollama.locked.url", "an http:// or https:// URL"]),
    ("ollama-url-asset", _set("ollama/locked/url", "https://example.org/other.tgz"),
     ["ollama.locked.url", "does not end in /ollama-linux-amd64.tgz"]),
    ("ollama-asset", _set("ollama/locked/asset", "../x"), ["ollama.locked.asset"]),
    ("ollama-sha", _set("ollama/locked/sha256", "x"), ["ollama.locked.sha256"]),
    ("wheel-name", _set("open_webui/locked/filename", "../../../../etc/cron.d/x"),
     ["open_webui.locked.filename", "a wheel file name"]),
    ("wheel-size", _set("open_webui/locked/size", -1), ["open_webui.locked.size"]),
    ("pci", _set("gpus/gw-llm/locked/pci", "../../x"), ["gpus.gw-llm.locked.pci", "a PCI address"]),
    ("pci-newline", _set("gpus/gw-llm/locked/pci", "0000:00:06.0\n"), ["gpus.gw-llm.locked.pci"]),
    ("vram", _set("gpus/gw-llm/locked/vram_mib", 10**48), ["gpus.gw-llm.locked.vram_mib"]),
    ("gpu-model", _set("gpus/gw-llm/locked/model", "H200\n# injected: 1"), ["gpus.gw-llm.locked.model"]),
    ("gpu-key", _rename("gpus", "gw-llm", "gw-other"), ["gpus.gw-other", "original.machine"]),
    ("infra-hash", _set("infra_hash", "blake3:../x"), ["infra_hash"]),
    ("float-size", _set(f"{GEMMA}/layers/0/size", 1.5), ["models.gemma:2b.locked.layers[0].size"]),
]


def _hostile_lock(root, mutate) -> None:
    doc = json.loads((root / "anklume.lock").read_bytes())
    mutate(doc)
    (root / "anklume.lock").write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")


@pytest.mark.parametrize("mutate, words", [(m, w) for _, m, w in LOCK_CASES], ids=[i for i, _, _ in LOCK_CASES])
def test_a_hostile_lock_is_refused_with_the_file_and_key_path(built, mutate, words):
    _hostile_lock(built, mutate)
    before = files(built)
    for argv in (["lock", "--check"], ["lock", "--offline"], ["build", "--no-apply"], ["verify"], ["graph"]):
        result = assert_clean_failure(built, argv, before, "anklume.lock: ", *words)
        assert "restore it from git" in result.output


# -- the cluster section: every member, placement and GPU member checked too -------------------------


@pytest.fixture
def built_cluster(tmp_path):
    """examples/gpu-workstation made a cluster's (tests/support/cluster_recorded.py), built."""
    from tests.support.cluster_recorded import cluster_example

    root = tmp_path / "proj"
    root.mkdir()
    cluster_example(root)
    assert CliRunner().invoke(main, ["build", "-f", str(root / "infra.yml"), "--no-apply"]).exit_code == 0
    return root


def _in_cluster(fn):
    def mutate(doc: dict) -> None:
        fn(doc["cluster"])
    return mutate


CLUSTER_CASES = [
    ("not-a-member", _set("cluster/placement/gw-dev/locked/member", "m9"),
     ["cluster.placement.gw-dev.locked.member: 'm9' is not a member of cluster.members"]),
    ("member-path", _set("cluster/placement/gw-dev/locked/member", "../../etc"),
     ["cluster.placement.gw-dev.locked.member", "a cluster member name"]),
    ("member-key", _in_cluster(lambda c: c["members"].__setitem__("m\n1", c["members"].pop("m1"))),
     ["cluster.members", "a cluster member name"]),
    ("no-members", _set("cluster/members", {}), ["cluster.members", "length >= 1"]),
    ("threads-zero", _set("cluster/members/m1/cpu_threads", 0), ["cluster.members.m1.cpu_threads", ">= 1"]),
    ("threads-huge", _set("cluster/members/m1/cpu_threads", 2**40), ["cluster.members.m1.cpu_threads"]),
    ("memory-huge", _set("cluster/members/m1/memory_bytes", 2**61), ["cluster.members.m1.memory_bytes"]),
    ("memory-float", _set("cluster/members/m1/memory_bytes", 1.5), ["cluster.members.m1.memory_bytes"]),
    ("arch", _set("cluster/members/m1/architecture", "x86 64"), ["cluster.members.m1.architecture"]),
    ("reason-newline", _set("cluster/placement/gw-dev/locked/reason", "ok\n# injected"),
     ["cluster.placement.gw-dev.locked.reason", "one line"]),
    ("target-not-honoured", _set("cluster/placement/gw-dev/locked/member", "m1"),
     ["cluster.placement.gw-dev: infra.yml asks for member 'm3' but the lock places it on 'm1'"]),
    ("gpu-elsewhere", _set("gpus/gw-llm/member", "m1"),
     ["gpus.gw-llm.member: the GPU is on member 'm1' but the machine is placed on 'm2'"]),
    ("machine-key", _in_cluster(lambda c: c["placement"].__setitem__("GW", c["placement"].pop("gw-admin"))),
     ["cluster.placement", "a machine name"]),
    ("unknown-field", _set("cluster/members/m1/status", "Online"), ["cluster.members.m1", "unknown field"]),
    ("section-list", _set("cluster", []), ["cluster", "object"]),
]


@pytest.mark.parametrize("mutate, words", [(m, w) for _, m, w in CLUSTER_CASES], ids=[i for i, _, _ in CLUSTER_CASES])
def test_a_hostile_cluster_section_is_refused_with_the_key_path(built_cluster, mutate, words):
    _hostile_lock(built_cluster, mutate)
    before = files(built_cluster)
    for argv in (["lock", "--check"], ["lock", "--offline"], ["build", "--no-apply"], ["verify"], ["graph"]):
        result = assert_clean_failure(built_cluster, argv, before, "anklume.lock: ", *words)
        assert "restore it from git" in result.output


def test_a_placement_the_infra_does_not_ask_for_is_re_placed_only_online(built_cluster):
    """A lock whose placement original is not infra.yml's target: the lock is stale for that machine;
    offline, nothing can be placed, nothing is written."""
    _hostile_lock(built_cluster, _set("cluster/placement/gw-perso/original", {"target": "m2"}))
    before = files(built_cluster)
    assert_clean_failure(built_cluster, ["lock", "--offline"], before, "placing gw-perso in the cluster")


def test_duplicate_keys_in_the_lock_are_refused(built):
    text = (built / "anklume.lock").read_text()
    first = '"vram_mib": 143771'
    assert text.count(first) == 1
    (built / "anklume.lock").write_text(text.replace(first, f'"vram_mib": 1,\n        {first}'))
    before = files(built)
    for argv in COMMANDS:
        assert_clean_failure(built, argv, before, "anklume.lock: gpus.gw-llm.locked: the key 'vram_mib' appears twice")


@pytest.mark.parametrize("depth", [65, 1000, 100_000])
def test_a_lock_nested_too_deep_is_refused(built, depth):
    text = (built / "anklume.lock").read_text()
    (built / "anklume.lock").write_text(text.replace('"version": 1', f'"x": {"[" * depth}{"]" * depth},\n  "version": 1'))
    before = files(built)
    for argv in COMMANDS:
        assert_clean_failure(built, argv, before, "anklume.lock: ", "nested more than 64 levels deep")


@pytest.mark.parametrize("var", ["ANKLUME_IMAGES_URL", "ANKLUME_OLLAMA_REGISTRY", "ANKLUME_OLLAMA_RELEASES",
                                 "ANKLUME_PYPI", "ANKLUME_INCUS"])
def test_a_malformed_mirror_url_is_a_clean_error(built, var):
    before = files(built)
    url = "https://[::1" if var == "ANKLUME_INCUS" else "http://[::1"
    assert_clean_failure(built, ["lock", "--update"], before, var, env={var: url})


# -- a named pipe (or any file that is not a regular one) where a file is expected ----------------

class Blocked(BaseException):
    """Raised in a command that blocked (not an OSError: nothing may catch it as a read error)."""


@pytest.fixture
def no_hang():
    """Fail, rather than hang the suite, when a command blocks (opening a FIFO does): each
    blocked call is interrupted after 5 s."""
    import signal

    def blocked(signum, frame):
        signal.alarm(5)
        raise Blocked("the command blocked")

    old = signal.signal(signal.SIGALRM, blocked)
    signal.alarm(5)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


def _fifo(path) -> None:
    import os

    path.unlink(missing_ok=True)
    os.mkfifo(path)


@pytest.mark.parametrize("name", ["infra.yml", "anklume.lock"])
def test_a_fifo_as_infra_or_lock_is_refused_without_blocking(built, no_hang, name):
    _fifo(built / name)
    before = {k: v for k, v in files(built).items()}
    for argv in COMMANDS:
        assert_clean_failure(built, argv, before, f"{name}: cannot read it", "named pipe")


def test_a_device_as_infra_yml_is_refused_without_reading_it(tmp_path, no_hang):
    # /dev/null reads as an empty file; /dev/zero, refused by the same check, would be read
    # until memory runs out
    (tmp_path / "infra.yml").symlink_to("/dev/null")
    result = run(tmp_path, ["lock", "--check"])
    assert result.exit_code == 1 and "infra.yml: cannot read it" in result.output and "device" in result.output


def test_a_fifo_in_the_tree_is_refused_and_an_orphan_fifo_is_protected(built, no_hang):
    _fifo(built / "host_vars" / "gw-dev.yml")
    before = files(built)
    for argv in (["build", "--no-apply"], ["verify"]):
        assert_clean_failure(built, argv, before, "host_vars/gw-dev.yml is a named pipe")
    (built / "host_vars" / "gw-dev.yml").unlink()
    _fifo(built / "host_vars" / "gone.yml")
    result = run(built, ["build", "--no-apply"])
    assert result.exit_code == 0, result.output
    assert "PROTECTED orphan" in result.output and "gone.yml" in result.output


@pytest.mark.parametrize("option", ["--gpu-inventory", "--nvidia-smi"])
def test_a_fifo_as_an_inventory_file_is_refused_without_blocking(built, no_hang, tmp_path, option):
    from tests.lock.conftest import GPU_ARGS

    fifo = tmp_path / "inventory"
    _fifo(fifo)
    args = dict(zip(GPU_ARGS[::2], GPU_ARGS[1::2])) | {option: str(fifo)}
    argv = ["lock", "--update", "gpus", *(x for kv in args.items() for x in kv)]
    before = files(built)
    assert_clean_failure(built, argv, before, "inventory: cannot read it", "named pipe")


@pytest.mark.parametrize("depth", [1000, 100_000])
def test_a_gpu_inventory_nested_too_deep_is_a_clean_error(built, tmp_path, depth):
    from tests.lock.conftest import GPU_ARGS

    deep = tmp_path / "gpus.json"
    deep.write_text("[" * depth + "]" * depth)
    before = files(built)
    assert_clean_failure(built, ["lock", "--update", "gpus", "--gpu-inventory", str(deep), *GPU_ARGS[2:]], before,
                         "gpus.json: not JSON", "nested more than 64 levels deep")

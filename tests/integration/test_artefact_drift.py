"""What `verify --live` and a plain `build` see of the artefacts inside an instance, on real parts:
the private incusd, a real OCI registry on loopback, the Ollama release served from loopback.

One Ollama machine with models and no role (the roles are exercised in test_provision.py), in a
minimal Debian container. Test double (named so): the release's `ollama` program
(tests/support/ollama_double.py), whose `ollama list` fails on a manifest naming a missing blob.
"""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from anklume.backends.incus import IncusBackend
from anklume.backends.incus.files import InstanceIO
from anklume.cli import main
from tests.support.models import make_model, push_model
from tests.support.ollama_double import LIB_NAME, build_ollama_release

OLLAMA_VERSION = "0.13.1"
REPO = "library/drift"  # not test_provision.py's: the registry lives for the whole session
MACHINE = "drift-ollama"
MODELS = "/root/.ollama/models"


@pytest.fixture
def box(incus, registry, http_serve, tmp_path):
    incus.ensure_debian_python_image("debian-python")
    models = {tag: make_model(seed=seed, layer_size=256 << 10) for tag, seed in (("1", 21), ("2", 22))}
    for tag, model in models.items():
        push_model(registry, REPO, tag, model.manifest, model.blobs)
    tarball, sums, asset = build_ollama_release(OLLAMA_VERSION, libraries=3)  # subdirectories and symlinks
    server = http_serve({f"/v{OLLAMA_VERSION}/sha256sum.txt": sums, f"/v{OLLAMA_VERSION}/{asset}": tarball})
    d = "drift"
    ctx = type("Ctx", (), {})()
    ctx.root, ctx.domain, ctx.models = tmp_path, d, models
    ctx.env = {"ANKLUME_INCUS": incus.socket, "ANKLUME_CACHE_DIR": str(tmp_path / "cache"),
               "XDG_DATA_HOME": str(tmp_path / "data")}

    def write(models: list[str]) -> None:
        doc = {
            "project_name": "drift",
            "global": {"base_subnet": "10.121", "default_os_image": "local:debian-python",
                       "ollama": {"version": OLLAMA_VERSION},
                       "sources": {"ollama_registry": registry.url, "ollama_releases": server.url}},
            "domains": {d: {"subnet_id": 8, "ephemeral": True, "machines": {
                MACHINE: {"ip": "10.121.8.10", "models": models}}}},
        }
        (tmp_path / "infra.yml").write_text(json.dumps(doc, indent=2))  # JSON is YAML

    ctx.write = write
    ctx.io = InstanceIO(IncusBackend(incus.socket), d, MACHINE)
    write(["drift:1"])
    try:
        yield ctx
    finally:
        incus.purge_project(d)  # with the domain's bridge and ACL


def cli(ctx, *args: str, env: dict | None = None):
    result = CliRunner().invoke(main, [*args, "-f", str(ctx.root / "infra.yml")], env={**ctx.env, **(env or {})})
    return result.exit_code, result.output


def build_json(ctx, *extra: str) -> dict:
    code, output = cli(ctx, "build", "--json", *extra)
    assert code == 0, output
    return json.loads(output[output.index("{"):])


def findings(ctx, *extra: str, env: dict | None = None) -> list[tuple[str, str, str, str]]:
    code, output = cli(ctx, "verify", "--live", "--json", *extra, env=env)
    found = json.loads(output[output.index("{"):])["findings"]
    assert (code == 1) == bool(found), output
    return [(f["object"], f["field"], f["expected"], f["actual"]) for f in found]


def test_release_damage_is_found_by_the_quick_check_and_repaired_by_a_plain_build(box):
    """Every file of the release is checked for presence and size on every check (the list of its
    files is recorded in the instance at placement), not only a marker: a library deleted or the
    binary truncated is found without --deep, and a plain build re-places the release."""
    ctx = box
    assert cli(ctx, "lock")[0] == 0
    build_json(ctx)
    assert findings(ctx) == []
    unit = f"ollama:{MACHINE}/ollama"

    lib = f"/usr/local/lib/ollama/{LIB_NAME}"
    ctx.io.exec(["rm", lib])
    assert findings(ctx) == [(unit, lib, "present", "missing")]
    report = build_json(ctx)
    assert set(report["results"]) == {unit}, report["results"]
    assert findings(ctx) == []

    binary = "/usr/local/bin/ollama"
    size = ctx.io.sizes([binary])[binary]
    ctx.io.exec(["truncate", "-s", "0", binary])
    assert findings(ctx) == [(unit, binary, f"{size} bytes", "0 bytes")]
    assert set(build_json(ctx)["results"]) == {unit}
    assert OLLAMA_VERSION in ctx.io.exec([binary, "--version"]).stdout.decode()
    assert findings(ctx, "--deep") == []

    # another controller, whose store never held the release: the quick check needs nothing from it
    assert findings(ctx, env={"ANKLUME_CACHE_DIR": str(ctx.root / "other-cache")}) == []


def test_a_model_left_half_placed_is_reported_then_repaired(box):
    """A model removed from `models` after an interrupted transfer: its manifest names a blob that
    is not there (never placed, or pruned by Ollama once no manifest named it) and a blob is left
    in transit. `ollama list` shows a broken model: verify reports both, and the next placement of
    a model in that directory clears what is in transit and re-places what the model lacks."""
    ctx = box
    ctx.write(["drift:1", "drift:2"])
    assert cli(ctx, "lock")[0] == 0
    build_json(ctx)
    second = ctx.models["2"]
    own = sorted(set(second.blobs) - set(ctx.models["1"].blobs))
    # removed from models once whole: the instance stays consistent (anklume never deletes a model)
    ctx.write(["drift:1"])
    assert cli(ctx, "lock")[0] == 0
    assert build_json(ctx)["results"] == {}
    assert findings(ctx) == []

    # what an interrupted transfer and a removal leave
    missing = f"{MODELS}/blobs/{own[0].replace(':', '-')}"
    in_transit = f"{MODELS}/blobs/{own[1].replace(':', '-')}.anklume-partial"
    ctx.io.exec(["rm", missing])
    ctx.io.push(in_transit, second.blobs[own[1]][:1000])
    listed = ctx.io.exec(["/usr/local/bin/ollama", "list"], env={"OLLAMA_MODELS": MODELS}, check=False)
    assert listed.rc == 1 and "drift:2" in listed.stdout.decode() and "missing blob" in listed.stderr.decode()

    manifest = f"{MODELS}/manifests/registry.ollama.ai/library/drift/2"
    found = findings(ctx)
    assert sorted(found) == sorted([
        (f"instance:{MACHINE}", manifest, "every blob it names in place",
         f"{missing.rsplit('/', 1)[-1]} (missing)"),
        (f"instance:{MACHINE}", in_transit, "absent", "a file left in transit by an interrupted transfer"),
    ]), found

    # back in models: its record stands, the quick check finds the missing blob, the build re-places
    # it, and the placement clears what was in transit
    ctx.write(["drift:1", "drift:2"])
    assert cli(ctx, "lock")[0] == 0
    report = build_json(ctx)
    assert set(report["results"]) == {"model:drift-ollama/drift:2"}, report["results"]
    assert report["transferred"]["model:drift-ollama/drift:2"] == len(second.blobs[own[0]])
    assert findings(ctx) == []
    listed = ctx.io.exec(["/usr/local/bin/ollama", "list"], env={"OLLAMA_MODELS": MODELS})
    assert second.id in listed.stdout.decode()

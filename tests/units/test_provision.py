"""The units placed inside instances (pure): which exist, their order, and what changes their keys."""

from __future__ import annotations

import msgspec

from anklume.lock.schema import (
    ModelBlob,
    ModelLocked,
    ModelOriginal,
    ModelPin,
    OllamaLocked,
    OllamaOriginal,
    OllamaPin,
)
from anklume.units.build import build_units
from anklume.units.unit import LiveObject
from anklume.units.inside import inside_live, record_key
from tests.units.infra import FP_B, make_infra, make_lock

DOC = {
    "project_name": "t",
    "global": {"default_os_image": "local:debian"},
    "domains": {"ai": {"subnet_id": 3, "machines": {
        "ai-llm": {"ip": "10.100.3.10", "roles": ["base_system", "ollama_server"], "models": ["tiny:1", "x/y:2"]},
        "ai-web": {"ip": "10.100.3.11", "roles": ["base_system"]},
        "ai-box": {"ip": "10.100.3.12"},
    }}},
}
ROLES = {"role_digests": {"base_system": "blake3:r1", "ollama_server": "blake3:r2"},
         "vars_digests": {"ai-llm": "blake3:v1", "ai-web": "blake3:v2"}}


def _model(digest: str) -> ModelPin:
    blob = ModelBlob(mediaType="application/vnd.ollama.image.model", digest="sha256:" + "1" * 64, size=10)
    return ModelPin(original=ModelOriginal(ref="tiny:1"), locked=ModelLocked(
        name="registry.ollama.ai/library/tiny:1", digest=digest, manifest="{}", config=blob, layers=[blob],
        size=20, vram_bytes=10))


def setup():
    infra = make_infra(DOC)
    lock = make_lock(infra)
    ollama = OllamaPin(original=OllamaOriginal(version="0.13.1", architecture="amd64"), locked=OllamaLocked(
        version="0.13.1", asset="ollama-linux-amd64.tgz", url="https://example/ollama.tgz", sha256="2" * 64))
    lock = msgspec.structs.replace(lock, ollama=ollama, models={
        "tiny:1": _model("sha256:" + "a" * 64), "x/y:2": _model("sha256:" + "b" * 64)})
    return infra, lock


def keys(graph) -> dict[str, str]:
    return {u.uid: u.key for u in graph}


def test_units_inside_instances_and_their_order():
    infra, lock = setup()
    graph = build_units(infra, lock, ROLES)
    inside = [u.uid for u in graph if u.kind in ("ollama", "model", "wheel", "role")]
    assert set(inside) == {"ollama:ai-llm/ollama", "model:ai-llm/tiny:1", "model:ai-llm/x/y:2",
                           "role:ai-llm/base_system", "role:ai-llm/ollama_server", "role:ai-web/base_system"}
    role = graph["role:ai-llm/ollama_server"]
    assert {"instance:ai-llm", "ollama:ai-llm/ollama", "model:ai-llm/tiny:1",
            "role:ai-llm/base_system"} <= set(role.after)
    assert role.key_deps == ("ollama:ai-llm/ollama",)
    assert graph["model:ai-llm/tiny:1"].spec["manifest"] == \
        "/root/.ollama/models/manifests/registry.ollama.ai/library/tiny/1"
    # no provision inputs: the Incus layer alone (as before)
    assert not [u for u in build_units(infra, lock) if u.kind == "role"]


def test_a_model_pin_changes_that_model_unit_only():
    infra, lock = setup()
    before = keys(build_units(infra, lock, ROLES))
    models = dict(lock.models)
    models["tiny:1"] = _model("sha256:" + "c" * 64)
    after = keys(build_units(infra, msgspec.structs.replace(lock, models=models), ROLES))
    assert {u for u in before if before[u] != after[u]} == {"model:ai-llm/tiny:1"}


def test_a_new_ollama_release_re_runs_ollama_server():
    infra, lock = setup()
    before = keys(build_units(infra, lock, ROLES))
    ollama = msgspec.structs.replace(lock.ollama, locked=msgspec.structs.replace(lock.ollama.locked, sha256="3" * 64))
    after = keys(build_units(infra, msgspec.structs.replace(lock, ollama=ollama), ROLES))
    assert {u for u in before if before[u] != after[u]} == {"ollama:ai-llm/ollama", "role:ai-llm/ollama_server"}


def test_a_new_image_re_runs_everything_inside_the_instance():
    infra, lock = setup()
    before = keys(build_units(infra, lock, ROLES))
    pin = lock.images["local:debian"]
    images = {"local:debian": msgspec.structs.replace(pin, locked=msgspec.structs.replace(pin.locked,
                                                                                           fingerprint=FP_B))}
    after = keys(build_units(infra, msgspec.structs.replace(lock, images=images), ROLES))
    changed = {u for u in before if before[u] != after[u]}
    assert {u for u in before if u.split(":")[0] in ("ollama", "model", "role")} <= changed


def test_role_files_and_host_vars_re_run_their_roles_only():
    infra, lock = setup()
    before = keys(build_units(infra, lock, ROLES))
    edited = {"role_digests": {**ROLES["role_digests"], "base_system": "blake3:r9"},
              "vars_digests": ROLES["vars_digests"]}
    after = keys(build_units(infra, lock, edited))
    assert {u for u in before if before[u] != after[u]} == {"role:ai-llm/base_system", "role:ai-web/base_system"}
    edited = {"role_digests": ROLES["role_digests"], "vars_digests": {**ROLES["vars_digests"], "ai-web": "blake3:v9"}}
    after = keys(build_units(infra, lock, edited))
    assert {u for u in before if before[u] != after[u]} == {"role:ai-web/base_system"}


def test_records_live_on_the_instance():
    infra, lock = setup()
    graph = build_units(infra, lock, ROLES)
    unit = graph["model:ai-llm/x/y:2"]
    key = record_key(unit.kind, unit.name)
    assert key.startswith("user.anklume.unit.model.x-y-2-") and all(c.isalnum() or c in "._-" for c in key)
    assert record_key("model", "m/x_y:2") != record_key("model", "m/x-y:2")
    inst = LiveObject(kind="instance", name="ai-llm", project="ai", object="ai-llm", config={key: unit.key})
    live = inside_live([u for u in graph if u.kind == "model"], {"ai-llm": inst})
    assert set(live) == {unit.uid} and live[unit.uid].key == unit.key
    # an instance in another project is not this machine's
    other = msgspec.structs.replace(inst, project="elsewhere")
    assert inside_live([unit], {"ai-llm": other}) == {}


def test_a_unit_without_its_record_says_so_not_that_the_machine_is_missing():
    from anklume.units.plan import plan_changes

    infra, lock = setup()
    graph = build_units(infra, lock, ROLES)
    inst = LiveObject(kind="instance", name="ai-llm", project="ai", object="ai-llm", config={})
    plan = plan_changes(graph, inside_live([u for u in graph if u.object == "ai-llm"], {"ai-llm": inst}),
                        specs=lambda key: None, prune=False, replace=False)
    reasons = {c.uid: c.reasons[0].render() for c in plan.changes if c.uid.startswith(("role:ai-llm", "ollama:",
                                                                                         "model:ai-llm/tiny"))}
    assert reasons == {
        "ollama:ai-llm/ollama": "the Ollama release is not recorded as applied in instance ai-llm "
                                "(no user.anklume.unit.ollama.ollama on it)",
        "model:ai-llm/tiny:1": "model tiny:1 is not recorded as applied in instance ai-llm "
                               f"(no {record_key('model', 'ai-llm/tiny:1')} on it)",
        "role:ai-llm/base_system": "role base_system is not recorded as applied in instance ai-llm "
                                   "(no user.anklume.unit.role.base_system on it)",
        "role:ai-llm/ollama_server": "role ollama_server is not recorded as applied in instance ai-llm "
                                     "(no user.anklume.unit.role.ollama_server on it)",
    }

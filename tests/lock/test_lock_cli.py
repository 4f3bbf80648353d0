"""``anklume lock`` end to end against the loopback mirror of the recorded data."""

from __future__ import annotations

import json

from anklume.lock.codec import decode_lock
from tests.lock.conftest import GPU_ARGS
from tests.support.lockfiles import LOCKFILES

GEMMA_PATH = "/registry/v2/library/gemma/manifests/2b"


def test_lock_writes_the_pins_and_reports_them(project):
    result = project("lock", *GPU_ARGS)
    assert result.exit_code == 0, result.output
    assert "+ model llama3.2:3b: sha256:a80c4f17acd5" in result.output
    assert "+ gpu gw-llm: 0000:00:06.0 NVIDIA H200" in result.output
    assert project.lock_bytes == (LOCKFILES / "gpu-workstation.lock").read_bytes()
    lock = decode_lock(project.lock_bytes)
    assert lock.models["gemma:2b"].locked.size == 1678456656
    assert lock.images["images:debian/buster"].locked.fingerprint.startswith("deae1ebaa83f")


def test_relock_of_an_unchanged_infra_asks_nothing_and_rewrites_nothing(project, mirror):
    project("lock", *GPU_ARGS)
    mtime = (project.root / "anklume.lock").stat().st_mtime_ns
    mirror.requests.clear()
    result = project("lock")  # no GPU inventory needed: the pins are kept
    assert result.exit_code == 0, result.output
    assert "up to date" in result.output
    assert mirror.requests == []
    assert (project.root / "anklume.lock").stat().st_mtime_ns == mtime


def test_check_is_offline_and_exits_1_when_infra_changed(project, mirror):
    project("lock", *GPU_ARGS)
    mirror.stop()
    assert project("lock", "--check").exit_code == 0
    infra = project.root / "infra.yml"
    infra.write_text(infra.read_text() + "\n# a comment does not make the lock stale\n")
    assert project("lock", "--check").exit_code == 0
    infra.write_text(infra.read_text().replace('"Personal environment"', '"Personal desktop"'))
    result = project("lock", "--check")
    assert result.exit_code == 1
    assert "would change" in result.output


def test_a_new_machine_resolves_only_what_is_new(project, mirror):
    project("lock", *GPU_ARGS)
    before = decode_lock(project.lock_bytes)
    infra = project.root / "infra.yml"
    infra.write_text(infra.read_text().replace(
        '      gw-perso:\n', '      gw-old:\n        os_image: "images:debian/stretch"\n        ip: "10.100.1.11"\n      gw-perso:\n'))
    mirror.requests.clear()
    result = project("lock")
    assert result.exit_code == 0, result.output
    after = decode_lock(project.lock_bytes)
    assert "+ image images:debian/stretch" in result.output
    assert after.models == before.models and after.gpus == before.gpus and after.ollama == before.ollama
    assert after.images["images:debian/buster"] == before.images["images:debian/buster"]
    assert not any("/registry/" in r or "/releases/" in r for r in mirror.requests)


def test_update_named_pin_changes_only_that_pin(project, mirror):
    project("lock", *GPU_ARGS)
    before = project.lock_bytes
    # the tag moved upstream: the registry now serves other bytes for gemma:2b
    moved = json.loads(mirror.files[GEMMA_PATH])
    moved["layers"] = moved["layers"][:-1]
    mirror.files[GEMMA_PATH] = json.dumps(moved).encode()
    assert project("lock").exit_code == 0
    assert project.lock_bytes == before  # no --update: pins stay
    result = project("lock", "--update", "gemma:2b")
    assert result.exit_code == 0, result.output
    assert "~ model gemma:2b: sha256:b50d6c999e59 -> sha256:" in result.output
    old, new = decode_lock(before), decode_lock(project.lock_bytes)
    assert new.models["gemma:2b"] != old.models["gemma:2b"]
    assert new.models["llama3.2:3b"] == old.models["llama3.2:3b"]
    assert (new.images, new.ollama, new.gpus) == (old.images, old.ollama, old.gpus)


def test_update_of_an_unknown_name_is_an_error_that_writes_nothing(project):
    project("lock", *GPU_ARGS)
    before = project.lock_bytes
    result = project("lock", "--update", "gemma:7b")
    assert result.exit_code == 1
    assert "no pin named gemma:7b" in result.output
    assert project.lock_bytes == before


def test_offline_uses_the_cache_and_names_what_is_missing(project, mirror, tmp_path):
    project("lock", *GPU_ARGS)
    (project.root / "anklume.lock").unlink()
    mirror.stop()
    result = project("lock", "--offline", *GPU_ARGS)
    assert result.exit_code == 0, result.output
    assert project.lock_bytes == (LOCKFILES / "gpu-workstation.lock").read_bytes()
    (project.root / "anklume.lock").unlink()
    result = project("lock", "--offline", *GPU_ARGS, env={"ANKLUME_CACHE_DIR": str(tmp_path / "empty")})
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert not (project.root / "anklume.lock").exists()


def test_unreachable_source_is_a_clear_error_and_nothing_is_written(project, mirror):
    mirror.stop()
    result = project("lock", *GPU_ARGS)
    assert result.exit_code == 1
    assert "127.0.0.1" in result.output and "Traceback" not in result.output
    assert not (project.root / "anklume.lock").exists()


def test_invalid_infra_is_reported_and_nothing_is_written(project):
    infra = project.root / "infra.yml"
    infra.write_text(infra.read_text().replace("gpu: true", "gpu: yes please"))
    result = project("lock", *GPU_ARGS)
    assert result.exit_code == 1
    assert "domains.homelab.machines.gw-llm.gpu" in result.output
    assert "Traceback" not in result.output
    assert not (project.root / "anklume.lock").exists()


def test_a_newer_lock_version_is_refused(project):
    project("lock", *GPU_ARGS)
    data = json.loads(project.lock_bytes)
    data["version"] = 99
    (project.root / "anklume.lock").write_text(json.dumps(data))
    for command in (("lock",), ("build", "--no-apply"), ("verify",)):
        result = project(*command)
        assert result.exit_code == 1
        assert "newer than this anklume understands" in result.output


def test_gpu_machine_on_a_host_without_gpu(project, tmp_path):
    empty = tmp_path / "none.json"
    empty.write_text('{"gpu": {"cards": [], "total": 0}}')
    result = project("lock", "--gpu-inventory", str(empty))
    assert result.exit_code == 1
    assert "asks for a GPU (gw-llm) but the host has none" in result.output


def test_exclusive_policy_with_two_gpu_machines_and_one_gpu(project):
    infra = project.root / "infra.yml"
    infra.write_text(infra.read_text().replace(
        '        description: "Open WebUI frontend"\n', '        description: "Open WebUI frontend"\n        gpu: true\n'))
    result = project("lock", *GPU_ARGS)
    assert result.exit_code == 1
    assert "GPU policy is 'exclusive' but 2 instances have GPU access: gw-llm, gw-webui." in result.output
    assert "Set global.gpu_policy: shared to allow this." in result.output


def test_shared_policy_warns_with_the_original_message(project):
    infra = project.root / "infra.yml"
    text = infra.read_text().replace('        description: "Open WebUI frontend"\n',
                                     '        description: "Open WebUI frontend"\n        gpu: true\n')
    infra.write_text(text.replace('  default_user: root\n', '  default_user: root\n  gpu_policy: shared\n'))
    result = project("lock", *GPU_ARGS)
    assert result.exit_code == 0, result.output
    assert ("WARNING: GPU policy is 'shared': 2 instances share GPU access (gw-llm, gw-webui). "
            "No VRAM isolation on consumer GPUs.") in result.output


def test_models_that_do_not_fit_the_gpu_are_refused(project, tmp_path):
    # The recorded H200 row with its VRAM cut to 3 GiB (derived from the recording, for this test).
    smi = tmp_path / "small.csv"
    smi.write_text("index, uuid, name, pci.bus_id, memory.total [MiB]\n"
                   "0, GPU-9e1c631b-fafe-f96d-935d-1ff4b8a5bf54, NVIDIA H200, 00000000:00:06.0, 3072 MiB\n")
    result = project("lock", "--gpu-inventory", GPU_ARGS[1], "--nvidia-smi", str(smi))
    assert result.exit_code == 1
    assert "machine 'gw-llm': models llama3.2:3b (1.9 GiB), gemma:2b (1.6 GiB)" in result.output
    assert "GPU 0000:00:06.0 (NVIDIA H200) has 3.0 GiB" in result.output
    assert not (project.root / "anklume.lock").exists()


def test_build_and_verify_refuse_a_stale_lock(project):
    project("lock", *GPU_ARGS)
    infra = project.root / "infra.yml"
    infra.write_text(infra.read_text().replace('"10.100.1.10"', '"10.100.1.12"'))
    for command in (("build", "--no-apply"), ("verify",)):
        result = project(*command)
        assert result.exit_code == 1
        assert "is stale" in result.output and "anklume lock" in result.output
    assert not (project.root / "host_vars").exists()


def test_update_accepts_a_pin_that_infra_yml_needs_but_the_lock_lacks(project):
    project("lock", *GPU_ARGS)
    infra = project.root / "infra.yml"
    infra.write_text(infra.read_text().replace("          - gemma:2b\n", "          - gemma:2b\n          - llama3.2:1b\n"))
    result = project("lock", "--update", "llama3.2:1b")
    assert "no pin named" not in result.output
    assert "llama3.2:1b" in result.output  # resolved (the recorded registry has no such tag)


def test_update_names_are_checked_without_a_lock_too(project):
    result = project("lock", *GPU_ARGS, "--update", "gemma:7b")
    assert result.exit_code == 1
    assert "no pin named gemma:7b" in result.output
    assert not (project.root / "anklume.lock").exists()


def test_check_with_update_is_refused(project):
    project("lock", *GPU_ARGS)
    result = project("lock", "--check", "--update")
    assert result.exit_code == 1
    assert "cannot be combined" in result.output


def test_a_pin_that_cannot_be_resolved_names_the_file_and_key_path(project):
    infra = project.root / "infra.yml"
    infra.write_text(infra.read_text().replace("          - gemma:2b\n", "          - gemma:2b\n          - gemma:404\n"))
    result = project("lock", *GPU_ARGS)
    assert result.exit_code == 1
    assert "error: infra.yml: domains.homelab.machines.gw-llm.models[2]: model gemma:404" in result.output
    assert not (project.root / "anklume.lock").exists()


def test_a_reformatted_lock_is_rewritten_in_its_canonical_bytes(project, mirror):
    project("lock", *GPU_ARGS)
    canonical = project.lock_bytes
    (project.root / "anklume.lock").write_text(json.dumps(json.loads(canonical)))
    mirror.requests.clear()
    result = project("lock")
    assert result.exit_code == 0, result.output
    assert project.lock_bytes == canonical and mirror.requests == []

"""With a lock, host_vars gain the pins after the original keys, then the machine's ``vars``."""

from __future__ import annotations

import pytest
import yaml

from anklume.errors import StaleLock
from anklume.render.tree import render_tree

from .conftest import (OLLAMA_SHA, OLLAMA_URL, OLLAMA_VERSION, WEBUI_SHA, WEBUI_VERSION, WEBUI_WHEEL, fake_sha,
                       load_example, load_text, make_lock, model_digest)

WEBUI_KEYS = ["open_webui_version", "open_webui_wheel_filename", "open_webui_wheel_sha256"]

V1_KEYS = ["instance_name", "instance_type", "instance_description", "instance_domain", "instance_ephemeral",
           "instance_os_image", "instance_ip"]


def top_keys(body: str) -> list[str]:
    return list(yaml.safe_load(body))


def test_pro_workstation_pins_are_added_after_the_original_keys():
    infra = load_example("pro-workstation")
    lock = make_lock(infra)
    v1, pinned = render_tree(infra, None), render_tree(infra, lock)
    assert list(v1) == list(pinned)
    fingerprint = fake_sha("image", "images:debian/13")
    for rel, body in v1.items():
        if not rel.startswith("host_vars/"):
            assert pinned[rel] == body, rel  # only host_vars change
            continue
        assert pinned[rel].startswith(body), rel  # the original keys, untouched, first
    assert pinned["host_vars/pw-admin.yml"][len(v1["host_vars/pw-admin.yml"]):] == (
        f"instance_image_fingerprint: {fingerprint}\n")
    assert pinned["host_vars/pw-llm.yml"][len(v1["host_vars/pw-llm.yml"]):] == (
        f"instance_image_fingerprint: {fingerprint}\n"
        "instance_gpu_pci: '0000:00:06.0'\n"  # YAML 1.1 reads 0000:00:06.0 as a number
        f"ollama_version: {OLLAMA_VERSION}\n"
        f"ollama_release_url: {OLLAMA_URL}\n"
        f"ollama_release_sha256: {OLLAMA_SHA}\n")
    assert pinned["host_vars/pw-webui.yml"][len(v1["host_vars/pw-webui.yml"]):] == (
        f"instance_image_fingerprint: {fingerprint}\n"
        "open_webui_ollama_url: http://10.100.3.10:11434\n"
        f"open_webui_version: {WEBUI_VERSION}\n"
        f"open_webui_wheel_filename: {WEBUI_WHEEL}\n"
        f"open_webui_wheel_sha256: {WEBUI_SHA}\n")


INFRA = """
project_name: p
global: {default_os_image: "images:debian/13"}
domains:
  ai:
    subnet_id: 1
    profiles: {gpu: {devices: {gpu: {type: gpu, gputype: physical}}}}
    machines:
      llm:
        ip: 10.100.1.10
        type: vm
        profiles: [default, gpu]
        roles: [ollama_server]
        models: ["qwen2.5:0.5b", "llama3.2:3b", "registry.example.org/team/coder:1"]
        vars: {ollama_keep_alive: 5m, zzz: 1}
      webui:
        ip: 10.100.1.11
        os_image: "images:alpine/3.20"
        roles: [base_system, open_webui]
"""


def test_order_of_every_added_key_and_models_in_the_users_order():
    infra = load_text(INFRA)
    tree = render_tree(infra, make_lock(infra))
    llm = yaml.safe_load(tree["host_vars/llm.yml"])
    assert list(llm)[len(V1_KEYS):] == [
        "instance_profiles", "instance_roles", "instance_image_fingerprint", "instance_gpu_pci",
        "ollama_version", "ollama_release_url", "ollama_release_sha256", "ollama_models",
        "ollama_keep_alive", "zzz"]
    assert llm["instance_image_fingerprint"] == fake_sha("image", "images:debian/13 (virtual-machine)")
    assert llm["ollama_models"] == [
        {"name": "qwen2.5:0.5b", "digest": model_digest("qwen2.5:0.5b")},
        {"name": "llama3.2:3b", "digest": model_digest("llama3.2:3b")},
        {"name": "registry.example.org/team/coder:1", "digest": model_digest("registry.example.org/team/coder:1")},
    ]
    webui = yaml.safe_load(tree["host_vars/webui.yml"])
    assert webui["instance_image_fingerprint"] == fake_sha("image", "images:alpine/3.20")
    assert list(webui)[-5:] == ["instance_image_fingerprint", "open_webui_ollama_url", *WEBUI_KEYS]
    assert webui["open_webui_ollama_url"] == "http://10.100.1.10:11434"
    assert [webui[k] for k in WEBUI_KEYS] == [WEBUI_VERSION, WEBUI_WHEEL, WEBUI_SHA]


def test_models_alone_need_ollama():
    infra = load_text("""
project_name: p
global: {}
domains:
  d: {subnet_id: 1, machines: {m: {models: ["gemma:2b"]}}}
""")
    keys = top_keys(render_tree(infra, make_lock(infra))["host_vars/m.yml"])
    assert keys[-5:] == ["instance_image_fingerprint", "ollama_version", "ollama_release_url",
                         "ollama_release_sha256", "ollama_models"]


def test_a_var_overrides_a_derived_key_without_a_duplicate():
    infra = load_text(INFRA.replace("roles: [base_system, open_webui]",
                                    "roles: [base_system, open_webui]\n"
                                    "        vars: {a: 1, open_webui_ollama_url: 'http://gpu.lan:11434', b: 2}")
                      .replace("vars: {ollama_keep_alive: 5m, zzz: 1}",
                               "vars: {ollama_version: mine, zzz: 1}"))
    tree = render_tree(infra, make_lock(infra))
    webui = tree["host_vars/webui.yml"]
    assert webui.count("open_webui_ollama_url") == 1
    assert top_keys(webui)[-7:] == ["instance_image_fingerprint", *WEBUI_KEYS, "a", "open_webui_ollama_url", "b"]
    assert yaml.safe_load(webui)["open_webui_ollama_url"] == "http://gpu.lan:11434"
    llm = tree["host_vars/llm.yml"]
    assert llm.count("ollama_version") == 1
    assert top_keys(llm)[-3:] == ["ollama_models", "ollama_version", "zzz"]
    assert yaml.safe_load(llm)["ollama_version"] == "mine"


def _webui_url(text: str) -> str | None:
    infra = load_text(text)
    return yaml.safe_load(render_tree(infra, make_lock(infra))["host_vars/ui.yml"]).get("open_webui_ollama_url")


def _infra(*domains: str) -> str:
    return "project_name: p\nglobal: {}\ndomains:\n" + "".join(domains)


def _domain(name: str, sid: int, *machines: str) -> str:
    return f"  {name}:\n    subnet_id: {sid}\n    machines:\n" + "".join(f"      {m}\n" for m in machines)


UI = "ui: {roles: [open_webui]}"


def test_open_webui_prefers_the_ollama_of_its_own_domain():
    text = _infra(_domain("a", 1, "o1: {ip: 10.100.1.5, roles: [ollama_server]}"),
                  _domain("b", 2, "o2: {ip: 10.100.2.5, roles: [ollama_server]}", UI))
    assert _webui_url(text) == "http://10.100.2.5:11434"


def test_open_webui_uses_the_only_ollama_of_the_infra_otherwise():
    text = _infra(_domain("a", 1, "o1: {ip: 10.100.1.5, roles: [ollama_server]}"), _domain("b", 2, UI))
    assert _webui_url(text) == "http://10.100.1.5:11434"


def test_open_webui_url_skipped_when_ambiguous_absent_or_without_ip():
    two_elsewhere = _infra(_domain("a", 1, "o1: {ip: 10.100.1.5, roles: [ollama_server]}"),
                           _domain("c", 3, "o3: {ip: 10.100.3.5, roles: [ollama_server]}"), _domain("b", 2, UI))
    assert _webui_url(two_elsewhere) is None
    assert _webui_url(_infra(_domain("b", 2, UI))) is None
    assert _webui_url(_infra(_domain("b", 2, "o: {roles: [ollama_server]}", UI))) is None  # DHCP


def test_no_lock_means_no_derived_keys_but_vars_still_written():
    infra = load_text(INFRA)
    llm = top_keys(render_tree(infra, None)["host_vars/llm.yml"])
    assert not {"instance_image_fingerprint", "instance_gpu_pci", "ollama_version", "ollama_models"} & set(llm)
    assert llm[-2:] == ["ollama_keep_alive", "zzz"]
    assert "open_webui_ollama_url" not in render_tree(infra, None)["host_vars/webui.yml"]


@pytest.mark.parametrize("missing", ["image", "gpu", "ollama", "models", "open_webui"])
def test_a_missing_pin_is_a_stale_lock(missing):
    infra = load_text(INFRA)
    with pytest.raises(StaleLock, match="run `anklume lock`"):
        render_tree(infra, make_lock(infra, skip={missing}))


def test_render_is_deterministic_and_pure():
    infra = load_text(INFRA)
    lock = make_lock(infra)
    assert render_tree(infra, lock) == render_tree(infra, lock)
    assert render_tree(load_text(INFRA), make_lock(load_text(INFRA))) == render_tree(infra, lock)


def test_trust_level_and_policies_are_rendered():
    """``domain_trust_level`` in the domain's group_vars (as the original), the policies in all.yml."""
    from anklume.model.load import load_infra
    from anklume.render.tree import render_tree
    infra = load_infra(b"project_name: p\nglobal: {}\ndomains:\n  a: {subnet_id: 1, trust_level: admin}\n"
                       b"  b: {subnet_id: 2}\nnetwork_policies:\n  - {from: a, to: b, ports: [80]}\n")
    tree = render_tree(infra)
    assert "domain_trust_level: admin\n" in tree["group_vars/a.yml"]
    assert "domain_trust_level" not in tree["group_vars/b.yml"]
    assert "network_policies:\n" in tree["group_vars/all.yml"] and "- 80\n" in tree["group_vars/all.yml"]

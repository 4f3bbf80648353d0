"""Shared data for the render tests: the original's examples and hand-built locks.

- `V1_EXAMPLES`: the six v1 `infra.yml` files (tests/fixtures/v1-examples, see its PROVENANCE.txt).
- `load_example(name)` / `load_text(yaml)`: a validated `Infra`.
- `make_lock(infra)`: a `Lock` with a made-up but well-formed pin for everything `infra` needs,
  built from the structs by hand (no resolver): fingerprints and digests derived from the names
  so that each pin is recognisable in assertions.
"""

from __future__ import annotations

import hashlib

import pytest
from syrupy.extensions.single_file import SingleFileSnapshotExtension, WriteMode
from pathlib import Path

from anklume.model.needs import image_key, is_gpu_machine, iter_machines, needs_ollama, needs_open_webui
from anklume.lock.schema import (LOCK_VERSION, GpuLocked, GpuOriginal, GpuPin, ImageLocked, ImageOriginal,
                                 ImagePin, Lock, ModelBlob, ModelLocked, ModelOriginal, ModelPin, OllamaLocked,
                                 OllamaOriginal, OllamaPin, OpenWebUILocked, OpenWebUIOriginal, OpenWebUIPin)
from anklume.model.load import load_infra
from anklume.model.names import parse_image_ref, parse_model_ref
from anklume.model.schema import Infra

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "v1-examples"
V1_EXAMPLES = sorted(p.name.removesuffix(".infra.yml") for p in FIXTURES.glob("*.infra.yml"))


def load_example(name: str) -> Infra:
    path = FIXTURES / f"{name}.infra.yml"
    return load_infra(path.read_bytes(), path.name)


def load_text(text: str) -> Infra:
    return load_infra(text.encode(), "infra.yml")


def fake_sha(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()


OLLAMA_VERSION = "0.13.1"
OLLAMA_URL = f"https://github.com/ollama/ollama/releases/download/v{OLLAMA_VERSION}/ollama-linux-amd64.tgz"
OLLAMA_SHA = fake_sha("ollama", OLLAMA_VERSION)
WEBUI_VERSION = "0.12.4"
WEBUI_WHEEL = f"open_webui-{WEBUI_VERSION}-py3-none-any.whl"
WEBUI_SHA = fake_sha("open-webui", WEBUI_VERSION)


def make_lock(infra: Infra, *, skip: set[str] = frozenset()) -> Lock:
    """Every pin ``infra`` needs; ``skip`` leaves some out ("image", "gpu", "ollama", "models",
    "open_webui")."""
    images, models, gpus, ollama, webui = {}, {}, {}, None, None
    for _d, domain, mname, machine in iter_machines(infra):
        key = image_key(infra, machine)
        remote, alias, _ = parse_image_ref(key.split(" ")[0])
        itype = "container" if machine.type == "lxc" else "virtual-machine"
        images[key] = ImagePin(
            original=ImageOriginal(remote=remote, alias=alias, architecture="x86_64", type=itype),
            locked=ImageLocked(fingerprint=fake_sha("image", key), serial="20260213_05:24",
                               server="https://images.linuxcontainers.org"))
        if is_gpu_machine(domain, machine):
            gpus[mname] = GpuPin(original=GpuOriginal(machine=mname, policy=infra.global_.gpu_policy),
                                 locked=GpuLocked(pci=f"0000:00:{len(gpus) + 6:02x}.0", vendor_id="10de",
                                                  product_id="2335", model="NVIDIA H200"))
        if needs_ollama(machine):
            ollama = OllamaPin(original=OllamaOriginal(version=infra.global_.ollama.version, architecture="amd64"),
                               locked=OllamaLocked(version=OLLAMA_VERSION, asset="ollama-linux-amd64.tgz",
                                                   url=OLLAMA_URL, sha256=OLLAMA_SHA))
        if needs_open_webui(machine):
            webui = OpenWebUIPin(original=OpenWebUIOriginal(version=infra.global_.open_webui.version),
                                 locked=OpenWebUILocked(version=WEBUI_VERSION, filename=WEBUI_WHEEL,
                                                        url=f"https://files.pythonhosted.org/packages/{WEBUI_WHEEL}",
                                                        sha256=WEBUI_SHA, size=106366595,
                                                        requires_python=">=3.11"))
        for ref in machine.models or []:
            config = ModelBlob(mediaType="application/vnd.docker.container.image.v1+json",
                               digest="sha256:" + fake_sha("config", ref), size=561)
            layer = ModelBlob(mediaType="application/vnd.ollama.image.model",
                              digest="sha256:" + fake_sha("layer", ref), size=2_019_377_376)
            models[ref] = ModelPin(original=ModelOriginal(ref=ref), locked=ModelLocked(
                name=str(parse_model_ref(ref)), digest=model_digest(ref), manifest="{}", config=config,
                layers=[layer], size=config.size + layer.size, vram_bytes=layer.size))
    return Lock(version=LOCK_VERSION, infra_hash="blake3:" + "0" * 64,
                images={} if "image" in skip else images,
                ollama=None if "ollama" in skip else ollama,
                open_webui=None if "open_webui" in skip else webui,
                models={} if "models" in skip else models,
                gpus={} if "gpu" in skip else gpus)


def model_digest(ref: str) -> str:
    return "sha256:" + fake_sha("manifest", ref)


# -- one syrupy snapshot per generated file, byte-for-byte ---------------------------------


class YamlFileSnapshot(SingleFileSnapshotExtension):
    _write_mode = WriteMode.BINARY
    file_extension = "yml"


@pytest.fixture
def file_snapshot(snapshot):
    return snapshot.use_extension(YamlFileSnapshot)

"""``lock_infra`` with a scripted resolver: errors say where in infra.yml a pin is asked for,
and ``--update`` names are those of the lock and of infra.yml."""

from __future__ import annotations

import pytest

from anklume.errors import OfflineMiss, ResolveError
from anklume.lock.assemble import known_pin_names, lock_infra
from anklume.model.load import load_infra

INFRA = """\
project_name: p
global:
  ollama: {version: "0.13.1"}
domains:
  lab:
    subnet_id: 1
    machines:
      plain: {}
      vm1: {type: vm, os_image: "images:alpine/3.20"}
      llm: {models: ["gemma:2b"]}
"""


class Refusing:
    """Refuses one kind of pin with the given error (images: only alpine); answers the rest."""

    def __init__(self, kind: str, error: ResolveError):
        self.kind, self.error = kind, error

    def _answer(self, kind: str):
        if kind == self.kind:
            raise self.error
        from anklume.lock.schema import OllamaLocked

        return OllamaLocked(version="0.13.1", asset="a", url="https://example.org/a", sha256="0" * 64)

    def image(self, original):
        if self.kind == "image" and original.alias == "alpine/3.20":
            raise self.error
        from anklume.lock.schema import ImageLocked

        return ImageLocked(fingerprint="0" * 64)

    def ollama(self, original):
        return self._answer("ollama")

    def model(self, ref):
        return self._answer("model")

    def gpu_inventory(self, member=None):
        return []

    def cluster(self):
        return None


@pytest.mark.parametrize(("kind", "where"), [
    ("image", "infra.yml: domains.lab.machines.vm1.os_image: "),
    ("ollama", "infra.yml: global.ollama.version (needed by domains.lab.machines.llm): "),
    ("model", "infra.yml: domains.lab.machines.llm.models[0]: "),
])
def test_an_unresolvable_pin_names_the_key_path_that_asks_for_it(kind, where):
    infra = load_infra(INFRA.encode())
    with pytest.raises(OfflineMiss) as err:
        lock_infra(infra, None, Refusing(kind, OfflineMiss("not in the cache", "go online")))
    assert err.value.message == where + "not in the cache"
    assert err.value.hint == "go online"


def test_the_default_image_is_named_as_such():
    infra = load_infra(INFRA.replace('{type: vm, os_image: "images:alpine/3.20"}', "{}").encode())
    resolver = Refusing("image", ResolveError("nope"))
    resolver.image = lambda original: (_ for _ in ()).throw(ResolveError("nope"))
    with pytest.raises(ResolveError) as err:
        lock_infra(infra, None, resolver)
    assert err.value.message == "infra.yml: domains.lab.machines.plain (no os_image: the default images:debian/13): nope"


def test_update_names_come_from_the_lock_and_from_infra_yml():
    infra = load_infra(INFRA.encode())
    names = known_pin_names(None, infra)
    assert {"images:debian/13", "images:alpine/3.20", "images:alpine/3.20 (virtual-machine)",
            "gemma:2b", "ollama"} <= names
    assert "gpus" not in names

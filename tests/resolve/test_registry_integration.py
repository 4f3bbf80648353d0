"""Model manifests from a real OCI distribution registry (Debian docker-registry) on loopback.

The recorded manifests cannot be pushed (their 1.7-2 GB blobs are not here), so a small
manifest in Ollama's media types is pushed; what is checked is the wire protocol: the Accept
header, the exact bytes, and agreement with the registry's Docker-Content-Digest header.
"""

from __future__ import annotations

import json

import pytest

from anklume.errors import ResolveError
from anklume.resolve.ollama import resolve_model
from tests.support.registry import LocalRegistry

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def registry():
    with LocalRegistry() as reg:
        config = reg.push_blob("library/tiny", b'{"model_format":"gguf"}')
        layer = reg.push_blob("library/tiny", b"GGUF test weights")
        manifest = json.dumps({
            "schemaVersion": 2,
            "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "digest": config, "size": 23},
            "layers": [{"mediaType": "application/vnd.ollama.image.model", "digest": layer, "size": 17}],
        }).encode()
        reg.digest = reg.push_manifest("library/tiny", "1", manifest)
        yield reg


def test_model_through_a_real_registry_as_a_mirror(registry, fetcher):
    pin = resolve_model(fetcher, registry.url, "tiny:1")
    assert pin.name == "registry.ollama.ai/library/tiny:1"
    assert pin.digest == registry.digest
    assert (pin.size, pin.vram_bytes) == (40, 17)


def test_model_on_the_registry_host_itself(registry, fetcher):
    pin = resolve_model(fetcher, None, f"http://{registry.host}/library/tiny:1")
    assert pin.name == f"{registry.host}/library/tiny:1"
    assert pin.digest == registry.digest


def test_missing_tag_on_a_real_registry(registry, fetcher):
    with pytest.raises(ResolveError, match="not found"):
        resolve_model(fetcher, registry.url, "tiny:2")

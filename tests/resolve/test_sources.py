"""Effective sources: environment over infra.yml's global.sources over the defaults."""

from __future__ import annotations

import pytest

from anklume.errors import SourceError
from anklume.sources import (
    CANONICAL_IMAGES,
    CANONICAL_OLLAMA_REGISTRY,
    CANONICAL_OLLAMA_RELEASES,
    Sources,
    effective_sources,
)


def test_defaults_are_the_canonical_public_sources():
    assert effective_sources({}, {}) == Sources(
        images="https://images.linuxcontainers.org",
        ollama_registry="https://registry.ollama.ai",
        ollama_releases="https://github.com/ollama/ollama/releases/download",
        incus=None,
    )
    assert (CANONICAL_IMAGES, CANONICAL_OLLAMA_REGISTRY, CANONICAL_OLLAMA_RELEASES) == (
        Sources().images, Sources().ollama_registry, Sources().ollama_releases)


def test_environment_beats_infra_which_beats_defaults():
    configured = {"images": "http://infra.example/images/", "ollama_registry": "http://infra.example:5000",
                  "incus": "/run/incus/unix.socket", "ollama_releases": None}
    env = {"ANKLUME_IMAGES_URL": "http://127.0.0.1:8080", "ANKLUME_INCUS": "", "ANKLUME_OLLAMA_RELEASES": ""}
    assert effective_sources(configured, env) == Sources(
        images="http://127.0.0.1:8080",
        ollama_registry="http://infra.example:5000",
        ollama_releases=CANONICAL_OLLAMA_RELEASES,
        incus="/run/incus/unix.socket",
    )
    assert effective_sources({}, {"ANKLUME_INCUS": "https://incus.lan:8443/"}).incus == "https://incus.lan:8443"


@pytest.mark.parametrize(
    ("configured", "env", "names"),
    [
        ({"images": "images.linuxcontainers.org"}, {}, "global.sources.images"),
        ({}, {"ANKLUME_OLLAMA_REGISTRY": "ftp://x"}, "ANKLUME_OLLAMA_REGISTRY"),
        ({}, {"ANKLUME_IMAGES_URL": "http://x/?q=1"}, "ANKLUME_IMAGES_URL"),
        ({"incus": "relative/unix.socket"}, {}, "global.sources.incus"),
        ({"incus": "http://insecure:8443"}, {}, "global.sources.incus"),
        ({"imagez": "http://x"}, {}, "imagez"),
    ],
)
def test_invalid_sources_are_refused_naming_their_origin(configured, env, names):
    with pytest.raises(SourceError) as err:
        effective_sources(configured, env)
    assert names in err.value.message


def test_gpus_checks_its_endpoint_before_asking_it():
    from click.testing import CliRunner

    from anklume.cli import main

    result = CliRunner().invoke(main, ["gpus", "--incus", "foo"])
    assert result.exit_code == 1
    assert "--incus: 'foo' is not an absolute unix socket path" in result.output
    result = CliRunner().invoke(main, ["gpus"], env={"ANKLUME_INCUS": "bar"})
    assert result.exit_code == 1
    assert "environment variable ANKLUME_INCUS: 'bar'" in result.output

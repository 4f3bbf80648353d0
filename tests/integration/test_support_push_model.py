"""tests.support.models.push_model against the real registry: bytes come back as pushed."""

from __future__ import annotations

import hashlib

from tests.support.models import make_model, push_model


def test_pushed_models_come_back_byte_for_byte(registry):
    a, b = make_model(11, 1, 100_000), make_model(12, 2, 50_000)
    assert push_model(registry, "library/tiny-a", "1b", *a) == a.digest
    assert push_model(registry, "library/tiny-b", "1b", *b) == b.digest
    for repo, model in (("library/tiny-a", a), ("library/tiny-b", b)):
        body, headers = registry.get_manifest(repo, "1b")
        assert body == model.manifest
        assert headers["Docker-Content-Digest"] == model.digest
        for digest in model.blobs:
            assert hashlib.sha256(registry.get_blob(repo, digest)).hexdigest() == digest[7:]

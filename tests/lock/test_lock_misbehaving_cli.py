"""`anklume lock` against a misbehaving source: one clear error, exit 1, nothing written."""

from __future__ import annotations

from tests.lock.conftest import GPU_ARGS
from tests.support.badserve import Misbehaviour
from tests.support.bounded import within


def test_a_dripping_catalogue_fails_lock_cleanly_within_the_deadline(project, bad_serve):
    drip = bad_serve({"/streams/v1/index.json": Misbehaviour(body=b"{" + b" " * 100 + b"}", drip=0.1)})
    env = {"ANKLUME_IMAGES_URL": drip.url, "ANKLUME_FETCH_DEADLINE": "1"}
    result = within(20, lambda: project("lock", *GPU_ARGS, env=env))
    assert result.exit_code == 1
    assert f"GET {drip.url}/streams/v1/index.json did not finish within 1 s" in result.output
    assert "ANKLUME_FETCH_DEADLINE" in result.output and "Traceback" not in result.output
    assert not (project.root / "anklume.lock").exists()


def test_a_bad_deadline_setting_fails_lock_cleanly(project):
    result = project("lock", *GPU_ARGS, env={"ANKLUME_FETCH_DEADLINE": "soon"})
    assert result.exit_code == 1
    assert "ANKLUME_FETCH_DEADLINE='soon' is not a number of seconds above 0" in result.output
    assert len(result.output.splitlines()) <= 3
    assert not (project.root / "anklume.lock").exists()


def test_an_endless_manifest_fails_lock_cleanly(project, bad_serve):
    endless = bad_serve({"/v2/library/llama3.2/manifests/3b": Misbehaviour(content_length=None, endless=True),
                         "/v2/library/gemma/manifests/2b": Misbehaviour(content_length=None, endless=True)})
    result = within(30, lambda: project("lock", *GPU_ARGS, env={"ANKLUME_OLLAMA_REGISTRY": endless.url}))
    assert result.exit_code == 1
    assert "sent more than 4 MiB, the most anklume reads for an Ollama manifest" in result.output
    assert not (project.root / "anklume.lock").exists()

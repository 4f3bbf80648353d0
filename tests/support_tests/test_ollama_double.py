"""The Ollama test double (tests/support/ollama_double.py): its release files and its CLI."""

from __future__ import annotations

import hashlib
import io
import os
import re
import subprocess
import tarfile
from pathlib import Path

import pytest

from anklume.resolve.ollama import parse_sha256sum
from tests.support.models import lay_out_model, make_model
from tests.support.ollama_double import LIB_NAME, build_ollama_release

VERSION = "0.13.1"


@pytest.fixture(scope="module")
def release():
    return build_ollama_release(VERSION)


@pytest.fixture(scope="module")
def ollama(release, tmp_path_factory) -> Path:
    """The double's release unpacked as under /usr/local; returns bin/ollama."""
    prefix = tmp_path_factory.mktemp("usr-local")
    with tarfile.open(fileobj=io.BytesIO(release[0]), mode="r:gz") as tar:
        tar.extractall(prefix, filter="data")
    return prefix / "bin" / "ollama"


def run(ollama: Path, *args: str, models: Path | None = None, home: Path | None = None):
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home or "/nonexistent")}
    if models is not None:
        env["OLLAMA_MODELS"] = str(models)
    return subprocess.run([str(ollama), *args], env=env, capture_output=True, text=True, timeout=30,
                          check=False)


def test_release_is_deterministic_and_summed_like_the_real_ones(release):
    tarball, sums, asset = release
    assert build_ollama_release(VERSION) == release
    assert asset == "ollama-linux-amd64.tgz"
    assert re.fullmatch(rb"[0-9a-f]{64}  \./ollama-linux-amd64\.tgz\n", sums)
    assert parse_sha256sum(sums.decode()) == {asset: hashlib.sha256(tarball).hexdigest()}
    assert build_ollama_release("0.13.2")[0] != tarball


def test_tarball_unpacks_like_a_release(release):
    with tarfile.open(fileobj=io.BytesIO(release[0]), mode="r:gz") as tar:
        members = {m.name: m for m in tar.getmembers()}
        script = tar.extractfile("bin/ollama").read()
        lib = tar.extractfile(f"lib/ollama/{LIB_NAME}").read()
    assert sorted(members) == ["bin", "bin/ollama", "lib", "lib/ollama", f"lib/ollama/{LIB_NAME}"]
    assert members["bin/ollama"].mode == 0o755
    assert script.startswith(b"#!/usr/bin/python3\n")
    assert b"TEST DOUBLE" in script.split(b"import", 1)[0]
    assert 1024 <= len(lib) <= 16384


@pytest.mark.parametrize("flag", ["--version", "-v"])
def test_version(ollama, flag):
    proc = run(ollama, flag)
    assert (proc.returncode, proc.stdout) == (0, f"ollama version is {VERSION} (anklume test double)\n")


def _rows(stdout: str) -> list[list[str]]:
    """The table split on the 4-space column padding."""
    return [re.split(r" {4,}", line.rstrip()) for line in stdout.splitlines()]


def test_list_shows_names_ids_and_sizes(ollama, tmp_path):
    models = tmp_path / "models"
    gemma, other, mirrored = make_model(1, 1, 2_000_000), make_model(2, 2, 700_000), make_model(3, 1, 50_000)
    paths = [
        lay_out_model(models, "gemma:2b", *gemma),
        lay_out_model(models, "someone/tiny", *other),
        lay_out_model(models, "127.0.0.1:5000/library/mirrored:1b", *mirrored),
    ]
    for age, path in zip((30, 3 * 3600, 3 * 86400), paths):  # gemma newest
        os.utime(path, (path.stat().st_mtime - age,) * 2)
    proc = run(ollama, "list", models=models)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    assert _rows(proc.stdout) == [
        ["NAME", "ID", "SIZE", "MODIFIED"],
        ["gemma:2b", gemma.id, "2.0 MB", "30 seconds ago"],
        ["someone/tiny:latest", other.id, "1.4 MB", "3 hours ago"],
        ["127.0.0.1:5000/library/mirrored:1b", mirrored.id, "50 KB", "3 days ago"],
    ]
    # the ID is the sha256 of the manifest file's exact bytes
    assert gemma.id == hashlib.sha256(paths[0].read_bytes()).hexdigest()[:12]
    # columns line up: every line pads each cell to its column's width plus 4 spaces
    lines = proc.stdout.splitlines()
    assert len({len(line) for line in lines}) == 1
    assert lines[1].index(gemma.id) == lines[0].index("ID")


def test_list_filters_by_prefix_and_defaults_to_home(ollama, tmp_path):
    models = tmp_path / ".ollama" / "models"
    lay_out_model(models, "gemma:2b", *make_model(1, 1, 1000))
    lay_out_model(models, "llama3.2:3b", *make_model(2, 1, 1000))
    proc = run(ollama, "list", "LLAMA", home=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert [row[0] for row in _rows(proc.stdout)] == ["NAME", "llama3.2:3b"]


def test_list_of_an_empty_store(ollama, tmp_path):
    proc = run(ollama, "list", models=tmp_path / "none")
    assert (proc.returncode, _rows(proc.stdout)) == (0, [["NAME", "ID", "SIZE", "MODIFIED"]])


def test_list_reports_missing_and_wrong_blobs(ollama, tmp_path):
    models = tmp_path / "models"
    manifest, blobs = make_model(1, 1, 5000)
    weights = max(blobs, key=lambda d: len(blobs[d]))
    missing = next(d for d in blobs if blobs[d].startswith(b"{{"))  # the template layer
    lay_out_model(models, "tiny:1b", manifest, blobs, skip_blobs=(missing,))
    blob = models / "blobs" / weights.replace(":", "-")
    blob.write_bytes(blob.read_bytes()[:-1] + b"!")  # same size, other bytes
    proc = run(ollama, "list", models=models)
    assert proc.returncode == 1
    assert [row[0] for row in _rows(proc.stdout)] == ["NAME", "tiny:1b"]
    problems = proc.stderr.splitlines()
    assert len(problems) == 2, proc.stderr
    assert any(p.startswith(f"Error: tiny:1b: missing blob {missing} (") for p in problems)
    assert f"Error: tiny:1b: blob {weights} does not hash to its digest" in problems


def test_list_reports_a_truncated_blob(ollama, tmp_path):
    models = tmp_path / "models"
    manifest, blobs = make_model(4, 1, 5000)
    lay_out_model(models, "tiny:1b", manifest, blobs)
    weights = max(blobs, key=lambda d: len(blobs[d]))
    (models / "blobs" / weights.replace(":", "-")).write_bytes(blobs[weights][:100])
    proc = run(ollama, "list", models=models)
    assert proc.returncode == 1
    assert f"blob {weights} has 100 bytes, the manifest says 5000" in proc.stderr


def test_anything_else_says_it_is_a_double(ollama):
    proc = run(ollama, "serve")
    assert proc.returncode == 2
    assert "test double" in proc.stderr and "serve" in proc.stderr

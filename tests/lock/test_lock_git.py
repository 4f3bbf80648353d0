"""The lock in a real git repository: branches that pinned different things merge into the lock
a fresh `anklume lock` of the merged infra.yml gives, with and without the drivers `anklume init`
registers; the same pin locked differently on both sides is a conflict that writes nothing;
`--ours`/`--theirs`/`--update` end it; the diff driver makes `git diff` read as pins.

Every lock is made against the loopback mirror of the recorded data (tests/support/mirror.py),
as a user's `anklume lock` would be against the real sources."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from anklume.lock.codec import decode_lock
from tests.lock.conftest import GPU_ARGS, Cli
from tests.support.lockfiles import EXAMPLES


GEMMA_PATH = "/registry/v2/library/gemma/manifests/2b"

#: git without the user's or the system's configuration.
GIT_ENV = {"GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1", "GIT_AUTHOR_NAME": "t",
           "GIT_AUTHOR_EMAIL": "t@example.org", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.org",
           "GIT_AUTHOR_DATE": "2026-01-01T00:00:00Z", "GIT_COMMITTER_DATE": "2026-01-01T00:00:00Z"}


class Repo(Cli):
    def git(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
        proc = subprocess.run(["git", *args], cwd=self.root, env={**env, **GIT_ENV}, capture_output=True,
                              text=True)
        if check and proc.returncode != 0:
            raise AssertionError(f"git {' '.join(args)}: {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
        return proc

    def edit(self, old: str, new: str) -> None:
        infra = self.root / "infra.yml"
        text = infra.read_text()
        assert text.count(old) == 1, old
        infra.write_text(text.replace(old, new))

    def lock_ok(self, *args: str, env: dict[str, str] | None = None) -> str:
        result = self("lock", *args, env=env)
        assert result.exit_code == 0, result.output
        return result.output

    def commit(self, message: str) -> None:
        self.git("add", "-A")
        self.git("commit", "-q", "-m", message)


@pytest.fixture
def repo(tmp_path, mirror):
    """gpu-workstation without gemma:2b, locked and committed on `main`."""
    root = tmp_path / "proj"
    shutil.copytree(EXAMPLES / "gpu-workstation", root)
    r = Repo(root, {**mirror.env(), "ANKLUME_CACHE_DIR": str(tmp_path / "cache")})
    r.edit("          - gemma:2b\n", "")
    r.git("init", "-q", "-b", "main")
    r.lock_ok(*GPU_ARGS)
    r.commit("base")
    return r


def branches(repo: Repo) -> None:
    """`main` moves Ollama to 0.13.0; `feature` adds a model and a machine on another image."""
    repo.git("checkout", "-q", "-b", "feature")
    repo.edit("          - llama3.2:3b\n", "          - llama3.2:3b\n          - gemma:2b\n")
    repo.edit("      gw-perso:\n", '      gw-old:\n        os_image: "images:debian/stretch"\n'
                                    '        ip: "10.100.1.11"\n      gw-perso:\n')
    repo.lock_ok()
    repo.commit("feature: a model and a machine")
    repo.git("checkout", "-q", "main")
    repo.edit('    version: "0.13.1"\n', '    version: "0.13.0"\n')
    repo.lock_ok()
    repo.commit("main: ollama 0.13.0")


def fresh_lock_bytes(repo: Repo, tmp_path: Path) -> bytes:
    """`anklume lock` of the working infra.yml from scratch, against the same upstream."""
    fresh = Repo(tmp_path / "fresh", repo.env)
    fresh.root.mkdir()
    shutil.copy(repo.root / "infra.yml", fresh.root / "infra.yml")
    fresh.lock_ok(*GPU_ARGS, env={"ANKLUME_CACHE_DIR": str(tmp_path / "fresh-cache")})
    return fresh.lock_bytes


def test_without_the_drivers_the_conflicted_lock_is_merged_offline_into_the_fresh_lock(repo, mirror, tmp_path):
    branches(repo)
    merge = repo.git("merge", "-q", "feature", check=False)
    assert merge.returncode == 1 and "anklume.lock" in merge.stdout + merge.stderr  # git's text merge conflicts
    assert b"<<<<<<<" in repo.lock_bytes
    mirror.requests.clear()
    out = repo.lock_ok("--offline")
    assert mirror.requests == []  # nothing is fetched: both sides had their pins
    assert "merged anklume.lock from both sides (the merge stages in git's index, with their base)" in out
    assert "ours    ollama: v0.13.0" in out
    assert "theirs  model gemma:2b: sha256:b50d6c999e59" in out
    assert "theirs  image images:debian/stretch:" in out
    assert "dropped ollama: v0.13.1" in out  # the base's: on neither side any more
    assert "next: `git add anklume.lock`" in out
    assert repo.lock_bytes == fresh_lock_bytes(repo, tmp_path)
    repo.git("add", "anklume.lock")
    repo.git("commit", "-q", "--no-edit")
    assert repo("lock", "--check").exit_code == 0


def test_the_markers_alone_are_enough_when_git_has_no_stages(repo, tmp_path):
    branches(repo)
    repo.git("merge", "-q", "feature", check=False)
    conflicted = repo.lock_bytes
    repo.git("add", "anklume.lock")  # the stages are gone, the markers stay
    (repo.root / "anklume.lock").write_bytes(conflicted)
    out = repo.lock_ok("--offline")
    assert "(the conflict markers in the file)" in out
    assert repo.lock_bytes == fresh_lock_bytes(repo, tmp_path)


def test_with_the_drivers_git_merge_completes_and_leaves_the_fresh_lock(repo, tmp_path):
    assert repo("init").exit_code == 0
    repo.commit("anklume init")
    branches(repo)
    merge = repo.git("merge", "--no-edit", "feature")
    assert "anklume: merged anklume.lock pin by pin" in merge.stderr
    assert repo.git("status", "--porcelain").stdout == ""
    assert repo.lock_bytes == fresh_lock_bytes(repo, tmp_path)
    assert repo("lock", "--check").exit_code == 0


def test_the_driver_also_serves_a_rebase(repo, tmp_path):
    assert repo("init").exit_code == 0
    repo.commit("anklume init")
    branches(repo)
    repo.git("checkout", "-q", "feature")
    repo.git("rebase", "-q", "main")
    assert repo.lock_bytes == fresh_lock_bytes(repo, tmp_path)


def update_both_sides_differently(repo: Repo, mirror) -> tuple[bytes, bytes]:
    """Both branches ran `--update gemma:2b`, each on a day the tag served other bytes."""
    repo.edit("          - llama3.2:3b\n", "          - llama3.2:3b\n          - gemma:2b\n")
    repo.lock_ok()
    repo.commit("gemma")
    original = mirror.files[GEMMA_PATH]
    sides = []
    for branch, cut in (("feature", -1), ("main", -2)):
        repo.git("checkout", "-q", "-B", branch) if branch == "feature" else repo.git("checkout", "-q", branch)
        moved = json.loads(original)
        moved["layers"] = moved["layers"][:cut]
        mirror.files[GEMMA_PATH] = json.dumps(moved).encode()
        repo.lock_ok("--update", "gemma:2b")
        repo.commit(f"{branch}: gemma moved")
        sides.append(decode_lock(repo.lock_bytes).models["gemma:2b"].locked.digest)
        if branch == "feature":
            repo.git("checkout", "-q", "main")
    mirror.files[GEMMA_PATH] = original
    theirs, ours = sides
    return ours, theirs


def test_the_same_pin_locked_differently_is_a_conflict_that_writes_nothing(repo, mirror):
    ours, theirs = update_both_sides_differently(repo, mirror)
    repo.git("merge", "-q", "feature", check=False)
    before = repo.lock_bytes
    result = repo("lock", "--offline")
    assert result.exit_code == 1
    assert "1 pin locked differently on the two sides of the merge; nothing was written" in result.output
    assert f"model gemma:2b: ours {ours[:19]}" in result.output and f"theirs {theirs[:19]}" in result.output
    assert "`anklume lock --update gemma:2b`" in result.output
    assert "`anklume lock --ours gemma:2b` or `anklume lock --theirs gemma:2b`" in result.output
    assert repo.lock_bytes == before


@pytest.mark.parametrize("side", ["ours", "theirs"])
def test_ours_or_theirs_keeps_one_side(repo, mirror, side):
    ours, theirs = update_both_sides_differently(repo, mirror)
    repo.git("merge", "-q", "feature", check=False)
    out = repo.lock_ok("--offline", f"--{side}", "gemma:2b")
    assert f"{side} (--{side}) model gemma:2b" in out
    assert decode_lock(repo.lock_bytes).models["gemma:2b"].locked.digest == (ours if side == "ours" else theirs)
    assert repo.lock_ok("--offline").startswith("anklume.lock is up to date")  # merged: the markers are gone


def test_update_re_resolves_the_conflicted_pin(repo, mirror):
    update_both_sides_differently(repo, mirror)
    repo.git("merge", "-q", "feature", check=False)
    out = repo.lock_ok("--update", "gemma:2b")
    assert "resolved model gemma:2b: sha256:b50d6c999e59" in out  # today's upstream: the recorded manifest


def test_a_real_conflict_with_the_drivers_leaves_git_conflicted_with_a_readable_message(repo, mirror):
    assert repo("init").exit_code == 0
    repo.commit("anklume init")
    ours, theirs = update_both_sides_differently(repo, mirror)
    merge = repo.git("merge", "feature", check=False)
    assert merge.returncode == 1
    assert "anklume: anklume.lock: 1 pin locked differently on the two sides:" in merge.stderr
    assert f"anklume:   model gemma:2b: ours {ours[:19]}" in merge.stderr
    assert "CONFLICT" in merge.stdout and "anklume.lock" in merge.stdout
    assert "UU anklume.lock" in repo.git("status", "--porcelain").stdout
    assert b"<<<<<<< ours" in repo.lock_bytes
    out = repo.lock_ok("--offline", "--theirs", "gemma:2b")
    assert decode_lock(repo.lock_bytes).models["gemma:2b"].locked.digest == theirs
    assert "theirs (--theirs) model gemma:2b" in out


def test_a_conflicted_infra_yml_is_a_clear_error(repo):
    repo.git("checkout", "-q", "-b", "feature")
    repo.edit('    version: "0.13.1"\n', '    version: "0.12.10"\n')
    repo.lock_ok()
    repo.commit("feature: 0.12.10")
    repo.git("checkout", "-q", "main")
    repo.edit('    version: "0.13.1"\n', '    version: "0.13.0"\n')
    repo.lock_ok()
    repo.commit("main: 0.13.0")
    repo.git("merge", "-q", "feature", check=False)
    before = repo.lock_bytes
    result = repo("lock", "--offline")
    assert result.exit_code == 1
    assert "infra.yml: git's conflict markers (line 16): the merge of infra.yml is not finished" in result.output
    assert "Traceback" not in result.output
    assert repo.lock_bytes == before


def test_the_diff_driver_shows_pins(repo):
    assert repo("init").exit_code == 0
    repo.commit("anklume init")
    repo.edit("          - llama3.2:3b\n", "          - llama3.2:3b\n          - gemma:2b\n")
    repo.lock_ok()
    diff = repo.git("diff", "anklume.lock").stdout
    assert "+model gemma:2b: sha256:b50d6c999e59 1.6 GiB" in diff
    assert '"mediaType"' not in diff
    log = repo.git("log", "-p", "-1", "--format=", "--", "anklume.lock").stdout  # the first commit: every pin
    assert "+gpu gw-llm: 0000:00:06.0 NVIDIA H200 GPU-9e1c631b" in log


def test_build_and_verify_on_a_conflicted_lock_say_how_to_finish(repo):
    branches(repo)
    repo.git("merge", "-q", "feature", check=False)
    for command in (("build", "--no-apply"), ("verify",), ("lock", "--check")):
        result = repo(*command)
        assert result.exit_code == 1
        assert "conflict markers" in result.output and "anklume lock" in result.output, result.output
        assert "delete it" not in result.output


def test_the_driver_also_serves_a_cherry_pick(repo, tmp_path):
    """A cherry-pick leaves no merge state while it runs: their commit is the one that brought their lock."""
    assert repo("init").exit_code == 0
    repo.commit("anklume init")
    branches(repo)
    picked = repo.git("cherry-pick", "feature")
    assert "anklume: merged anklume.lock pin by pin" in picked.stderr
    assert repo.git("status", "--porcelain").stdout == ""
    assert repo.lock_bytes == fresh_lock_bytes(repo, tmp_path)

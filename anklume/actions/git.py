"""The few questions anklume asks git, through ``git`` itself (argument lists, never a shell).

anklume never needs git: outside a work tree, or without git installed, every question
here answers None (or False) and the caller goes on without it.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence
from pathlib import Path

#: Variables that point git elsewhere than the folder asked about (a hook's environment has them).
_GIT_ENV = ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_PREFIX", "GIT_OBJECT_DIRECTORY")


class GitError(Exception):
    def __init__(self, args: Sequence[str], stderr: str):
        super().__init__(f"git {' '.join(args)}: {stderr.strip() or 'failed'}")
        self.stderr = stderr


class Git:
    """git run in ``cwd``."""

    def __init__(self, cwd: Path, *, keep_env: bool = False):
        self.cwd = cwd
        env = dict(os.environ)
        if not keep_env:
            for name in _GIT_ENV:
                env.pop(name, None)
        env["LC_ALL"] = "C"
        self.env = env

    def run(self, *args: str, input: bytes | None = None, ok: Sequence[int] = (0,)) -> tuple[int, bytes]:
        """(exit code, stdout); ``GitError`` for an exit code not in ``ok`` or no git at all."""
        try:
            proc = subprocess.run(["git", *args], cwd=self.cwd, env=self.env, input=input,
                                  capture_output=True, check=False)
        except OSError as exc:
            raise GitError(args, f"cannot run git: {exc.strerror or exc}") from None
        if proc.returncode not in ok:
            raise GitError(args, proc.stderr.decode("utf-8", "replace"))
        return proc.returncode, proc.stdout

    def out(self, *args: str) -> str:
        return self.run(*args)[1].decode("utf-8", "surrogateescape").strip()

    def toplevel(self) -> Path | None:
        """The work tree's top folder, None outside one (or without git)."""
        try:
            top = self.out("rev-parse", "--show-toplevel")
        except GitError:
            return None
        return Path(top) if top else None

    def git_dir(self) -> Path | None:
        try:
            return Path(self.cwd, self.out("rev-parse", "--git-dir"))
        except GitError:
            return None

    def stages(self, path: str) -> dict[int, str]:
        """The merge stages the index holds for ``path`` (1 base, 2 ours, 3 theirs) -> blob id;
        empty when the path is merged (or outside a work tree)."""
        try:
            listing = self.run("ls-files", "-u", "-z", "--", path)[1]
        except GitError:
            return {}
        stages: dict[int, str] = {}
        for entry in listing.split(b"\0"):
            if not entry:
                continue
            meta, _, _name = entry.partition(b"\t")
            _mode, sha, stage = meta.decode().split()
            stages[int(stage)] = sha
        return stages

    def blob(self, spec: str) -> bytes | None:
        """The bytes of a blob (``<id>``, ``REV:path``, ``:2:path``), None if there is none."""
        try:
            return self.run("cat-file", "blob", spec)[1]
        except GitError:
            return None

    def blob_id(self, spec: str) -> str | None:
        try:
            return self.out("rev-parse", "--verify", "--quiet", spec) or None
        except GitError:
            return None

    def hash_object(self, data: bytes) -> str:
        return self.run("hash-object", "--stdin", input=data)[1].decode().strip()

    def config_get(self, key: str) -> str | None:
        try:
            code, out = self.run("config", "--local", "--get", key, ok=(0, 1))
        except GitError:
            return None
        return out.decode("utf-8", "surrogateescape").rstrip("\n") if code == 0 else None

    def config_set(self, key: str, value: str) -> None:
        self.run("config", "--local", key, value)

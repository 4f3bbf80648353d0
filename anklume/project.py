"""Where a project's files are: ``infra.yml``, ``anklume.lock`` beside it, and
the generated Ansible tree in the same directory (as the original wrote it)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from anklume.errors import AnklumeError, StaleLock
from anklume.fsio import read_or_none
from anklume.lock.codec import decode_lock, infra_hash
from anklume.lock.schema import Lock
from anklume.model.load import load_infra
from anklume.model.schema import Infra

LOCK_NAME = "anklume.lock"


@dataclass(frozen=True)
class Project:
    infra_file: Path

    @property
    def root(self) -> Path:
        return self.infra_file.parent

    @property
    def lock_file(self) -> Path:
        return self.root / LOCK_NAME

    def load_infra(self) -> Infra:
        data = read_or_none(self.infra_file)
        if data is None:
            raise AnklumeError(f"{self.infra_file}: no such file",
                               "run anklume in the directory of your infra.yml, or pass -f PATH")
        return load_infra(data, str(self.infra_file))

    def read_lock(self) -> Lock | None:
        data = read_or_none(self.lock_file)
        return None if data is None else decode_lock(data, str(self.lock_file))

    def fresh_lock(self, infra: Infra) -> Lock:
        """The lock, refusing a missing or stale one (build and verify never re-resolve)."""
        lock = self.read_lock()
        if lock is None:
            raise StaleLock(f"{self.lock_file}: no lock file", "run `anklume lock` first")
        if lock.infra_hash != infra_hash(infra):
            raise StaleLock(f"{self.lock_file} is stale: {self.infra_file.name} changed since it was locked",
                            "run `anklume lock` (existing pins are kept) and commit the new lock")
        return lock

"""One error boundary: every failure a user can cause is an AnklumeError.

The CLI turns these into a one-screen message and an exit code; a traceback is
shown only with ``-v``.  Exit codes (documented in the README):

- 0: success / nothing to do
- 1: an error (invalid input, stale lock, failed fetch, failed check)
- 2: ``build --plan``: changes pending (not an error), and nothing else
- 3: a usage error: unknown option or command, bad option value (click's own
  code is 2, which would read as "changes pending")
- 130: interrupted (Ctrl-C), at the CLI boundary (``anklume.cli.run``)
"""

from __future__ import annotations

from dataclasses import dataclass, field

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_CHANGES = 2
EXIT_USAGE = 3
EXIT_INTERRUPTED = 130


@dataclass(frozen=True)
class Problem:
    """One problem in one input file, at one key path."""

    file: str
    path: str  # key path as a user reads it: domains.homelab.machines.pw-llm.gpu
    message: str  # what is wrong / what was expected
    line: int | None = None
    hint: str | None = None

    def render(self) -> str:
        where = self.file
        if self.line is not None:
            where += f":{self.line}"
        text = f"{where}: {self.path or '(top level)'}: {self.message}"
        if self.hint:
            text += f"\n    hint: {self.hint}"
        return text


class AnklumeError(Exception):
    """Base of every error a user can cause; carries an exit code and a hint."""

    exit_code = EXIT_ERROR

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def render(self) -> str:
        text = f"error: {self.message}"
        if self.hint:
            text += f"\n  hint: {self.hint}"
        return text


@dataclass
class InvalidInfra(AnklumeError):
    """infra.yml has one or more problems; all of them are reported at once."""

    problems: list[Problem] = field(default_factory=list)

    def __post_init__(self) -> None:
        n = len(self.problems)
        AnklumeError.__init__(self, f"{n} problem{'s' if n != 1 else ''} found; nothing was written")

    def render(self) -> str:
        lines = [p.render() for p in self.problems]
        lines.append(f"error: {self.message}")
        return "\n".join(lines)


class StaleLock(AnklumeError):
    """The lock does not match infra.yml."""


class LockFormatError(AnklumeError):
    """The lock file cannot be read (corrupt, or written by a newer anklume)."""


class SourceError(AnklumeError):
    """A remote source (simplestreams, registry, releases, Incus) failed or answered nonsense."""


class ResolveError(AnklumeError):
    """A pin cannot be resolved (unknown alias, no GPU, model too large...)."""


class OfflineMiss(ResolveError):
    """--offline and the answer is neither in the lock nor in the cache."""

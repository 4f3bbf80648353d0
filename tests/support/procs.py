"""Small process helpers shared by the test daemons (argument lists only, never a shell)."""

from __future__ import annotations

import os
import sys
import shutil
import signal
import subprocess
import time
from collections.abc import Iterable, Iterator, Sequence


class SetupError(RuntimeError):
    """The machine lacks something the integration tests need (run scripts/setup.sh)."""


class CommandError(subprocess.CalledProcessError):
    """A CalledProcessError whose message carries the command's stderr."""

    def __str__(self) -> str:
        detail = (self.stderr or self.output or "").strip()
        return f"{' '.join(map(str, self.cmd))} exited {self.returncode}: {detail}"


SETUP_HINT = "run `scripts/setup.sh` as root to install the test daemons"


def require_root() -> None:
    if os.geteuid() != 0:
        raise SetupError(
            "the integration tests must run as root (network namespaces, incusd); "
            "prepare the machine with `scripts/setup.sh` (as root)"
        )


def find_binary(*candidates: str) -> str:
    """First existing executable among absolute paths or names on PATH."""
    for cand in candidates:
        if os.path.isabs(cand):
            if os.access(cand, os.X_OK):
                return cand
        else:
            found = shutil.which(cand)
            if found:
                return found
    raise SetupError(f"none of {', '.join(candidates)} found; {SETUP_HINT}")


def run(
    argv: Sequence[str],
    *,
    env: dict[str, str] | None = None,
    input: str | bytes | None = None,
    check: bool = True,
    timeout: float | None = 120,
    text: bool = True,
) -> subprocess.CompletedProcess:
    """Run argv, capture output; on failure raise with the command's stderr in the message."""
    if isinstance(input, bytes):
        text = False
    proc = subprocess.run(
        list(argv),
        env=env,
        input=input,
        capture_output=True,
        text=text,
        timeout=timeout,
        check=False,
    )
    if check and proc.returncode != 0:
        err = proc.stderr if text else proc.stderr.decode(errors="replace")
        out = proc.stdout if text else proc.stdout.decode(errors="replace")
        raise CommandError(proc.returncode, list(argv), output=out, stderr=err)
    return proc


def pid_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return False
    # state is the field right after the ")" closing the command name
    state = stat[stat.rindex(b")") + 2 : stat.rindex(b")") + 3]
    return state not in (b"Z", b"X")


def each_process(name: str) -> Iterator[tuple[int, bytes]]:
    """(pid, the bytes of /proc/<pid>/<name>) for every process visible now (those gone while
    read are left out)."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/{name}", "rb") as f:
                data = f.read()
        except OSError:
            continue
        yield int(entry), data


def children_map() -> dict[int, list[int]]:
    """ppid -> [pid] for every process visible now."""
    out: dict[int, list[int]] = {}
    for pid, stat in each_process("stat"):
        rest = stat[stat.rindex(b")") + 2 :].split()
        out.setdefault(int(rest[1]), []).append(pid)
    return out


def with_descendants(pids: Iterable[int]) -> list[int]:
    """The given PIDs and all their descendants (one /proc snapshot)."""
    kids = children_map()
    seen: set[int] = set()
    stack = [p for p in pids if p > 1]
    while stack:
        p = stack.pop()
        if p in seen or p <= 1 or p == os.getpid():
            continue
        seen.add(p)
        stack.extend(kids.get(p, ()))
    return sorted(seen)


def kill_pids(pids: Iterable[int], sig: int = signal.SIGKILL) -> None:
    for pid in pids:
        if pid <= 1 or pid == os.getpid():
            continue
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def stop_process(proc: subprocess.Popen, timeout: float = 10.0) -> None:
    """SIGTERM our own child, then SIGKILL after timeout; always reap it."""
    if proc.poll() is None:
        try:
            proc.terminate()
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=timeout)


def wait_until(pred, timeout: float, interval: float = 0.05, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while True:
        if pred():
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def tail(path: str, n: int = 40) -> str:
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-n:])
    except OSError:
        return "(no log)"


class StartedOnEnter:
    """A context manager for something with ``start()`` and ``stop()``: started on enter, always
    stopped on exit; a start that fails stops what it began (and keeps its own error)."""

    def __enter__(self):
        try:
            self.start()
        except BaseException:
            try:
                self.stop()
            except Exception as e:  # keep the start error, which says more
                print(f"(after failed start) {e}", file=sys.stderr)
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

"""Run tasks in dependency order, independent ones in parallel.

- ``execute(tasks, jobs=4)``: a ThreadPoolExecutor runs every task whose dependencies are done;
  a dependency that is not among the tasks counts as done (an unchanged unit);
- a failed task stops its dependents, transitively: they are reported ``skipped`` with the
  failing task and its error text; unrelated branches run to the end;
- a dependency cycle is refused before anything runs, with the whole path ``a -> b -> a``;
- progress: a rich live display on a terminal, plain lines otherwise (:func:`make_progress`).

The executor knows nothing of Incus: a task is an id, a callable and its dependencies.
"""

from __future__ import annotations

import threading
import time
import traceback
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Literal, Protocol, TextIO

from anklume.errors import AnklumeError

Status = Literal["ok", "failed", "skipped"]


@dataclass(frozen=True)
class Task:
    id: str
    run: Callable[[], object]
    deps: tuple[str, ...] = ()
    label: str = ""  # what the progress display says ("create instance web")
    #: ordering only: run after these have finished, whatever their outcome (no skip propagation)
    after: tuple[str, ...] = ()

    @property
    def title(self) -> str:
        return self.label or self.id


@dataclass(frozen=True)
class Outcome:
    id: str
    status: Status
    error: str | None = None
    seconds: float = 0.0
    #: the traceback of an unexpected exception (a bug), for ``-v``; None for user errors
    trace: str | None = None


class CycleError(AnklumeError):
    """The tasks' dependencies form a cycle."""


class Progress(Protocol):
    def started(self, task: Task) -> None: ...
    def finished(self, task: Task, outcome: Outcome) -> None: ...
    def close(self) -> None: ...


class NoProgress:
    def started(self, task: Task) -> None:
        pass

    def finished(self, task: Task, outcome: Outcome) -> None:
        pass

    def close(self) -> None:
        pass


BUG_HINT = "this is a bug in anklume: run again with -v for the traceback, and report it"


def error_text(exc: BaseException) -> str:
    """One line: a user error's message; for anything else, its type and text, said to be a bug."""
    if isinstance(exc, AnklumeError):
        return exc.message
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text} ({BUG_HINT})" if text else f"{type(exc).__name__} ({BUG_HINT})"


def check_acyclic(tasks: Sequence[Task]) -> None:
    by_id = {t.id: t for t in tasks}
    state: dict[str, int] = {}

    def visit(tid: str, path: list[str]) -> None:
        if state.get(tid) == 2:
            return
        if state.get(tid) == 1:
            raise CycleError("dependency cycle: " + " -> ".join(path[path.index(tid):] + [tid]))
        state[tid] = 1
        for dep in (*by_id[tid].deps, *by_id[tid].after):
            if dep in by_id:
                visit(dep, path + [tid])
        state[tid] = 2

    for tid in by_id:
        visit(tid, [])


def execute(tasks: Iterable[Task], *, jobs: int = 4, progress: Progress | None = None) -> dict[str, Outcome]:
    """Run ``tasks``; return each task's outcome, in the order given."""
    tasks = list(tasks)
    if len({t.id for t in tasks}) != len(tasks):
        raise AnklumeError("duplicate task ids")
    check_acyclic(tasks)
    progress = progress or NoProgress()
    by_id = {t.id: t for t in tasks}
    waiting = {t.id: {d for d in (*t.deps, *t.after) if d in by_id} for t in tasks}
    dependents: dict[str, list[str]] = {t.id: [] for t in tasks}  # hard dependents: skipped on failure
    followers: dict[str, list[str]] = {t.id: [] for t in tasks}  # everything waiting on it
    for t in tasks:
        for d in waiting[t.id]:
            followers[d].append(t.id)
            if d in t.deps:
                dependents[d].append(t.id)
    outcomes: dict[str, Outcome] = {}
    lock = threading.Lock()

    def run(task: Task) -> Outcome:
        t0 = time.monotonic()
        try:
            task.run()
        except Exception as exc:  # noqa: BLE001 - every failure is reported, dependents skipped
            trace = None if isinstance(exc, AnklumeError) else traceback.format_exc()
            return Outcome(task.id, "failed", error_text(exc), time.monotonic() - t0, trace)
        return Outcome(task.id, "ok", None, time.monotonic() - t0)

    def skip(root: str, error: str) -> None:
        pending = list(dependents[root])
        while pending:
            tid = pending.pop(0)
            if tid in outcomes:
                continue
            outcome = Outcome(tid, "skipped", f"{root} failed: {error}" if root else error)
            outcomes[tid] = outcome
            progress.finished(by_id[tid], outcome)
            pending.extend(dependents[tid])
            for follower in followers[tid]:  # ordering-only followers may go on
                if follower in waiting:
                    waiting[follower].discard(tid)

    running: dict[Future, Task] = {}
    with ThreadPoolExecutor(max_workers=max(1, jobs), thread_name_prefix="anklume-unit") as pool:
        try:
            while True:
                ready = [tid for tid, deps in waiting.items() if not deps and tid not in outcomes
                         and all(t.id != tid for t in running.values())]
                for tid in ready:
                    progress.started(by_id[tid])
                    running[pool.submit(run, by_id[tid])] = by_id[tid]
                if not running:
                    break
                done, _ = wait(list(running), return_when=FIRST_COMPLETED)
                for fut in done:
                    task = running.pop(fut)
                    outcome = fut.result()
                    with lock:
                        outcomes[task.id] = outcome
                    progress.finished(task, outcome)
                    del waiting[task.id]
                    if outcome.status != "ok":
                        skip(task.id, outcome.error or "failed")
                    for tid in [t for t in waiting if t in outcomes]:
                        del waiting[tid]
                    for follower in followers[task.id]:
                        if follower in waiting:
                            waiting[follower].discard(task.id)
        except BaseException:
            for fut in running:
                fut.cancel()
            raise
        finally:
            progress.close()
    return {t.id: outcomes.get(t.id) or Outcome(t.id, "skipped", "not run") for t in tasks}


# -- progress displays ----------------------------------------------------------------------------

_MARK = {"ok": "done", "failed": "FAILED", "skipped": "skipped"}


class PlainProgress:
    """One line per finished task: ``[ 3/10] done     create instance web (0.4s)``."""

    def __init__(self, total: int, stream: TextIO):
        self.total, self.stream, self.n = total, stream, 0
        self._lock = threading.Lock()

    def started(self, task: Task) -> None:
        pass

    def finished(self, task: Task, outcome: Outcome) -> None:
        with self._lock:
            self.n += 1
            line = f"[{self.n:>{len(str(self.total))}}/{self.total}] {_MARK[outcome.status]:<8} {task.title}"
            if outcome.status == "ok":
                line += f" ({outcome.seconds:.1f}s)"
            if outcome.error:
                line += f": {outcome.error}"
            print(line, file=self.stream, flush=True)

    def close(self) -> None:
        pass


class RichProgress:
    """A rich live display: a bar, the running tasks, and a line per finished task."""

    def __init__(self, total: int, console):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.console = console
        self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                            TimeElapsedColumn(), console=console, transient=True)
        self.tid = self.bar.add_task("applying", total=total)
        self.running: list[str] = []
        self._lock = threading.Lock()
        self.bar.start()

    def started(self, task: Task) -> None:
        with self._lock:
            self.running.append(task.title)
            self.bar.update(self.tid, description=", ".join(self.running[-3:]) or "applying")

    def finished(self, task: Task, outcome: Outcome) -> None:
        from rich.markup import escape

        style = {"ok": "green", "failed": "bold red", "skipped": "yellow"}[outcome.status]
        with self._lock:
            if task.title in self.running:
                self.running.remove(task.title)
            text = f"[{style}]{_MARK[outcome.status]:<8}[/] {escape(task.title)}"
            if outcome.error:
                text += f": {escape(outcome.error)}"
            self.bar.console.print(text, highlight=False, markup=True)
            self.bar.update(self.tid, advance=1, description=", ".join(self.running[-3:]) or "applying")

    def close(self) -> None:
        self.bar.stop()


def make_progress(total: int, console) -> Progress:
    """Rich on a terminal, plain lines otherwise."""
    if console.is_terminal:
        return RichProgress(total, console)
    return PlainProgress(total, console.file)

"""The executor: dependency order, parallelism, failure propagation, progress."""

from __future__ import annotations

import io
import threading
import time

import pytest

from anklume.errors import AnklumeError
from anklume.executor import CycleError, PlainProgress, Task, execute


def recorder():
    order: list[str] = []
    lock = threading.Lock()

    def task(tid, deps=(), fail=False, sleep=0.0):
        def run():
            time.sleep(sleep)
            if fail:
                raise AnklumeError(f"Incus refused {tid}: boom")
            with lock:
                order.append(tid)
        return Task(tid, run, tuple(deps))
    return order, task


def test_dependency_order():
    order, t = recorder()
    tasks = [t("c", ["b"]), t("b", ["a"]), t("a"), t("d", ["a", "c"])]
    out = execute(tasks, jobs=4)
    assert order == ["a", "b", "c", "d"]
    assert [o.status for o in out.values()] == ["ok"] * 4
    assert list(out) == ["c", "b", "a", "d"]  # outcomes in the order given


def test_dependencies_outside_the_task_set_count_as_done():
    order, t = recorder()
    out = execute([t("x", ["unchanged-unit"])])
    assert out["x"].status == "ok" and order == ["x"]


def test_failure_skips_dependents_transitively_not_unrelated_branches():
    order, t = recorder()
    tasks = [t("p1"), t("prof1", ["p1"], fail=True), t("i1", ["prof1"]), t("role1", ["i1"]),
             t("p2"), t("prof2", ["p2"]), t("i2", ["prof2"], sleep=0.05)]
    out = execute(tasks, jobs=2)
    assert out["prof1"].status == "failed" and out["prof1"].error == "Incus refused prof1: boom"
    assert out["i1"].status == "skipped" and out["role1"].status == "skipped"
    assert out["i1"].error == "prof1 failed: Incus refused prof1: boom"
    assert out["role1"].error == "prof1 failed: Incus refused prof1: boom"
    assert {k for k, o in out.items() if o.status == "ok"} == {"p1", "p2", "prof2", "i2"}
    assert "i2" in order


def test_independent_tasks_run_in_parallel_up_to_jobs():
    running = 0
    peak = 0
    lock = threading.Lock()

    def work():
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        time.sleep(0.1)
        with lock:
            running -= 1

    tasks = [Task(f"t{i}", work) for i in range(8)]
    t0 = time.monotonic()
    execute(tasks, jobs=4)
    elapsed = time.monotonic() - t0
    assert peak == 4
    assert elapsed < 0.6  # 8 x 0.1 s in two waves, not eight

    peak = 0
    execute(tasks[:3], jobs=1)
    assert peak == 1


def test_unexpected_exception_is_a_failure_with_its_text():
    def boom():
        raise RuntimeError("socket closed")
    out = execute([Task("a", boom), Task("b", lambda: None, ("a",))])
    assert out["a"].status == "failed" and out["a"].error.startswith("RuntimeError: socket closed (this is a bug")
    assert out["b"].status == "skipped"


def test_cycle_is_refused_with_its_path_before_anything_runs():
    ran = []
    tasks = [Task("a", lambda: ran.append("a"), ("c",)), Task("b", lambda: ran.append("b"), ("a",)),
             Task("c", lambda: ran.append("c"), ("b",)), Task("z", lambda: ran.append("z"))]
    with pytest.raises(CycleError, match="a -> c -> b -> a"):
        execute(tasks)
    assert ran == []


def test_plain_progress_lines():
    buf = io.StringIO()
    order, t = recorder()
    tasks = [t("a"), t("b", ["a"], fail=True), t("c", ["b"])]
    execute(tasks, jobs=1, progress=PlainProgress(len(tasks), buf))
    lines = buf.getvalue().splitlines()
    assert lines[0].startswith("[1/3] done     a (")
    assert lines[1] == "[2/3] FAILED   b: Incus refused b: boom"
    assert lines[2] == "[3/3] skipped  c: b failed: Incus refused b: boom"


def test_rich_progress_on_a_terminal():
    from rich.console import Console

    from anklume.executor import RichProgress, make_progress

    buf = io.StringIO()
    console = Console(file=buf, force_terminal=True, width=100)
    progress = make_progress(2, console)
    assert isinstance(progress, RichProgress)
    execute([Task("a", lambda: None), Task("b", lambda: None, ("a",))], progress=progress)
    assert "done" in buf.getvalue()
    assert isinstance(make_progress(1, Console(file=io.StringIO())), PlainProgress)


def test_ordering_only_dependencies_wait_but_do_not_propagate_failure():
    order, t = recorder()
    tasks = [t("net-a", fail=True), t("net-b", sleep=0.05),
             Task("inst-b", lambda: order.append("inst-b"), deps=("net-b",), after=("net-a",)),
             Task("inst-a", lambda: order.append("inst-a"), deps=("net-a",), after=("net-b",))]
    out = execute(tasks, jobs=4)
    assert out["inst-b"].status == "ok" and out["inst-a"].status == "skipped"
    assert order == ["net-b", "inst-b"]
    # a cycle through ordering-only edges is a cycle too
    with pytest.raises(CycleError):
        execute([Task("x", lambda: None, after=("y",)), Task("y", lambda: None, deps=("x",))])


def test_ordering_only_follower_of_a_skipped_task_still_runs():
    order, t = recorder()
    tasks = [t("a", fail=True), t("b", ["a"]), Task("c", lambda: order.append("c"), after=("b",))]
    out = execute(tasks)
    assert [out[x].status for x in "abc"] == ["failed", "skipped", "ok"] and order == ["c"]


def test_a_bug_in_a_unit_keeps_its_traceback_and_says_it_is_a_bug():
    def broken():
        return {}["pool"]

    def refused():
        raise AnklumeError("Incus refused POST /1.0/instances: already exists")

    out = execute([Task("instance:web", broken), Task("instance:db", refused)], jobs=1)
    bug, user = out["instance:web"], out["instance:db"]
    assert bug.status == "failed" and bug.error.startswith("KeyError: 'pool' (this is a bug in anklume")
    assert "Traceback" in bug.trace and 'return {}["pool"]' in bug.trace
    assert user.error == "Incus refused POST /1.0/instances: already exists" and user.trace is None

"""Fixtures that start real daemons, privately, for the integration tests.

- `incus` (session): a `tests.support.incusd.PrivateIncus`: incusd in its own network namespace
  and state dir, `dir` pool `default`, busybox image imported as alias `busybox` in project
  `default`. API: `.socket`, `.client(project=None)` (pylxd), `.incus(*args) -> stdout`,
  `.env`, `.ensure_busybox_image(alias, project)`, `.ensure_debian_python_image(alias,
  project)`, `.create_project(name, config)`, `.purge_project(name)`, `.netns`.
- `incus_project` (function): a fresh project name (default features, root disk on its default
  profile, busybox image imported into it), purged after the test.
- `registry` (session): a `tests.support.registry.LocalRegistry` on 127.0.0.1: `.url`,
  `.host`, `.push_blob(repo, data)`, `.push_manifest(repo, tag, bytes, media_type)`,
  `.get_manifest(repo, ref, accept)`, `.get_blob(repo, digest)`.
- `http_serve` (function): factory; `http_serve({"/path": b"..."}, status=..., delay=...)`
  returns a started `tests.support.httpserve.StaticHTTPServer` (stopped after the test).
- `tests.support.events.EventCounter(incus)`: count lifecycle events / API requests.
- `cluster` (session, started only when a test asks for it): a 3-member
  `tests.support.cluster.PrivateCluster` (m1..m3, one network namespace each, dir pool
  `default`, `cluster.offline_threshold` 11 s), busybox image imported as alias `busybox` in
  project `default`; no network, no other project. API: `.members`, `.member(m)`,
  `.socket(m)`, `.env(m)`, `.incus(*args, member="m1")`, `.client(member, project)`,
  `.query(path)`, `.member_status(name)`, `.statuses()`, `.wait_status(name, status, timeout)`,
  `.kill_member(name)`, `.restart_member(name)`, `.create_project(name, config)`,
  `.purge_project(name)`, `.ensure_busybox_image(alias, project)`.

Every test in this directory is marked `integration`. A missing prerequisite (not root, incusd
or docker-registry not installed) makes the fixture FAIL with a pointer to scripts/setup.sh: the
integration suite is never silently skipped.
"""

from __future__ import annotations

import itertools
import signal
import sys
import threading
import time
from pathlib import Path

import pytest

_REPO = Path(__file__).resolve().parents[2]
if str(_REPO) not in sys.path:  # `tests.support` importable however pytest is started
    sys.path.insert(0, str(_REPO))

from tests.support.incusd import PrivateIncus, check_prerequisites  # noqa: E402
from tests.support.procs import SetupError, find_binary  # noqa: E402
from tests.support.registry import LocalRegistry  # noqa: E402

_HERE = Path(__file__).resolve().parent
_timings: dict[str, float] = {}


def _sigterm(signum, frame):
    raise KeyboardInterrupt("SIGTERM")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "slow: builds or boots something big (deselect with -m 'not slow')"
    )
    # `timeout` and CI runners stop pytest with SIGTERM, which by default kills Python without
    # any teardown and would leave the private daemons running: make it an interrupt instead.
    if (threading.current_thread() is threading.main_thread()
            and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL):
        signal.signal(signal.SIGTERM, _sigterm)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if _HERE in Path(item.path).resolve().parents:
            item.add_marker(pytest.mark.integration)


def pytest_terminal_summary(terminalreporter) -> None:
    if _timings:
        parts = ", ".join(f"{k} {v:.2f}s" for k, v in _timings.items())
        terminalreporter.write_line(f"integration fixtures: {parts}")


def _require(check) -> None:
    """Fail (never skip) with the setup hint when the machine lacks a prerequisite."""
    try:
        check()
        problem = None
    except SetupError as e:
        problem = str(e)
    if problem:
        pytest.fail(problem, pytrace=False)


@pytest.fixture(scope="session")
def incus():
    _require(check_prerequisites)
    t0 = time.monotonic()
    with PrivateIncus() as inc:
        _timings["incusd start"] = inc.startup_seconds or 0.0
        t1 = time.monotonic()
        inc.ensure_busybox_image()
        _timings["busybox image"] = time.monotonic() - t1
        _timings["incus fixture total"] = time.monotonic() - t0
        yield inc


_project_ids = itertools.count(1)


@pytest.fixture
def incus_project(incus):
    name = f"t{next(_project_ids)}"
    incus.purge_project(name)
    incus.create_project(name)
    incus.ensure_busybox_image(project=name)
    try:
        yield name
    finally:
        incus.purge_project(name)


@pytest.fixture(scope="session")
def registry():
    _require(lambda: find_binary("docker-registry"))
    t0 = time.monotonic()
    with LocalRegistry() as reg:
        _timings["registry start"] = time.monotonic() - t0
        yield reg


@pytest.fixture
def env(incus, tmp_path):
    """A build environment of its own (distinct domains and subnets), purged afterwards."""
    from tests.integration.build_env import BuildEnv

    e = BuildEnv(incus, tmp_path, incus.ensure_busybox_image())
    try:
        yield e
    finally:
        e.cleanup()


@pytest.fixture(scope="session")
def cluster():
    """A real 3-member Incus cluster (tests/support/cluster.py), for the tests that ask."""
    from tests.support import cluster as cluster_support

    _require(cluster_support.check_prerequisites)
    cl = cluster_support.PrivateCluster(members=3)
    with cl:
        _timings["cluster start (3 members)"] = cl.startup_seconds or 0.0
        t0 = time.monotonic()
        cl.ensure_busybox_image()
        _timings["cluster busybox image"] = time.monotonic() - t0
        yield cl
    _timings.update(cl.timings)  # what the tests measured, and the stop

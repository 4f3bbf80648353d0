"""Plan + executor against an in-memory backend: convergence, ordering, failure propagation."""

from __future__ import annotations

from anklume.engine import apply_plan, observe_and_plan
from anklume.store import SpecStore
from anklume.units.build import build_units
from tests.executor.memory import MemoryBackend
from tests.units.infra import FP_B, make_infra, make_lock, two_domains, with_fingerprint


def build(graph, backend, store, **kw):
    plan, live = observe_and_plan(graph, backend, store, prune=kw.pop("prune", False), replace=kw.pop("replace", False))
    return plan, apply_plan(plan, graph, live, backend, store, jobs=kw.pop("jobs", 4), replace=False)


def test_build_converges_and_respects_dependencies(tmp_path):
    infra = make_infra(two_domains())
    g = build_units(infra, make_lock(infra))
    backend = MemoryBackend(delay=0.01)
    store = SpecStore(tmp_path)
    plan, results = build(g, backend, store)
    assert all(o.status == "ok" for o in results.values()) and len(results) == len(g)
    done = [uid for _, uid in backend.log]
    for u in g:
        for dep in u.after:
            assert done.index(dep) < done.index(u.uid), (dep, u.uid)
    assert backend.max_running > 1  # the two domains' branches overlapped
    # every applied spec is in the store, by key
    assert all(store.get(u.key) == u.spec for u in g)
    # second build: nothing to do
    plan, results = build(g, backend, store)
    assert plan.pending == [] and results == {}


def test_failed_unit_stops_its_dependents_only(tmp_path):
    infra = make_infra(two_domains())
    g = build_units(infra, make_lock(infra))
    backend = MemoryBackend(fail={"network:alpha"})
    plan, results = build(g, backend, SpecStore(tmp_path))
    status = {uid: o.status for uid, o in results.items()}
    assert status["network:alpha"] == "failed"
    assert status["profile:alpha/default"] == "skipped"
    assert status["instance:alpha-web"] == status["instance:alpha-db"] == "skipped"
    assert "network:alpha failed: Incus refused network:alpha: injected failure" == results["instance:alpha-web"].error
    assert {uid for uid, s in status.items() if s == "ok"} == {
        "project:alpha", "project:beta", "acl:alpha", "acl:beta", "network:beta", "profile:beta/default", "instance:beta-app"}
    # nothing recorded for what did not apply: the next build retries exactly those
    backend.fail.clear()
    plan, results = build(g, backend, SpecStore(tmp_path))
    assert set(results) == {"network:alpha", "profile:alpha/default", "instance:alpha-web", "instance:alpha-db"}
    assert all(o.status == "ok" for o in results.values())


def test_replace_blocked_for_protected_instance(tmp_path):
    infra = make_infra(two_domains())
    lock = make_lock(infra)
    backend = MemoryBackend()
    build(build_units(infra, lock), backend, SpecStore(tmp_path))
    g2 = build_units(infra, with_fingerprint(lock, "local:busybox", FP_B))
    plan, results = build(g2, backend, SpecStore(tmp_path))
    assert results["instance:alpha-db"].status == "failed"
    assert "protected" in results["instance:alpha-db"].error
    assert results["instance:alpha-web"].status == "ok"


def test_every_bridge_is_created_before_any_instance(tmp_path):
    """Incus 6.0 races when a bridge is created while other instances start: bridges go first."""
    infra = make_infra(two_domains())
    g = build_units(infra, make_lock(infra))
    backend = MemoryBackend(delay=0.01)
    build(g, backend, SpecStore(tmp_path))
    done = [uid for _, uid in backend.log]
    last_network = max(i for i, uid in enumerate(done) if uid.startswith("network:"))
    first_instance = min(i for i, uid in enumerate(done) if uid.startswith("instance:"))
    assert last_network < first_instance


def test_bridges_are_deleted_one_at_a_time_after_the_instances(tmp_path):
    """Incus 6.0 fails to delete bridges in parallel ("Failed to delete bridge children
    interfaces ... does not exist"): a prune of several domains deletes them one by one."""
    doc = two_domains()
    doc["domains"]["gamma"] = {"subnet_id": 13, "ephemeral": True, "machines": {"gamma-app": {}}}
    doc["domains"]["alpha"]["machines"]["alpha-db"]["ephemeral"] = True
    infra = make_infra(doc)
    g = build_units(infra, make_lock(infra))
    backend = MemoryBackend()
    build(g, backend, SpecStore(tmp_path))

    class Watch(MemoryBackend):
        """Counts the bridge deletions running at once."""

        def __init__(self, objects):
            super().__init__(delay=0.02)
            self.objects = objects
            self.bridges = 0
            self.most = 0

        def apply(self, change, unit, obj, *, replace=False):
            bridge = change.action == "delete" and change.uid.startswith("network:")
            with self._lock:
                self.bridges += bridge
                self.most = max(self.most, self.bridges)
            try:
                super().apply(change, unit, obj, replace=replace)
            finally:
                with self._lock:
                    self.bridges -= bridge

    watch = Watch(dict(backend.objects))
    empty = make_infra({**doc, "domains": {}})
    g2 = build_units(empty, make_lock(empty))
    _, results = build(g2, watch, SpecStore(tmp_path), prune=True, jobs=8)
    assert all(o.status == "ok" for o in results.values()), results
    assert sum(uid.startswith("network:") for _, uid in watch.log) == 3 and watch.most == 1
    done = [uid for _, uid in watch.log]
    first_bridge = min(i for i, uid in enumerate(done) if uid.startswith("network:"))
    assert all(i < first_bridge for i, uid in enumerate(done) if uid.startswith("instance:"))

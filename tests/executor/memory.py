"""An in-memory Incus stand-in for the DAG logic: a test double of :class:`anklume.backends.base.Backend`
(tests/executor/test_backend_contract.py checks it keeps the contract's methods and signatures)."""

from __future__ import annotations

import threading
import time

import msgspec

from anklume.errors import AnklumeError
from anklume.units.plan import Change
from anklume.units.unit import MANAGED_KEY, UNIT_KEY, LiveObject, Unit


class MemoryBackend:
    endpoint = "memory"

    def __init__(self, *, fail: set[str] = frozenset(), delay: float = 0.0):
        self.objects: dict[str, LiveObject] = {}
        self.fail = set(fail)
        self.delay = delay
        self.log: list[tuple[str, str]] = []  # (action, uid) in completion order
        self.reads = 0
        self.running = 0
        self.max_running = 0
        self._lock = threading.Lock()

    def read_live(self, domains, pools=("default",), *, exact_networks=True, members=False):
        self.reads += 1
        return dict(self.objects)

    def refresh(self, objects, targets):
        out = dict(objects)
        for uid, *_rest in targets:
            if uid in self.objects:
                out[uid] = self.objects[uid]
            else:
                out.pop(uid, None)
        return out

    def record(self, project, instance, config):
        uid = f"instance:{instance}"
        obj = self.objects[uid]
        self.objects[uid] = msgspec.structs.replace(obj, config={**obj.config, **config})

    def instance_io(self, project, instance):
        raise AnklumeError("the memory backend has no instances to exec in")

    def acquire_lease(self, holder, *, ttl=3600):
        return holder

    def release_lease(self, value):
        pass

    def resources(self, target=None):
        return {"gpu": {"cards": []}}

    def apply(self, change: Change, unit: Unit | None, obj: LiveObject | None, *, replace: bool = False) -> None:
        with self._lock:
            self.running += 1
            self.max_running = max(self.max_running, self.running)
        try:
            if self.delay:
                time.sleep(self.delay)
            if change.uid in self.fail:
                raise AnklumeError(f"Incus refused {change.uid}: injected failure")
            if change.blocked and change.action != "delete":
                raise AnklumeError(change.blocked)
            with self._lock:
                if change.action == "delete":
                    del self.objects[change.uid]
                else:
                    assert unit is not None
                    config = {**unit.spec.get("config", {}), MANAGED_KEY: "true", UNIT_KEY: unit.key}
                    extra = {}
                    if unit.kind == "instance":
                        config["volatile.base_image"] = unit.spec["image"]["fingerprint"]
                        extra = {"status": "Running", "type": unit.spec["type"], "profiles": unit.spec["profiles"],
                                 "devices": unit.spec["devices"]}
                    if unit.kind == "volume":
                        extra = {"pool": unit.spec["pool"]}
                    if unit.kind == "profile":
                        extra = {"devices": unit.spec["devices"]}
                    if unit.kind == "acl":
                        extra = {"rules": {"ingress": unit.spec["ingress"], "egress": unit.spec["egress"]}}
                    self.objects[unit.uid] = LiveObject(kind=unit.kind, name=unit.name, project=unit.project,
                                                        object=unit.object, config=config, **extra)
                self.log.append((change.action, change.uid))
        finally:
            with self._lock:
                self.running -= 1

    def set(self, uid: str, **changes) -> None:
        self.objects[uid] = msgspec.structs.replace(self.objects[uid], **changes)

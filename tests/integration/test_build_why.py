"""`anklume why` against the real daemon: which field changed, from the local store of specs."""

from __future__ import annotations

import json

import pytest

from anklume.actions.explain import why as do_why
from anklume.store import SpecStore
from anklume.errors import AnklumeError
from tests.support.events import EventCounter


def why(env, infra, lock, unit=None, as_json=False, specs=None):
    rc = do_why(env.project, infra, lock, unit=unit, as_json=as_json, endpoint=env.incus.socket,
                specs=specs or env.store, console=env.console())
    return rc, env.out.getvalue()


def test_why_names_the_changed_fields(env, tmp_path):
    doc = env.doc()
    infra, lock = env.infra_lock(doc)
    assert env.build(infra, lock) == 0
    d0 = env.dom(0)
    rc, text = why(env, infra, lock, f"{d0}-web")
    assert rc == 0 and text.startswith(f"instance:{d0}-web: unchanged (recorded key ")

    m = doc["domains"][d0]["machines"][f"{d0}-web"]
    m["config"]["limits.cpu"] = 2
    m["config"]["user.added"] = True
    doc["domains"][d0]["profiles"]["extra"]["devices"]["scratch"]["path"] = "/mnt/other"
    infra2, lock2 = env.infra_lock(doc)
    with EventCounter(env.incus) as ev:
        rc, text = why(env, infra2, lock2)
    assert ev.writes == 0 and ev.api_writes == 0
    assert f"instance:{d0}-web: update\n  config.limits.cpu: '1' -> '2'\n  config.user.added: (none) -> 'true'" in text
    assert f"profile:{d0}/extra: update\n  devices.scratch.path: '/mnt/scratch' -> '/mnt/other'" in text

    rc, text = why(env, infra2, lock2, f"instance:{d0}-web", as_json=True)
    (change,) = json.loads(text)["changes"]
    assert change["fields"] == [{"field": "config.limits.cpu", "old": "1", "new": "2", "text": None},
                                {"field": "config.user.added", "old": None, "new": "true", "text": None}]

    # another controller without the local store still says which keys differ
    rc, text = why(env, infra2, lock2, f"{d0}-web", specs=SpecStore(tmp_path / "empty"))
    assert "applied spec not in the local store" in text

    with pytest.raises(AnklumeError, match="no unit named nope"):
        why(env, infra2, lock2, "nope")


def test_a_unit_inside_an_existing_instance_says_its_record_is_missing(env):
    """A role added to a machine whose instance exists: the reason names the missing record, not a
    missing "role <machine>"."""
    doc = env.doc()
    infra, lock = env.infra_lock(doc)
    assert env.build(infra, lock) == 0
    d1 = env.dom(1)
    doc["domains"][d1]["machines"][f"{d1}-app"]["roles"] = ["base_system"]
    infra2, lock2 = env.infra_lock(doc)
    rc, text = why(env, infra2, lock2, f"role:{d1}-app/base_system")
    assert rc == 0
    assert text.splitlines() == [
        f"role:{d1}-app/base_system: create",
        f"  role base_system is not recorded as applied in instance {d1}-app "
        f"(no user.anklume.unit.role.base_system on it)"], text
    assert "does not exist" not in text

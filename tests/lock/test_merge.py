"""``merge_locks``: two sides' pins -> those of the merged infra.yml, pure (no resolver)."""

from __future__ import annotations

import msgspec
import pytest

from anklume.lock.assemble import Update, lock_infra
from anklume.lock.merge import merge_locks
from anklume.markers import MalformedMarkers, conflict_lines, split_sides
from tests.render.conftest import load_text, make_lock

INFRA = """\
project_name: demo
global:
  base_subnet: "10.100"
  gpu_policy: {policy}
domains:
  lab:
    subnet_id: 1
    machines:
      a:
        ip: "10.100.1.10"
        gpu: true
        models: [{models}]
      b:
        ip: "10.100.1.11"
        os_image: "{image}"
        gpu: {b_gpu}
"""


def infra(models="llama3.2:3b", image="images:debian/13", policy="exclusive", b_gpu="false"):
    return load_text(INFRA.format(models=models, image=image, policy=policy, b_gpu=b_gpu))


def relocked(lock, **changes):
    """``lock`` with its pins' ``locked`` parts replaced (a pin resolved on another day)."""
    return msgspec.structs.replace(lock, **changes)


def other_model(lock, ref):
    pin = lock.models[ref]
    return msgspec.structs.replace(pin, locked=msgspec.structs.replace(pin.locked, digest="sha256:" + "e" * 64))


def test_each_pin_comes_from_the_side_that_has_it_and_unneeded_pins_are_dropped():
    merged_infra = infra(models="llama3.2:3b, gemma:2b", image="images:debian/12")
    ours = make_lock(infra(models="llama3.2:3b", image="images:debian/12"))
    theirs = make_lock(infra(models="llama3.2:3b, gemma:2b", image="images:debian/13"))
    merged = merge_locks(merged_infra, ours, theirs)
    assert merged.conflicts == [] and merged.unresolved == []
    sources = {(p.group, p.name): p.source for p in merged.picks}
    assert sources == {("images", "images:debian/12"): "ours", ("images", "images:debian/13"): "both",
                       ("models", "gemma:2b"): "theirs", ("models", "llama3.2:3b"): "both", ("gpus", "a"): "both",
                       ("ollama", "ollama"): "both"}
    assert [(p.group, p.name, p.source) for p in merged.dropped] == []  # debian/13 is a's image still
    fresh = make_lock(merged_infra)
    assert (merged.lock.images, merged.lock.models, merged.lock.gpus) == (fresh.images, fresh.models, fresh.gpus)


def test_pins_nobody_needs_are_dropped():
    ours = make_lock(infra(models="llama3.2:3b, gemma:2b"))
    theirs = make_lock(infra())
    merged = merge_locks(infra(), ours, theirs)
    assert [(p.group, p.name, p.source, p.why) for p in merged.dropped] == [
        ("models", "gemma:2b", "ours", "nothing in infra.yml needs it")]
    assert set(merged.lock.models) == {"llama3.2:3b"}


def test_the_same_pin_locked_differently_is_a_conflict():
    ours = make_lock(infra())
    theirs = relocked(ours, models={"llama3.2:3b": other_model(ours, "llama3.2:3b")})
    merged = merge_locks(infra(), ours, theirs)
    [conflict] = merged.conflicts
    assert conflict.line() == ("model llama3.2:3b: ours " + ours.models["llama3.2:3b"].locked.digest[:19]
                               + " 1.9 GiB, theirs sha256:eeeeeeeeeeee 1.9 GiB")
    assert conflict.names == ("llama3.2:3b",)
    assert "llama3.2:3b" not in merged.lock.models


def test_a_change_made_on_one_side_only_wins_when_the_base_is_known():
    base = make_lock(infra())
    changed = relocked(base, models={"llama3.2:3b": other_model(base, "llama3.2:3b")})
    for ours, theirs, side in ((base, changed, "theirs"), (changed, base, "ours")):
        merged = merge_locks(infra(), ours, theirs, base)
        assert merged.conflicts == []
        [pick] = [p for p in merged.picks if p.group == "models"]
        assert pick.source == f"{side} (changed on that side only)"
        assert merged.lock.models == changed.models


@pytest.mark.parametrize("option", ["ours", "theirs"])
def test_ours_and_theirs_keep_one_side(option):
    ours = make_lock(infra())
    theirs = relocked(ours, models={"llama3.2:3b": other_model(ours, "llama3.2:3b")})
    merged = merge_locks(infra(), ours, theirs, **{f"keep_{option}": frozenset({"llama3.2:3b"})})
    assert merged.conflicts == []
    assert merged.lock.models == (ours if option == "ours" else theirs).models


def test_update_leaves_the_pin_to_be_resolved_again():
    ours = make_lock(infra())
    theirs = relocked(ours, models={"llama3.2:3b": other_model(ours, "llama3.2:3b")})
    merged = merge_locks(infra(), ours, theirs, update=Update(names=frozenset({"llama3.2:3b"})))
    assert merged.conflicts == [] and merged.unresolved == ["model llama3.2:3b"]
    assert merged.lock.models == {}


def test_an_image_is_also_named_by_its_short_reference():
    vm = infra(image="images:debian/13")
    ours = make_lock(vm)
    pin = ours.images["images:debian/13"]
    moved = msgspec.structs.replace(pin, locked=msgspec.structs.replace(pin.locked, fingerprint="a" * 64))
    theirs = relocked(ours, images={**ours.images, "images:debian/13": moved})
    merged = merge_locks(vm, ours, theirs, keep_theirs=frozenset({"images:debian/13"}))
    assert merged.lock.images["images:debian/13"] == moved


def test_a_pin_for_another_original_is_not_taken():
    ours = make_lock(infra(policy="shared"))  # GPU pins under another policy
    theirs = make_lock(infra(models="gemma:2b"))
    merged = merge_locks(infra(), ours, theirs)
    assert merged.lock.gpus == theirs.gpus
    assert ("gpus", "a", "ours", "infra.yml asks for another one now") in [
        (p.group, p.name, p.source, p.why) for p in merged.dropped]


def test_two_machines_on_one_slot_under_exclusive_are_a_conflict():
    ours = make_lock(infra(b_gpu="true"))
    a, b = ours.gpus["a"], ours.gpus["b"]
    same = msgspec.structs.replace(b, locked=msgspec.structs.replace(b.locked, pci=a.locked.pci))
    theirs = relocked(ours, gpus={"b": same})
    mine = relocked(ours, gpus={"a": a})
    merged = merge_locks(infra(b_gpu="true"), mine, theirs)
    [conflict] = merged.conflicts
    assert conflict.name == "b" and "the slot of a too, and gpu_policy is exclusive" in conflict.line()
    assert merge_locks(infra(b_gpu="true", policy="exclusive"), mine, theirs,
                       update=Update(names=frozenset({"b"}))).conflicts == []


def test_the_merge_is_the_same_whichever_side_is_ours():
    merged_infra = infra(models="llama3.2:3b, gemma:2b", image="images:debian/12")
    one = make_lock(infra(models="llama3.2:3b", image="images:debian/12"))
    two = make_lock(infra(models="llama3.2:3b, gemma:2b"))
    assert merge_locks(merged_infra, one, two).lock == merge_locks(merged_infra, two, one).lock


class Refuse:
    def __getattr__(self, name):
        raise AssertionError(f"asked the resolver for {name}")


def test_lock_infra_completes_the_merge_without_asking_anything():
    merged_infra = infra(models="", image="images:debian/12", b_gpu="true")  # (made-up model pins do not check)
    ours = make_lock(infra(models="", image="images:debian/12"))
    theirs = make_lock(infra(models="", b_gpu="true"))
    merged = merge_locks(merged_infra, ours, theirs)
    new = lock_infra(merged_infra, merged.lock, Refuse())
    fresh = make_lock(merged_infra)
    assert (new.images, new.gpus) == (fresh.images, fresh.gpus) and new.infra_hash.startswith("blake3:")


# -- conflict markers ---------------------------------------------------------------------------

CONFLICTED = b"""{
  "a": 1,
<<<<<<< HEAD
  "b": 2,
||||||| base
  "b": 0,
=======
  "b": 3,
>>>>>>> feature
  "c": 4
}
"""


def test_split_sides_with_the_base():
    sides = split_sides(CONFLICTED)
    assert sides.ours == b'{\n  "a": 1,\n  "b": 2,\n  "c": 4\n}\n'
    assert sides.theirs == b'{\n  "a": 1,\n  "b": 3,\n  "c": 4\n}\n'
    assert sides.base == b'{\n  "a": 1,\n  "b": 0,\n  "c": 4\n}\n'
    assert sides.hunks == (3,) and conflict_lines(CONFLICTED) == [3]


def test_split_sides_without_the_base_and_with_crlf():
    text = CONFLICTED.replace(b"||||||| base\n  \"b\": 0,\n", b"").replace(b"\n", b"\r\n")
    sides = split_sides(text)
    assert sides.base is None
    assert sides.theirs == b'{\r\n  "a": 1,\r\n  "b": 3,\r\n  "c": 4\r\n}\r\n'


@pytest.mark.parametrize("text", [b"<<<<<<< x\na\n", b"<<<<<<< x\na\n>>>>>>> y\n", b"a\n=======\n<<<<<<< x\n"])
def test_malformed_markers(text):
    with pytest.raises(MalformedMarkers):
        split_sides(text)
    assert conflict_lines(text)  # still reported as conflicted


@pytest.mark.parametrize("text", [b"", b"a: 1\n", b"x: '<<<<<<< HEAD'\n", b"<<<<<<<< not a marker\n"])
def test_no_markers(text):
    assert split_sides(text) is None and conflict_lines(text) is None

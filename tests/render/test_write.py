"""Planning, atomic writes, orphans and pruning on a real folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from anklume.render.managed import managed_block, merge_managed
from anklume.render.tree import render_tree
from anklume.fsio import atomic_write
from anklume.render.write import (FileChange, TreeError, apply_tree, find_orphans, diff_tree, prune,
)

from .conftest import load_example, load_text


def build(root: Path, rendered: dict[str, str]):
    changes = diff_tree(root, rendered)
    apply_tree(changes)
    return changes


def snapshot_tree(root: Path) -> dict[str, tuple[bytes, int]]:
    return {p.relative_to(root).as_posix(): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_first_build_creates_everything_and_a_rebuild_changes_nothing(tmp_path):
    rendered = render_tree(load_example("pro-workstation"), None)
    first = build(tmp_path, rendered)
    assert [c.path for c in first.changed] == list(rendered) and all(c.created for c in first.changed)
    assert first.unchanged == []
    before = snapshot_tree(tmp_path)
    again = diff_tree(tmp_path, rendered)
    assert not again and again.changed == [] and again.unchanged == list(rendered)
    apply_tree(again)
    assert snapshot_tree(tmp_path) == before  # same bytes, same mtime_ns: nothing rewritten


def test_only_changed_files_are_rewritten_and_user_content_is_kept(tmp_path):
    rendered = render_tree(load_example("pro-workstation"), None)
    build(tmp_path, rendered)
    llm = tmp_path / "host_vars/pw-llm.yml"
    llm.write_text(llm.read_text() + "ollama_default_model: llama3.2:3b\n")
    before = snapshot_tree(tmp_path)
    changed = dict(rendered)
    changed["host_vars/pw-llm.yml"] = rendered["host_vars/pw-llm.yml"].replace("pw-llm", "pw-llm2", 1)
    changes = diff_tree(tmp_path, changed)
    assert [c.path for c in changes.changed] == ["host_vars/pw-llm.yml"]
    assert changes.changed[0].old == before["host_vars/pw-llm.yml"][0].decode()
    apply_tree(changes)
    after = snapshot_tree(tmp_path)
    assert after["host_vars/pw-llm.yml"][0].decode().endswith(
        "# Your custom variables below:\nollama_default_model: llama3.2:3b\n")
    assert "instance_name: pw-llm2\n" in after["host_vars/pw-llm.yml"][0].decode()
    assert {k: v for k, v in after.items() if k != "host_vars/pw-llm.yml"} == {
        k: v for k, v in before.items() if k != "host_vars/pw-llm.yml"}


def test_atomic_write_leaves_no_temp_file_and_keeps_the_mode(tmp_path):
    rendered = render_tree(load_example("developer"), None)
    build(tmp_path, rendered)
    target = tmp_path / "host_vars/dev-admin.yml"
    target.chmod(0o600)
    apply_tree(diff_tree(tmp_path, {"host_vars/dev-admin.yml": "instance_name: x\n"}))
    assert target.stat().st_mode & 0o777 == 0o600
    names = [p.name for p in tmp_path.rglob("*")]
    assert not [n for n in names if n.startswith(".") or "tmp" in n]
    umask = os.umask(0o022)
    os.umask(umask)
    assert (tmp_path / "host_vars/dev-runner.yml").stat().st_mode & 0o777 == 0o666 & ~umask


def test_a_failed_write_leaves_the_old_file_and_no_temp_file(tmp_path, monkeypatch):
    target = tmp_path / "f.yml"
    target.write_text("old\n")

    def boom(fd):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(os, "fsync", boom)
    with pytest.raises(OSError):
        atomic_write(target, b"new\n")
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["f.yml"]


def test_symlinks_are_never_followed(tmp_path):
    outside = tmp_path / "outside.yml"
    outside.write_text("secret: 1\n")
    root = tmp_path / "tree"
    (root / "host_vars").mkdir(parents=True)
    (root / "host_vars/m.yml").symlink_to(outside)
    with pytest.raises(TreeError, match="symbolic link"):
        diff_tree(root, {"host_vars/m.yml": "instance_name: m\n"})
    (root / "host_vars/m.yml").unlink()
    (root / "inventory").symlink_to(tmp_path, target_is_directory=True)
    with pytest.raises(TreeError, match="symbolic link"):
        diff_tree(root, {"inventory/d.yml": "all: {}\n"})
    assert outside.read_text() == "secret: 1\n"


def test_an_unmergeable_file_names_its_path(tmp_path):
    (tmp_path / "host_vars").mkdir()
    (tmp_path / "host_vars/m.yml").write_text("- a list\n")
    with pytest.raises(TreeError, match="host_vars/m.yml"):
        diff_tree(tmp_path, {"host_vars/m.yml": "instance_name: m\n"})


def test_an_existing_file_without_a_section_stays_one_document(tmp_path):
    (tmp_path / "host_vars").mkdir()
    (tmp_path / "host_vars/m.yml").write_text("---\nmine: 1\n")
    apply_tree(diff_tree(tmp_path, {"host_vars/m.yml": "instance_name: m\n"}))
    text = (tmp_path / "host_vars/m.yml").read_text()
    assert text == f"---\n{managed_block('instance_name: m')}\n\nmine: 1\n"


# -- orphans ------------------------------------------------------------------------

TWO_DOMAINS = """
project_name: p
global: {}
domains:
  keep: {subnet_id: 1, machines: {k1: {}}}
  prod:
    subnet_id: 2
    ephemeral: false
    machines: {db: {}, scratch: {ephemeral: true}}
  lab:
    subnet_id: 3
    ephemeral: true
    machines: {t1: {}, t2: {ephemeral: false}}
"""


def test_orphans_protection_and_prune(tmp_path):
    infra = load_text(TWO_DOMAINS)
    build(tmp_path, render_tree(infra, None))
    (tmp_path / "host_vars/notes.txt").write_text("not yml\n")
    (tmp_path / "host_vars/handmade.yml").write_text("x: 1\n")
    (tmp_path / "host_vars/broken.yml").write_text(merge_managed(None, managed_block("a: [\n")))
    (tmp_path / "host_vars/sub").mkdir()
    (tmp_path / "group_vars/all.yml").write_text("whatever\n")
    only_keep = load_text("project_name: p\nglobal: {}\ndomains:\n  keep: {subnet_id: 1, machines: {k1: {}}}\n")
    rendered = render_tree(only_keep, None)
    orphans = {o.path.relative_to(tmp_path).as_posix(): o for o in find_orphans(tmp_path, rendered)}
    assert sorted(orphans) == ["group_vars/lab.yml", "group_vars/prod.yml", "host_vars/broken.yml",
                               "host_vars/db.yml", "host_vars/handmade.yml", "host_vars/scratch.yml",
                               "host_vars/t1.yml", "host_vars/t2.yml", "inventory/lab.yml", "inventory/prod.yml"]
    protected = sorted(k for k, o in orphans.items() if o.protected)
    # protection is the default: only an explicit ephemeral true is deletable; the original
    # deleted inventory/prod.yml, and files whose managed section does not parse
    assert protected == ["group_vars/prod.yml", "host_vars/broken.yml", "host_vars/db.yml", "host_vars/handmade.yml",
                         "host_vars/t2.yml", "inventory/prod.yml"]
    assert "domain_ephemeral: false" in orphans["inventory/prod.yml"].reason
    assert "group_vars/prod.yml" in orphans["inventory/prod.yml"].reason
    assert "does not parse" in orphans["host_vars/broken.yml"].reason
    assert "instance_ephemeral: true" in orphans["host_vars/t1.yml"].reason
    result = prune(orphans.values())
    assert sorted(o.path.relative_to(tmp_path).as_posix() for o in result.deleted) == [
        "group_vars/lab.yml", "host_vars/scratch.yml", "host_vars/t1.yml", "inventory/lab.yml"]
    assert sorted(o.path.relative_to(tmp_path).as_posix() for o in result.skipped) == protected
    for rel in protected + ["host_vars/notes.txt", "host_vars/k1.yml", "group_vars/all.yml"]:
        assert (tmp_path / rel).exists(), rel
    for o in result.deleted:
        assert not o.path.exists()


def test_an_orphan_inventory_without_its_group_vars_is_protected(tmp_path):
    """Nothing says the domain was ephemeral, so the file stays (protection is the default)."""
    infra = load_text(TWO_DOMAINS)
    build(tmp_path, render_tree(infra, None))
    (tmp_path / "group_vars/prod.yml").unlink()
    rendered = render_tree(load_text("project_name: p\nglobal: {}\ndomains: {}\n"), None)
    orphans = {o.path.relative_to(tmp_path).as_posix(): o for o in find_orphans(tmp_path, rendered)}
    assert orphans["inventory/prod.yml"].protected
    assert "group_vars/prod.yml" in orphans["inventory/prod.yml"].reason


def test_orphan_symlinks_are_reported_not_followed(tmp_path):
    secret = tmp_path / "secret.yml"
    secret.write_text(merge_managed(None, managed_block("instance_ephemeral: true")))
    root = tmp_path / "tree"
    (root / "host_vars").mkdir(parents=True)
    (root / "host_vars/ghost.yml").symlink_to(secret)
    (root / "group_vars").symlink_to(tmp_path, target_is_directory=True)
    orphans = find_orphans(root, {})
    assert [(o.path.name, o.protected) for o in orphans] == [("ghost.yml", True)]
    prune(orphans)
    assert secret.exists() and (root / "host_vars/ghost.yml").is_symlink()


def test_file_change_created_flag():
    assert FileChange("a.yml", None, "x").created and not FileChange("a.yml", "", "x").created


@pytest.mark.parametrize("rel", ["../x.yml", "host_vars/../../x.yml", "/etc/x.yml", "site.yml",
                                 "host_vars/.hidden.yml", "host_vars/a.txt"])
def test_plan_refuses_paths_outside_the_tree(tmp_path, rel):
    with pytest.raises(TreeError, match="refusing"):
        diff_tree(tmp_path, {rel: "a: 1\n"})


def test_an_orphan_that_cannot_be_deleted_is_an_error_naming_it(tmp_path, monkeypatch):
    from anklume.render.write import Orphan

    path = tmp_path / "host_vars" / "old.yml"
    path.parent.mkdir()
    path.write_text("x: 1\n")

    def refuse(_path):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(os, "unlink", refuse)
    with pytest.raises(TreeError) as err:
        prune([Orphan(path, False, "ephemeral")])
    assert str(path) in err.value.message and "Permission denied" in err.value.message


def test_an_orphan_with_a_duplicated_section_is_protected(tmp_path):
    """Two sections: which one says whether it was ephemeral is anyone's guess: keep it."""
    (tmp_path / "host_vars").mkdir()
    section = merge_managed(None, managed_block("instance_ephemeral: true"))
    (tmp_path / "host_vars/twice.yml").write_text(section + section.removeprefix("---\n"))
    [orphan] = find_orphans(tmp_path, {})
    assert orphan.protected and "appears twice" in orphan.reason


def test_an_orphan_nested_too_deep_is_protected_not_a_crash(tmp_path):
    (tmp_path / "host_vars").mkdir()
    deep = "instance_ephemeral: " + "[" * 3000 + "]" * 3000 + "\n"
    (tmp_path / "host_vars/deep.yml").write_text(merge_managed(None, managed_block(deep)))
    [orphan] = find_orphans(tmp_path, {})
    assert orphan.protected and "does not parse" in orphan.reason


# -- temp files of writers that died -----------------------------------------------------------

_KILLED_WRITER = """
import os, signal, sys
from pathlib import Path
from anklume import fsio

def die(src, dst):  # killed between the temp file and the rename
    os.kill(os.getpid(), signal.SIGKILL)

os.replace = die
fsio.atomic_write(Path(sys.argv[1]), b"half of a build\\n")
"""


def _killed_write(target: Path) -> Path:
    """Run ``atomic_write(target)`` in a process SIGKILLed before its rename: the temp file it left."""
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-c", _KILLED_WRITER, str(target)])
    assert proc.wait() == -9
    [tmp] = [p for p in target.parent.iterdir() if p.name.endswith(".anklume-tmp")]
    assert tmp.name.startswith(f".{target.name}.{proc.pid}.")
    return tmp


def _age(path: Path, seconds: float) -> None:
    import time

    old = time.time() - seconds
    os.utime(path, (old, old), follow_symlinks=False)


def test_a_killed_writers_temp_file_is_removed_by_the_next_build(tmp_path):
    """A SIGKILL during ``build`` left hidden temp files in the tree that no build removed."""
    rendered = render_tree(load_example("developer"), None)
    build(tmp_path, rendered)
    tmp = _killed_write(tmp_path / "host_vars/dev-admin.yml")
    lock_tmp = _killed_write(tmp_path / "anklume.lock")
    build(tmp_path, rendered)
    assert tmp.exists() and lock_tmp.exists()  # a minute's grace: its writer may be on another host
    _age(tmp, 120)
    _age(lock_tmp, 120)
    build(tmp_path, rendered)
    assert not tmp.exists() and not lock_tmp.exists()


def test_temp_files_of_live_writers_and_other_files_are_kept(tmp_path):
    rendered = render_tree(load_example("developer"), None)
    build(tmp_path, rendered)
    hv = tmp_path / "host_vars"
    live = hv / f".dev-admin.yml.{os.getpid()}.0123abcd.anklume-tmp"  # this process: alive
    others = [hv / ".dev-admin.yml.anklume-tmp", hv / "x.yml.1.0123abcd.anklume-tmp",
              hv / ".notes.txt.999999999.0123abcd.anklume-tmp", tmp_path / ".other.999999999.0123abcd.anklume-tmp",
              hv / ".dev-admin.yml.999999999.0123abcd.anklume-tmp.bak"]
    legacy_fresh = hv / ".dev-admin.yml.0123abcd.anklume-tmp"  # before pids were in the name
    legacy_old = hv / ".dev-runner.yml.89abcdef.anklume-tmp"
    for path in [live, legacy_fresh, legacy_old, *others]:
        path.write_text("x")
        _age(path, 600)
    _age(legacy_old, 7200)
    build(tmp_path, rendered)
    assert live.exists() and legacy_fresh.exists() and all(p.exists() for p in others)
    assert not legacy_old.exists()  # no write of a tree file lasts an hour
    _age(live, 7200)
    build(tmp_path, rendered)
    assert not live.exists()


def test_temp_files_are_named_with_their_writers_pid(tmp_path, monkeypatch):
    seen = []
    real = os.replace
    monkeypatch.setattr(os, "replace", lambda src, dst: (seen.append(Path(src).name), real(src, dst)))
    atomic_write(tmp_path / "f.yml", b"x")
    [name] = seen
    assert name.startswith(f".f.yml.{os.getpid()}.") and name.endswith(".anklume-tmp")


# -- many files at once ------------------------------------------------------------------------

def test_many_files_are_flushed_once_not_one_fsync_each(tmp_path, monkeypatch):
    from anklume import fsio

    fsyncs, syncfs = [], []
    real_fsync, real_syncfs = os.fsync, fsio._syncfs
    monkeypatch.setattr(os, "fsync", lambda fd: (fsyncs.append(fd), real_fsync(fd))[1])
    monkeypatch.setattr(fsio, "_syncfs", lambda folder: (syncfs.append(folder), real_syncfs(folder))[1])
    rendered = {f"host_vars/m{i}.yml": f"instance_name: m{i}\n" for i in range(40)}
    rendered["inventory/d.yml"] = "all: {}\n"
    build(tmp_path, rendered)
    assert len(syncfs) == 1  # one file system
    assert len(fsyncs) <= 3  # the two new folders and their parent, not the 41 files
    assert all((tmp_path / rel).read_text() == merge_managed(None, managed_block(body)) for rel, body in rendered.items())
    assert not [p for p in tmp_path.rglob(".*")]


def test_without_syncfs_each_file_is_fsynced(tmp_path, monkeypatch):
    from anklume import fsio

    fsyncs = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (fsyncs.append(fd), real_fsync(fd))[1])
    monkeypatch.setattr(fsio, "_syncfs", lambda folder: False)
    build(tmp_path, {f"host_vars/m{i}.yml": "x: 1\n" for i in range(20)})
    assert len(fsyncs) == 22  # each file, the new folder, its parent
    fsyncs.clear()
    build(tmp_path, {f"host_vars/m{i}.yml": "x: 2\n" for i in range(20)})
    assert len(fsyncs) == 21  # each file, then the folder


def test_a_failed_batch_changes_no_file_and_names_the_one_that_failed(tmp_path, monkeypatch):
    rendered = {f"host_vars/m{i}.yml": f"instance_name: m{i}\n" for i in range(30)}
    build(tmp_path, rendered)
    before = snapshot_tree(tmp_path)
    calls = []
    real_write = os.write

    def write(fd, data):
        calls.append(fd)
        if len(calls) == 12:
            raise OSError(28, "No space left on device")
        return real_write(fd, data)
    monkeypatch.setattr(os, "write", write)
    changed = {rel: body.replace("instance_name", "name") for rel, body in rendered.items()}
    with pytest.raises(TreeError, match=r"cannot write host_vars/m11\.yml: No space left on device"):
        apply_tree(diff_tree(tmp_path, changed))
    assert snapshot_tree(tmp_path) == before  # not one file changed, no temp file left


_KILLED_TREE = """
import sys
from pathlib import Path
from anklume.render.write import apply_tree, diff_tree
root = Path(sys.argv[1])
body = "x: " + "y" * 2000 + "\\n"
apply_tree(diff_tree(root, {f"host_vars/m{i}.yml": f"instance_name: m{i}\\n{body}" for i in range(3000)}))
"""


@pytest.mark.parametrize("delay", [0.05, 0.2, 0.5, 1.0])
@pytest.mark.parametrize("first", [True, False], ids=["first-build", "rebuild"])
def test_a_build_killed_at_any_moment_leaves_each_file_old_or_new(tmp_path, delay, first):
    import signal
    import subprocess
    import sys
    import time

    root = tmp_path / "tree"
    root.mkdir()
    if not first:
        (root / "host_vars").mkdir()
        for i in range(0, 3000, 7):  # some files exist with an old content
            (root / f"host_vars/m{i}.yml").write_text("old: 1\n")
    proc = subprocess.Popen([sys.executable, "-c", _KILLED_TREE, str(root)])
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    body = "x: " + "y" * 2000 + "\n"
    if not (root / "host_vars").exists():
        assert first  # a first build's folder appears whole or not at all
        return
    if first:
        assert len(list((root / "host_vars").iterdir())) == 3000
    for path in (root / "host_vars").iterdir():
        if path.name.endswith(".anklume-tmp"):
            continue  # removed by the next build once its writer is gone
        text = path.read_text()
        i = int(path.name[1:].removesuffix(".yml"))
        assert text == "old: 1\n" or text == merge_managed("old: 1\n" if i % 7 == 0 and not first else None,
                                                         managed_block(f"instance_name: m{i}\n{body}")), path


def test_a_new_folder_is_written_whole_and_renamed_into_place(tmp_path, monkeypatch):
    """A first build: each file created once with its own name, in a temp folder renamed whole."""
    renames, replaces = [], []
    real_rename, real_replace = os.rename, os.replace
    monkeypatch.setattr(os, "rename", lambda a, b: (renames.append((Path(a).name, Path(b).name)), real_rename(a, b))[1])
    monkeypatch.setattr(os, "replace", lambda a, b: (replaces.append(b), real_replace(a, b))[1])
    rendered = {f"host_vars/m{i}.yml": f"instance_name: m{i}\n" for i in range(30)}
    rendered["inventory/d.yml"] = "all: {}\n"
    build(tmp_path, rendered)
    assert replaces == []
    assert sorted(b for _, b in renames) == ["host_vars", "inventory"]
    assert all(a.startswith(f".{b}.{os.getpid()}.") and a.endswith(".anklume-tmp") for a, b in renames)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["host_vars", "inventory"]
    assert all((tmp_path / rel).read_text() == merge_managed(None, managed_block(body)) for rel, body in rendered.items())


def test_a_folder_that_appears_meanwhile_gets_the_files_one_by_one(tmp_path, monkeypatch):
    from anklume import fsio

    real_flush = fsio._flush

    def flush_then_race(written, folders):  # another writer makes host_vars/ before the rename
        real_flush(written, folders)
        (tmp_path / "host_vars").mkdir()
        (tmp_path / "host_vars" / "theirs.yml").write_text("x: 1\n")
    monkeypatch.setattr(fsio, "_flush", flush_then_race)
    build(tmp_path, {f"host_vars/m{i}.yml": f"instance_name: m{i}\n" for i in range(3)})
    assert sorted(p.name for p in (tmp_path / "host_vars").iterdir()) == ["m0.yml", "m1.yml", "m2.yml", "theirs.yml"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["host_vars"]


def test_a_killed_writers_temp_folder_is_removed_by_the_next_build(tmp_path):
    rendered = render_tree(load_example("developer"), None)
    build(tmp_path, rendered)
    left = tmp_path / ".host_vars.999999999.0123abcd.anklume-tmp"
    (left / "x.yml").parent.mkdir()
    (left / "x.yml").write_text("half\n")
    _age(left, 120)
    other = tmp_path / ".notes.999999999.0123abcd.anklume-tmp"  # not a folder of the tree: kept
    other.mkdir()
    _age(other, 7200)
    build(tmp_path, rendered)
    assert not left.exists() and other.exists()

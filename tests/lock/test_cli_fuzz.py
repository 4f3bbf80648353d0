"""Fuzzing through the command line: a mutated infra.yml, a hostile lock or a tampered tree
never produces a traceback, and a command that fails writes nothing (lock and tree unchanged).

- infra.yml: the mutations of tests/model/test_fuzz.py (hostile values and keys included);
- anklume.lock: values replaced by traversal paths, other URLs and digests, sizes out of
  bounds, names with a newline, keys renamed or written twice, nesting too deep; whatever
  ``build`` accepts must give a tree whose pinned values have their forms (checked here with
  patterns of the tests' own) and models whose manifest hashes to their digest;
- the tree: managed markers deleted, repeated, pasted into comments and values, managed keys
  set again below the section; whatever ``build`` accepts converges (a second build writes
  nothing), and whatever ``verify`` accepts is, as YAML, exactly what the lock renders.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil

import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.hyp import examples

from anklume.cli import main
from tests.lock.conftest import GPU_ARGS
from tests.model.test_fuzz import MUTATIONS
from tests.support.lockfiles import EXAMPLES, LOCKFILES
from tests.support.mirror import RecordedMirror

TREE_DIRS = ("inventory", "group_vars", "host_vars")


def snapshot_dir(root) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@settings(max_examples=examples(40), deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_mutated_infra_never_tracebacks_and_failures_write_nothing(data, tmp_path_factory):
    root = tmp_path_factory.mktemp("proj")
    shutil.copy(EXAMPLES / "gpu-workstation" / "infra.yml", root / "infra.yml")
    shutil.copy(LOCKFILES / "gpu-workstation.lock", root / "anklume.lock")
    assert CliRunner().invoke(main, ["build", "-f", str(root / "infra.yml"), "--no-apply"]).exit_code == 0
    text = (root / "infra.yml").read_bytes()
    for name in data.draw(st.lists(st.sampled_from(sorted(MUTATIONS)), min_size=1, max_size=2), label="mutations"):
        text = MUTATIONS[name](data.draw, text)
    (root / "infra.yml").write_bytes(text)
    before = snapshot_dir(root)
    env = {"ANKLUME_CACHE_DIR": str(root.parent / f"{root.name}-cache")}
    with RecordedMirror() as mirror:
        env.update(mirror.env())
        for argv in (["lock", *GPU_ARGS], ["build", "--no-apply"], ["verify"]):
            command, *rest = argv
            result = CliRunner().invoke(main, [command, "-f", str(root / "infra.yml"), *rest], env=env)
            assert result.exit_code in (0, 1), (argv, result.output, result.exception)
            # an unexpected exception also exits 1 under CliRunner: demand a clean exit
            assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
            assert "Traceback" not in result.output
            if result.exit_code == 1 and command != "verify":
                assert snapshot_dir(root) == before, argv
            before = snapshot_dir(root)


FUZZ = settings(deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def _built(tmp_path_factory):
    root = tmp_path_factory.mktemp("proj")
    shutil.copy(EXAMPLES / "gpu-workstation" / "infra.yml", root / "infra.yml")
    shutil.copy(LOCKFILES / "gpu-workstation.lock", root / "anklume.lock")
    assert CliRunner().invoke(main, ["build", "-f", str(root / "infra.yml"), "--no-apply"]).exit_code == 0
    return root


def _run(root, argv):
    command, *rest = argv
    env = {"ANKLUME_CACHE_DIR": str(root.parent / f"{root.name}-cache")}
    result = CliRunner().invoke(main, [command, "-f", str(root / "infra.yml"), *rest], env=env)
    assert result.exit_code in (0, 1), (argv, result.output, result.exception)
    assert result.exception is None or isinstance(result.exception, SystemExit), (argv, result.exception)
    assert "Traceback" not in result.output
    return result


# -- hostile locks -------------------------------------------------------------------------------

_HOSTILE_LOCK_VALUES = [
    "../../../etc/passwd", "sha256:../../../etc/passwd", "file:///etc/passwd", "http://[::1", "", "x\n",
    "sha256:" + "1" * 64, "1" * 64, "0000:00:06.0\n", "../../x", "# === END MANAGED ===", "a b",
    "https://example.org/x", "\ud800", -1, 0, 10**30, 2**63, 2**44 + 1, 1.5, None, True, [], {},
]


def _leaves(node, path=()):
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _leaves(v, path + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _leaves(v, path + (i,))
    else:
        yield path


def _keys(node, path=()):
    if isinstance(node, dict):
        for k, v in node.items():
            yield path + (k,)
            yield from _keys(v, path + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _keys(v, path + (i,))


def _at(doc, path):
    for part in path:
        doc = doc[part]
    return doc


def _mutate_lock(draw, text: str) -> str:
    kind = draw(st.sampled_from(["value", "value", "value", "swap", "rename", "delete", "duplicate", "deep",
                                 "manifest", "truncate"]), label="lock mutation")
    doc = json.loads(text)
    if kind == "value":
        path = draw(st.sampled_from(list(_leaves(doc))), label="leaf")
        old = _at(doc, path)
        new = draw(st.one_of(st.sampled_from(_HOSTILE_LOCK_VALUES),
                             st.just(f"{old}\n" if isinstance(old, str) else (old or 0) + 1)), label="value")
        _at(doc, path[:-1])[path[-1]] = new
    elif kind == "swap":  # two values of the lock exchanged (a digest for another, a size for another)
        leaves = list(_leaves(doc))
        a, b = draw(st.sampled_from(leaves)), draw(st.sampled_from(leaves))
        va, vb = _at(doc, a), _at(doc, b)
        _at(doc, a[:-1])[a[-1]], _at(doc, b[:-1])[b[-1]] = vb, va
    elif kind == "rename":
        path = draw(st.sampled_from([p for p in _keys(doc) if isinstance(p[-1], str)]), label="key")
        parent = _at(doc, path[:-1])
        parent[draw(st.sampled_from(["gw-other", "llama3.2:1b", "images:debian/13", path[-1] + "\n", ""]))] = \
            parent.pop(path[-1])
    elif kind == "delete":
        path = draw(st.sampled_from([p for p in _keys(doc) if isinstance(p[-1], str)]), label="key")
        del _at(doc, path[:-1])[path[-1]]
    elif kind == "manifest":  # a manifest edited by hand: a layer's size or digest changed
        ref = draw(st.sampled_from(sorted(doc["models"])))
        manifest = json.loads(doc["models"][ref]["locked"]["manifest"])
        manifest["layers"][0]["size"] += 1
        doc["models"][ref]["locked"]["manifest"] = json.dumps(manifest)
        if draw(st.booleans()):  # and its digest recomputed to match
            data = doc["models"][ref]["locked"]["manifest"].encode()
            doc["models"][ref]["locked"]["digest"] = "sha256:" + hashlib.sha256(data).hexdigest()
    out = json.dumps(doc, indent=2, sort_keys=True) + "\n"
    if kind == "duplicate":  # a line written twice: the same key twice in one object
        lines = out.splitlines(keepends=True)
        candidates = [i for i, line in enumerate(lines) if re.match(r' *"[^"]+": [^{\[]*,\n$', line)]
        i = draw(st.sampled_from(candidates), label="line")
        lines.insert(i, lines[i])
        out = "".join(lines)
    elif kind == "deep":
        depth = draw(st.integers(60, 3000), label="depth")
        out = out.replace('"version": 1', f'"x": {"[" * depth}{"]" * depth},\n  "version": 1')
    elif kind == "truncate":
        out = out[: draw(st.integers(0, len(out)), label="cut")]
    return out


_TREE_FORMS = {  # the forms a pinned value written into host_vars must have (the tests' own patterns)
    "instance_image_fingerprint": r"[0-9a-f]{64}",
    "instance_gpu_pci": r"[0-9a-f]{4,8}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]",
    "ollama_version": r"[0-9][0-9A-Za-z.+_-]*",
    "ollama_release_url": r"https?://[A-Za-z0-9.-]+(:[0-9]+)?(/[!-~]*)?",
    "ollama_release_sha256": r"[0-9a-f]{64}",
    "open_webui_version": r"[0-9][0-9A-Za-z.+_-]*",
    "open_webui_wheel_filename": r"[A-Za-z0-9_][A-Za-z0-9_.+-]*\.whl",
    "open_webui_wheel_sha256": r"[0-9a-f]{64}",
}


def _check_accepted_lock(root) -> None:
    """What a build accepted: every pinned value in the tree has its form, every model pin
    is what its manifest says."""
    for path in (root / "host_vars").glob("*.yml"):
        section = yaml.safe_load(path.read_text().split("# === END MANAGED ===")[0])
        for key, form in _TREE_FORMS.items():
            if key in section:
                assert re.fullmatch(form, str(section[key])), (path.name, key, section[key])
        for model in section.get("ollama_models") or []:
            assert re.fullmatch(r"sha256:[0-9a-f]{64}", model["digest"]), (path.name, model)
    lock = json.loads((root / "anklume.lock").read_bytes())
    for ref, pin in lock.get("models", {}).items():
        locked = pin["locked"]
        assert locked["digest"] == "sha256:" + hashlib.sha256(locked["manifest"].encode()).hexdigest(), ref
        manifest = json.loads(locked["manifest"])
        assert [manifest["config"], *manifest["layers"]] == [locked["config"], *locked["layers"]], ref
        assert locked["size"] == sum(b["size"] for b in [manifest["config"], *manifest["layers"]]), ref


@settings(FUZZ, max_examples=examples(60))
@given(data=st.data())
def test_a_hostile_lock_is_refused_or_gives_a_tree_of_valid_pins(data, tmp_path_factory):
    root = _built(tmp_path_factory)
    (root / "anklume.lock").write_text(_mutate_lock(data.draw, (root / "anklume.lock").read_text()))
    before = snapshot_dir(root)
    for argv in (["lock", "--check"], ["graph"], ["verify"], ["build", "--no-apply"]):
        result = _run(root, argv)
        if result.exit_code == 1:
            assert snapshot_dir(root) == before, argv
            assert "anklume.lock" in result.output or "anklume lock" in result.output, (argv, result.output)
    if result.exit_code == 0:
        _check_accepted_lock(root)


def _cluster_leaves(text: str) -> list[tuple]:
    doc = json.loads(text)
    return [p for p in _leaves(doc) if p[0] in ("cluster", "gpus")]


@settings(FUZZ, max_examples=examples(60))
@given(data=st.data())
def test_a_hostile_cluster_lock_is_refused_or_keeps_its_promises(data, tmp_path_factory):
    """The cluster section (tests/support/cluster_recorded.py: gpu-workstation on 3 members) under
    the same mutations, half of them aimed at the cluster section and the GPU pins; what is
    accepted places every machine on a listed member, its target's when it has one."""
    from tests.support.cluster_recorded import cluster_example

    root = tmp_path_factory.mktemp("proj")
    cluster_example(root)
    text = (root / "anklume.lock").read_text()
    if data.draw(st.booleans(), label="aimed at the cluster"):
        doc = json.loads(text)
        path = data.draw(st.sampled_from(_cluster_leaves(text)), label="leaf")
        _at(doc, path[:-1])[path[-1]] = data.draw(st.sampled_from(_HOSTILE_LOCK_VALUES + ["m1", "m2", "m9"]),
                                                  label="value")
        text = json.dumps(doc, indent=2, sort_keys=True) + "\n"
    else:
        text = _mutate_lock(data.draw, text)
    (root / "anklume.lock").write_text(text)
    before = snapshot_dir(root)
    for argv in (["lock", "--check"], ["lock", "--offline"], ["graph"], ["verify"], ["build", "--no-apply"]):
        result = _run(root, argv)
        if result.exit_code == 1:
            assert snapshot_dir(root) == before, argv
            assert "anklume.lock" in result.output or "anklume lock" in result.output or "infra.yml" in result.output, \
                (argv, result.output)
        before = snapshot_dir(root)
    if result.exit_code == 0:
        lock = json.loads((root / "anklume.lock").read_bytes())
        cluster = lock["cluster"]
        for machine, placed in cluster["placement"].items():
            assert placed["locked"]["member"] in cluster["members"], machine
        assert cluster["placement"]["gw-dev"]["locked"]["member"] == "m3"


# -- tampered trees ------------------------------------------------------------------------------

BEGIN, END = "# === MANAGED BY infra.yml ===", "# === END MANAGED ==="


def _mutate_tree_file(draw, text: str) -> str:
    lines = text.splitlines(keepends=True)
    kind = draw(st.sampled_from(["delete-begin", "delete-end", "paste-section", "marker-line", "marker-in-comment",
                                 "marker-in-value", "managed-key-below", "crlf", "trailing-blanks"]),
                label="tree mutation")
    section = text[text.index(BEGIN):text.index(END) + len(END)]
    at = draw(st.integers(0, len(lines)), label="line")
    if kind == "delete-begin":
        return text.replace(BEGIN + "\n", "", 1)
    if kind == "delete-end":
        return text.replace(END + "\n", "", 1)
    if kind == "paste-section":
        return "".join(lines[:at]) + section + "\n" + "".join(lines[at:])
    if kind == "marker-line":
        return "".join(lines[:at]) + draw(st.sampled_from([BEGIN, END])) + "\n" + "".join(lines[at:])
    if kind == "marker-in-comment":
        marker = draw(st.sampled_from([BEGIN, END]))
        return "".join(lines[:at]) + f"# see {marker} here\n" + "".join(lines[at:])
    if kind == "marker-in-value":
        marker = draw(st.sampled_from([BEGIN, END]))
        return text + f"mine: 'before {marker} after'\nnote: |\n  {marker}\n"
    if kind == "managed-key-below":
        managed = [line.split(":")[0] for line in section.splitlines() if re.match(r"[a-z_]+:", line)]
        key = draw(st.sampled_from(managed), label="key")
        return text + f"{key}: overridden\n"
    if kind == "crlf":
        return text.replace("\n", "\r\n")
    return text.replace(END + "\n", END + " \t\n", 1)


@settings(FUZZ, max_examples=examples(40))
@given(data=st.data())
def test_a_tampered_tree_is_refused_or_converges_and_verify_means_what_it_says(data, tmp_path_factory):
    root = _built(tmp_path_factory)
    rendered = {p.relative_to(root).as_posix(): p.read_text() for p in sorted(root.glob("*_vars/*.yml"))}
    for rel in data.draw(st.lists(st.sampled_from(sorted(rendered)), min_size=1, max_size=3, unique=True),
                         label="files"):
        path = root / rel
        path.write_bytes(_mutate_tree_file(data.draw, path.read_text()).encode())
    before = snapshot_dir(root)
    first = _run(root, ["build", "--no-apply"])
    if first.exit_code == 1:
        assert snapshot_dir(root) == before
        assert re.search(r"\.yml: line [0-9]+: ", first.output), first.output
    else:
        once = snapshot_dir(root)
        again = _run(root, ["build", "--no-apply"])
        assert again.exit_code == 0 and "tree: 0 file(s) written" in again.output, again.output
        assert snapshot_dir(root) == once
    if _run(root, ["verify"]).exit_code == 0:
        # verify passed: what Ansible reads is what the lock renders, key for key
        for rel, text in rendered.items():
            expected = yaml.safe_load(text)
            actual = yaml.safe_load((root / rel).read_text())
            for key, value in expected.items():
                assert actual[key] == value, (rel, key)

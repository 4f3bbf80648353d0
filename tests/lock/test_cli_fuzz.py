"""Fuzzing through the command line: a mutated infra.yml never produces a
traceback, and a command that fails writes nothing (lock and tree unchanged)."""

from __future__ import annotations

import shutil

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

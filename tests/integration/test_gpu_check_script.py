"""`scripts/gpu-check.sh --dry-run`: the real GPU check's every step on this GPU-less machine (a
private incusd of its own), the GPU ones checked to be refused or to fail cleanly.  Slow the first
time: the Debian image with python3 it imports is built by mmdebstrap, then cached."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_gpu_check_dry_run(tmp_path):
    done = subprocess.run(["bash", str(REPO / "scripts" / "gpu-check.sh"), "--dry-run"], cwd=REPO,
                          capture_output=True, text=True, timeout=900, env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
                                                                            "OUT": str(tmp_path)})
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    summary = done.stdout.split("=== gpu-check summary ===", 1)[1]
    assert "FAIL" not in summary
    for step in ("anklume lock: the GPU and its driver pinned", "the GPU machine refused, the rest built",
                 "the missing card reported", "python3 and ctypes run, libcuda.so.1 absent",
                 "the lock with another UUID: refused by the preflight"):
        [line] = [line for line in summary.splitlines() if step in line]
        assert line.startswith("PASS "), line
    assert summary.rstrip().splitlines()[-1].startswith("gpu-check: OK: 9 passed, 0 failed, 1 skipped")
    assert (tmp_path / "gpu-check-dry-run.log").read_text().endswith(summary.rstrip().splitlines()[-1] + "\n")

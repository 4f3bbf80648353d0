"""scripts/gpu_check_cuda.py, the CUDA program gpu-check.sh runs in the GPU container, against a
test double of libcuda.so.1 (tests/support/fake_libcuda.c, compiled here): its ctypes calls, the
UUID in nvidia-smi's form, the bytes compared, and its failures said in one JSON line."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PROGRAM = REPO / "scripts" / "gpu_check_cuda.py"
FAKE = REPO / "tests" / "support" / "fake_libcuda.c"


@pytest.fixture(scope="module")
def fake_libcuda(tmp_path_factory) -> Path:
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.fail("no C compiler: scripts/setup.sh installs gcc", pytrace=False)
    lib = tmp_path_factory.mktemp("fake-cuda")
    subprocess.run([cc, "-shared", "-fPIC", "-O1", "-o", str(lib / "libcuda.so.1"), str(FAKE)], check=True)
    return lib


def run(lib: Path | None, *args: str, **env: str) -> tuple[int, dict]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("FAKE_CUDA")} | env
    if lib is not None:
        environ["LD_LIBRARY_PATH"] = str(lib)
    done = subprocess.run([sys.executable, str(PROGRAM), *args], capture_output=True, text=True, env=environ,
                          timeout=60)
    return done.returncode, json.loads(done.stdout)


def test_the_round_trip_on_the_test_double(fake_libcuda):
    rc, out = run(fake_libcuda, "2")
    assert rc == 0, out
    assert out == {"ok": True, "device": "Fake CUDA test double", "uuid": "GPU-9e1c631b-fafe-f96d-935d-1ff4b8a5bf54",
                   "cuda_driver_version": "13.0", "devices": 1, "round_trip_bytes": 2 << 20}


def test_bytes_that_come_back_changed_fail(fake_libcuda):
    rc, out = run(fake_libcuda, "1", FAKE_CUDA_CORRUPT="1")
    assert rc == 1 and out == {"ok": False, "error": "the 1 MiB copied to the GPU and back differ"}


def test_no_device(fake_libcuda):
    rc, out = run(fake_libcuda, FAKE_CUDA_NO_DEVICE="1")
    assert rc == 1 and out["error"] == "cuDeviceGetCount: no CUDA device"


def test_no_driver(tmp_path):
    rc, out = run(tmp_path)
    assert rc == 1 and out["error"].startswith("cannot load libcuda.so.1")

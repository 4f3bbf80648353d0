"""The Open WebUI test double (tests/support/webui_double.py): a real, installable wheel."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import subprocess
import sys
import zipfile

from tests.support.webui_double import (
    REQUIRES_PYTHON,
    build_webui_wheel,
    pypi_files,
    pypi_json,
    wheel_filename,
)

VERSION = "0.12.4"


def test_wheel_is_deterministic_and_valid():
    filename, wheel = build_webui_wheel(VERSION)
    assert (filename, wheel) == build_webui_wheel(VERSION)
    assert filename == wheel_filename(VERSION) == "open_webui-0.12.4-py3-none-any.whl"
    with zipfile.ZipFile(io.BytesIO(wheel)) as zf:
        assert zf.testzip() is None
        names = zf.namelist()
        assert names[-1] == "open_webui-0.12.4.dist-info/RECORD"
        assert {i.date_time for i in zf.infolist()} == {(2024, 1, 1, 0, 0, 0)}
        record = zf.read(names[-1]).decode().splitlines()
        for line in record[:-1]:
            path, digest, size = line.split(",")
            data = zf.read(path)
            expected = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            assert (digest, int(size)) == (f"sha256={expected}", len(data))
        assert sorted(line.split(",")[0] for line in record) == sorted(names)
        metadata = zf.read("open_webui-0.12.4.dist-info/METADATA").decode()
        assert "Name: open-webui\nVersion: 0.12.4\n" in metadata
        assert "TEST DOUBLE" in metadata and "TEST DOUBLE" in zf.read("open_webui/__init__.py").decode()
        assert "open-webui = open_webui:main" in zf.read("open_webui-0.12.4.dist-info/entry_points.txt").decode()
    assert build_webui_wheel("0.12.5")[1] != wheel


def test_pypi_json_describes_the_wheel():
    filename, wheel = build_webui_wheel(VERSION)
    doc = json.loads(pypi_json(VERSION, filename, wheel, "http://127.0.0.1:8000/"))
    assert doc["info"]["version"] == VERSION
    assert doc["info"]["requires_python"] == REQUIRES_PYTHON
    (url,) = doc["urls"]
    assert url["packagetype"] == "bdist_wheel"
    assert url["filename"] == filename
    b2 = hashlib.blake2b(wheel, digest_size=32).hexdigest()
    assert url["url"] == f"http://127.0.0.1:8000/packages/{b2[:2]}/{b2[2:4]}/{b2[4:]}/{filename}"
    assert url["digests"] == {"sha256": hashlib.sha256(wheel).hexdigest(), "blake2b_256": b2,
                              "md5": hashlib.md5(wheel).hexdigest()}
    assert url["size"] == len(wheel)
    assert url["requires_python"] == REQUIRES_PYTHON
    files = pypi_files(VERSION, "http://127.0.0.1:8000")
    path = f"/packages/{b2[:2]}/{b2[2:4]}/{b2[4:]}/{filename}"
    assert sorted(files) == sorted(["/pypi/open-webui/json", "/pypi/open-webui/0.12.4/json", path])
    assert files[path] == wheel


def test_wheel_installs_offline_and_its_script_runs(tmp_path):
    filename, wheel = build_webui_wheel(VERSION)
    (tmp_path / filename).write_bytes(wheel)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path),
           "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    subprocess.run([str(venv / "bin" / "pip"), "install", "--no-index", str(tmp_path / filename)],
                   check=True, capture_output=True, env=env, timeout=120)
    version = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import importlib.metadata as m; print(m.version('open-webui'))"],
        check=True, capture_output=True, text=True, timeout=30).stdout
    assert version == f"{VERSION}\n"
    proc = subprocess.run([str(venv / "bin" / "open-webui"), "serve", "--port", "3000"],
                          env=dict(env, OLLAMA_BASE_URL="http://10.0.0.5:11434"),
                          capture_output=True, text=True, timeout=30, check=False)
    assert proc.returncode == 0
    assert proc.stdout.splitlines()[:2] == [f"open-webui {VERSION} (anklume test double)",
                                            "OLLAMA_BASE_URL=http://10.0.0.5:11434"]

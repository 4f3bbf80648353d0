"""The TEST DOUBLE of Open WebUI: a tiny stand-in wheel, and the PyPI JSON that describes it.

The real `open-webui` wheel is 106 MB with 109 pinned dependencies (torch among them), too big
for the tests, so they lock, fetch, place and install this one instead:

    filename, wheel = build_webui_wheel("0.12.4")   # open_webui-0.12.4-py3-none-any.whl
    doc = pypi_json("0.12.4", filename, wheel, srv.url)  # /pypi/open-webui/json's shape
    files = pypi_files("0.12.4", srv.url)           # {"/pypi/open-webui/json": ..., ...}

The JSON has PyPI's digests (sha256, blake2b_256, md5) and puts the wheel at PyPI's storage
path, `<base_url>/packages/<b2[:2]>/<b2[2:4]>/<b2[4:]>/<filename>` (b2: blake2b_256), so the
canonical https://files.pythonhosted.org/packages/... URL and the loopback one share their path.

The wheel is a valid, dependency-free wheel (METADATA, WHEEL, RECORD with hashes,
entry_points.txt) with the same distribution name, `open-webui`, and console script,
`open-webui = open_webui:main`; the script prints its version and the OLLAMA_BASE_URL it sees,
then exits 0 (it serves nothing). Its bytes are deterministic (fixed zip timestamps and order).
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import zipfile

DIST_NAME = "open-webui"
MODULE = "open_webui"
REQUIRES_PYTHON = ">=3.11, <3.13"
#: zip timestamp of every member (zip cannot store dates before 1980).
ZIP_DATE = (2024, 1, 1, 0, 0, 0)
#: where pypi_json puts the wheel, under the server's base URL (then PyPI's storage path).
PACKAGES_PATH = "/packages/"

INIT_PY = '''\
"""TEST DOUBLE of Open WebUI, built by anklume's tests (tests/support/webui_double.py).

This is NOT Open WebUI: `open-webui [serve ...]` prints its version and OLLAMA_BASE_URL, exits 0.
"""

import os
import sys

__version__ = "@VERSION@"


def main(argv=None):
    args = sys.argv[1:] if argv is None else list(argv)
    print(f"open-webui {__version__} (anklume test double)")
    print(f"OLLAMA_BASE_URL={os.environ.get('OLLAMA_BASE_URL', '')}")
    if args:
        print("args: " + " ".join(args))
    return 0
'''


def wheel_filename(version: str) -> str:
    return f"{MODULE}-{version}-py3-none-any.whl"


def _record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def wheel_members(version: str, requires_python: str = REQUIRES_PYTHON,
                  requires: tuple[str, ...] = ()) -> dict[str, bytes]:
    """The wheel's files, RECORD included, by archive path; ``requires``: Requires-Dist lines."""
    dist_info = f"{MODULE}-{version}.dist-info"
    members = {
        f"{MODULE}/__init__.py": INIT_PY.replace("@VERSION@", version).encode(),
        f"{dist_info}/METADATA": (
            "Metadata-Version: 2.1\n"
            f"Name: {DIST_NAME}\n"
            f"Version: {version}\n"
            "Summary: TEST DOUBLE of Open WebUI built by anklume's tests (not Open WebUI)\n"
            f"Requires-Python: {requires_python}\n"
            + "".join(f"Requires-Dist: {r}\n" for r in requires)
        ).encode(),
        f"{dist_info}/WHEEL": (
            b"Wheel-Version: 1.0\n"
            b"Generator: anklume-tests\n"
            b"Root-Is-Purelib: true\n"
            b"Tag: py3-none-any\n"
        ),
        f"{dist_info}/entry_points.txt": f"[console_scripts]\nopen-webui = {MODULE}:main\n".encode(),
    }
    record = "".join(f"{path},{_record_hash(data)},{len(data)}\n" for path, data in members.items())
    members[f"{dist_info}/RECORD"] = (record + f"{dist_info}/RECORD,,\n").encode()
    return members


def build_webui_wheel(version: str, requires_python: str = REQUIRES_PYTHON,
                      requires: tuple[str, ...] = ()) -> tuple[str, bytes]:
    """(filename, wheel bytes) of the double at `version`; same version, same bytes."""
    return wheel_filename(version), _zip(wheel_members(version, requires_python, requires))


def build_dependency_wheel(name: str, version: str) -> tuple[str, bytes]:
    """A tiny pure-Python wheel of distribution ``name`` (module ``name`` with - as _), standing in
    for one of Open WebUI's dependencies in a wheelhouse."""
    module = name.replace("-", "_")
    dist_info = f"{module}-{version}.dist-info"
    members = {
        f"{module}/__init__.py": f'"""TEST DOUBLE dependency (anklume tests)."""\n__version__ = "{version}"\n'.encode(),
        f"{dist_info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode(),
        f"{dist_info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: anklume-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = "".join(f"{path},{_record_hash(data)},{len(data)}\n" for path, data in members.items())
    members[f"{dist_info}/RECORD"] = (record + f"{dist_info}/RECORD,,\n").encode()
    return f"{module}-{version}-py3-none-any.whl", _zip(members)


def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for path, data in members.items():  # RECORD last
            info = zipfile.ZipInfo(path, date_time=ZIP_DATE)
            info.create_system = 3  # unix, so the mode below is read
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, data, compresslevel=9)
    return buf.getvalue()


def storage_path(filename: str, wheel: bytes) -> str:
    """PyPI's storage path of a file: /packages/<aa>/<bb>/<rest of blake2b_256>/<filename>."""
    b2 = hashlib.blake2b(wheel, digest_size=32).hexdigest()
    return f"{PACKAGES_PATH}{b2[:2]}/{b2[2:4]}/{b2[4:]}/{filename}"


def pypi_json(version: str, filename: str, wheel: bytes, base_url: str,
              requires_python: str = REQUIRES_PYTHON) -> bytes:
    """A document shaped like PyPI's JSON API (/pypi/open-webui/json) for this one wheel, whose
    `url` is <base_url> + storage_path(filename, wheel)."""
    doc = {
        "info": {"name": DIST_NAME, "version": version, "requires_python": requires_python,
                 "summary": "TEST DOUBLE of Open WebUI (anklume tests)"},
        "urls": [{
            "packagetype": "bdist_wheel",
            "filename": filename,
            "url": base_url.rstrip("/") + storage_path(filename, wheel),
            "digests": {"blake2b_256": hashlib.blake2b(wheel, digest_size=32).hexdigest(),
                        "md5": hashlib.md5(wheel).hexdigest(),  # PyPI gives md5 too
                        "sha256": hashlib.sha256(wheel).hexdigest()},
            "size": len(wheel),
            "requires_python": requires_python,
            "python_version": "py3",
            "yanked": False,
        }],
    }
    return json.dumps(doc, indent=2, sort_keys=True).encode()


def pypi_files(version: str, base_url: str, requires_python: str = REQUIRES_PYTHON,
               requires: tuple[str, ...] = ()) -> dict[str, bytes]:
    """Paths for a StaticHTTPServer: the JSON API (latest and per-version) and the wheel."""
    filename, wheel = build_webui_wheel(version, requires_python, requires)
    doc = pypi_json(version, filename, wheel, base_url, requires_python)
    return {
        f"/pypi/{DIST_NAME}/json": doc,
        f"/pypi/{DIST_NAME}/{version}/json": doc,
        storage_path(filename, wheel): wheel,
    }

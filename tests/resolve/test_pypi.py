"""PyPI resolver: the recorded open-webui JSON (tests/fixtures/pypi) served on loopback."""

from __future__ import annotations

import copy
import json

import pytest

from anklume.errors import OfflineMiss, ResolveError, SourceError
from anklume.lock.schema import OpenWebUILocked
from anklume.resolve.http import Fetcher
from anklume.resolve.pypi import (
    check_version,
    closest_versions,
    is_pure_wheel,
    resolve_open_webui,
)
from tests.support.recorded import (
    pypi_files,
    pypi_project,
    pypi_version_doc,
    with_absolute_file_urls,
)

PIN_0_12_4 = OpenWebUILocked(
    version="0.12.4",
    filename="open_webui-0.12.4-py3-none-any.whl",
    url="https://files.pythonhosted.org/packages/d5/68/ba67840b98eb35636dbfb0685a6b4c3c02e26bd60e500f56d2e52216c13c/"
        "open_webui-0.12.4-py3-none-any.whl",
    sha256="02e9caba96234db3fa17a92e56163b3f7f2b8ca8227fa886b85c178d696483f6",
    size=106366595,
    requires_python="<3.13.0a1,>=3.11",
)
PROJECT = "/pypi/open-webui/json"


def wheel_of(doc: dict, version: str) -> dict:
    return next(f for f in doc["releases"][version] if f["filename"].endswith("-py3-none-any.whl"))


def test_latest_is_the_projects_version_in_one_request(http_serve, fetcher):
    server = http_serve(pypi_files(pypi_project()))
    assert resolve_open_webui(fetcher, server.url, "latest") == PIN_0_12_4
    assert server.requests == [PROJECT]
    assert server.headers[0]["Accept"] == "application/json"


def test_a_version_is_read_from_its_own_answer(http_serve, fetcher):
    server = http_serve(pypi_files(pypi_project()))
    assert resolve_open_webui(fetcher, server.url + "/", "0.12.4") == PIN_0_12_4
    assert resolve_open_webui(fetcher, server.url, "v0.12.4") == PIN_0_12_4  # PEP 440 allows a leading v
    assert server.requests == ["/pypi/open-webui/0.12.4/json"] * 2


def test_an_older_version_pins_its_own_wheel(http_serve, fetcher):
    doc = pypi_project()
    server = http_serve(pypi_files(doc))
    pin = resolve_open_webui(fetcher, server.url, "0.12.3")
    wheel = wheel_of(doc, "0.12.3")
    assert (pin.version, pin.filename, pin.sha256, pin.size) == (
        "0.12.3", "open_webui-0.12.3-py3-none-any.whl", wheel["digests"]["sha256"], wheel["size"])
    b2 = wheel["digests"]["blake2b_256"]
    assert pin.url == f"https://files.pythonhosted.org/packages/{b2[:2]}/{b2[2:4]}/{b2[4:]}/{pin.filename}"


def test_pypi_s_own_absolute_urls_give_the_same_pin(http_serve, fetcher):
    doc = with_absolute_file_urls(pypi_project())
    assert doc["urls"][1]["url"] == PIN_0_12_4.url  # what pypi.org writes: the storage path
    server = http_serve(pypi_files(doc))
    assert resolve_open_webui(fetcher, server.url, "latest") == PIN_0_12_4
    assert resolve_open_webui(fetcher, server.url, "0.12.4") == PIN_0_12_4


def test_a_mirror_without_per_version_answers_uses_the_releases(http_serve, fetcher):
    """As the PyPI this machine reaches: the project JSON, and 404 for /<version>/json."""
    server = http_serve(pypi_files(pypi_project(), per_version=False))
    assert resolve_open_webui(fetcher, server.url, "0.12.4") == PIN_0_12_4
    assert server.requests == ["/pypi/open-webui/0.12.4/json", PROJECT]


def test_an_unknown_version_names_the_closest_ones(http_serve, fetcher):
    server = http_serve(pypi_files(pypi_project()))
    with pytest.raises(ResolveError) as info:
        resolve_open_webui(fetcher, server.url, "0.12.10")
    assert info.value.message == (f"open-webui 0.12.10 is not on PyPI: {server.url}/pypi/open-webui/0.12.10/json "
                                  "answered 404")
    assert info.value.hint == "the closest versions PyPI lists: 0.12.3, 0.12.4"
    with pytest.raises(ResolveError) as info:
        resolve_open_webui(fetcher, server.url, "0.6.99")
    assert info.value.hint == "the closest versions PyPI lists: 0.6.42, 0.6.43, 0.7.0, 0.7.1"


def test_a_release_without_a_pure_wheel(http_serve, fetcher):
    doc = pypi_project()
    doc["releases"]["0.12.4"] = [f for f in doc["releases"]["0.12.4"] if f["packagetype"] == "sdist"]
    doc["urls"] = doc["releases"]["0.12.4"]
    server = http_serve(pypi_files(doc))
    for version in ("latest", "0.12.4"):
        with pytest.raises(ResolveError) as info:
            resolve_open_webui(fetcher, server.url, version)
        assert info.value.message == "open-webui 0.12.4 has no py3-none-any wheel on PyPI"
        assert info.value.hint == "its files: open_webui-0.12.4.tar.gz"


def test_no_such_project(http_serve, fetcher):
    server = http_serve({})
    for version in ("latest", "0.12.4"):
        with pytest.raises(ResolveError, match=r"no project open-webui on PyPI: .*/pypi/open-webui/json answered 404"):
            resolve_open_webui(fetcher, server.url, version)


@pytest.mark.parametrize("bad", ["", "latest!", "0.12.4/../../x", "one", "0.12.4 ", "v"])
def test_a_version_that_is_not_one(bad, fetcher):
    with pytest.raises(ResolveError, match="is not 'latest' or a version like 0.12.4"):
        resolve_open_webui(fetcher, "http://127.0.0.1:9", bad)


def test_relative_url_without_blake2b_is_a_source_error(http_serve, fetcher):
    doc = pypi_project()
    del doc["urls"][1]["digests"]["blake2b_256"]
    server = http_serve(pypi_files(doc, per_version=False))
    with pytest.raises(SourceError, match="has no blake2b_256 digest, so its files.pythonhosted.org URL is unknown"):
        resolve_open_webui(fetcher, server.url, "latest")


@pytest.mark.parametrize("body", [b"<html>not json</html>", b'{"info": {}}', b'{"info": {"version": "0.1"}, "urls": 3}'])
def test_an_answer_that_is_not_the_json_api(http_serve, fetcher, body):
    server = http_serve({PROJECT: body})
    with pytest.raises(SourceError, match="is not the JSON API's shape"):
        resolve_open_webui(fetcher, server.url, "latest")


def test_a_wheel_without_sha256_is_a_source_error(http_serve, fetcher):
    doc = pypi_project()
    doc["urls"][1]["digests"]["sha256"] = "nope"
    server = http_serve(pypi_files(doc, per_version=False))
    with pytest.raises(SourceError, match="has no sha256 digest"):
        resolve_open_webui(fetcher, server.url, "latest")


def test_offline_answers_from_the_cache_by_canonical_key(http_serve, tmp_path):
    server = http_serve(pypi_files(pypi_project()))
    url = server.url
    resolve_open_webui(Fetcher(cache_dir=tmp_path / "cache", timeout=2), url, "0.12.4")
    server.stop()
    offline = Fetcher(cache_dir=tmp_path / "cache", offline=True)
    assert resolve_open_webui(offline, "https://another.mirror.example", "0.12.4") == PIN_0_12_4
    with pytest.raises(OfflineMiss) as info:
        resolve_open_webui(offline, url, "0.12.3")
    assert info.value.message == ("offline: neither https://pypi.org/pypi/open-webui/0.12.3/json nor "
                                  "https://pypi.org/pypi/open-webui/json is in the cache")
    with pytest.raises(OfflineMiss, match="https://pypi.org/pypi/open-webui/json is not in the cache"):
        resolve_open_webui(offline, url, "latest")


def test_offline_version_from_a_cached_project_answer(http_serve, tmp_path):
    server = http_serve(pypi_files(pypi_project(), per_version=False))
    resolve_open_webui(Fetcher(cache_dir=tmp_path, timeout=2), server.url, "0.12.4")  # cached: the project JSON
    server.stop()
    assert resolve_open_webui(Fetcher(cache_dir=tmp_path, offline=True), "https://pypi.org", "0.12.4") == PIN_0_12_4


def test_a_server_error_is_not_taken_for_a_missing_version(http_serve, fetcher):
    server = http_serve(pypi_files(pypi_project()), status={"/pypi/open-webui/0.12.4/json": 503})
    with pytest.raises(SourceError, match="answered HTTP 503") as info:
        resolve_open_webui(fetcher, server.url, "0.12.4")
    assert "ANKLUME_PYPI" in info.value.hint


def test_derived_version_answer_keeps_the_recorded_files():
    doc = pypi_project()
    derived = pypi_version_doc(doc, "0.12.4")
    assert derived["info"] == doc["info"] and "releases" not in derived
    assert [f["url"] for f in derived["urls"]] == ["../" + f["url"] for f in doc["releases"]["0.12.4"]]
    assert json.loads(json.dumps(derived)) == derived
    assert doc == pypi_project()  # not modified in place


def test_pure_wheel_names():
    assert is_pure_wheel("open_webui-0.12.4-py3-none-any.whl")
    assert is_pure_wheel("six-1.16.0-py2.py3-none-any.whl")
    assert is_pure_wheel("pkg-1.0-1build-py3-none-any.whl")
    assert not is_pure_wheel("open_webui-0.12.4.tar.gz")
    assert not is_pure_wheel("numpy-2.0.0-cp311-cp311-manylinux_2_17_x86_64.whl")
    assert not is_pure_wheel("pkg-1.0-py2-none-any.whl")
    assert not is_pure_wheel("../pkg-1.0-py3-none-any.whl")


def test_closest_versions_and_version_checks():
    listed = ["0.9.6", "0.10.0", "0.1.124", "0.10.0rc1", "0.11.0", "0.2.0"]
    assert closest_versions("0.10.1", listed) == ["0.10.0rc1", "0.10.0", "0.11.0"]
    assert closest_versions("0.0.1", listed) == ["0.1.124", "0.2.0"]
    assert closest_versions("1.0", []) == []
    assert check_version("latest") == "latest" and check_version("v1.2.3") == "1.2.3"
    assert check_version("0.10.0rc1") == "0.10.0rc1"


def test_doc_helpers_do_not_share_state():
    a = pypi_project()
    b = copy.deepcopy(a)
    with_absolute_file_urls(a)
    assert a == b

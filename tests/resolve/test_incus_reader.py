"""IncusReader: real pylxd over a unix socket to an Incus API test double; clear failures."""

from __future__ import annotations

import socket

import pytest

from anklume.backends.incus.client import default_incus_endpoint
from anklume.backends.incus.reader import IncusReader
from anklume.errors import SourceError


def test_resources_and_images_with_their_project(fake_incus):
    incus = fake_incus({"/1.0/resources": {"gpu": {"cards": [], "total": 0}},
                        "/1.0/images/aliases/a%20b": {"target": "f" * 64}})
    reader = IncusReader(incus.socket)
    assert reader.resources() == {"gpu": {"cards": [], "total": 0}}
    assert reader.image_alias("a b", project="lab") == {"target": "f" * 64}
    assert reader.image_alias("missing") is None
    assert incus.requests[-2:] == ["/1.0/images/aliases/a%20b?project=lab",
                                   "/1.0/images/aliases/missing?project=default"]


def test_a_missing_image_is_a_source_error(fake_incus):
    with pytest.raises(SourceError, match="/1.0/images/ab not found"):
        IncusReader(fake_incus({}).socket).image("ab")


def test_missing_socket(tmp_path):
    with pytest.raises(SourceError) as err:
        IncusReader(str(tmp_path / "no.socket")).resources()
    assert err.value.message == f"Incus at {tmp_path / 'no.socket'} unreachable: no such socket"
    assert "ANKLUME_INCUS" in err.value.hint


def test_socket_nobody_listens_on(tmp_path):
    path = tmp_path / "dead.socket"
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(path))  # the file stays, nobody listens: connection refused
    with pytest.raises(SourceError) as err:
        IncusReader(str(path)).resources()
    assert err.value.message == f"Incus at {path} unreachable: connection refused"


def test_https_endpoint_unreachable():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(SourceError) as err:
        IncusReader(f"https://127.0.0.1:{port}", timeout=2).resources()
    assert err.value.message.startswith(f"Incus at https://127.0.0.1:{port} unreachable: ")
    assert "Traceback" not in err.value.message and "(" not in err.value.message


def test_default_endpoint_is_the_first_existing_socket(tmp_path):
    first, second = tmp_path / "var-lib.socket", tmp_path / "run.socket"
    second.touch()
    assert default_incus_endpoint((str(first), str(second))) == str(second)
    first.touch()
    assert default_incus_endpoint((str(first), str(second))) == str(first)
    with pytest.raises(SourceError, match="no local Incus socket"):
        default_incus_endpoint((str(tmp_path / "none"),))


def test_answers_that_are_not_incus_objects(fake_incus):
    with pytest.raises(SourceError, match="GET /1.0/resources did not answer like Incus"):
        IncusReader(fake_incus({"/1.0/resources": "a string"}).socket).resources()


def test_tls_to_a_plain_http_server(http_serve):
    server = http_serve({"/1.0": b"<html>a web server</html>"})
    with pytest.raises(SourceError) as err:
        IncusReader(server.url.replace("http://", "https://"), timeout=2).resources()
    assert err.value.message.endswith("unreachable: TLS failure (WRONG_VERSION_NUMBER)")

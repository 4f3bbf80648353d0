"""The fetcher's bounds over TLS (the production path): a self-signed certificate for 127.0.0.1,
trusted through SSL_CERT_FILE, in front of the misbehaving servers of tests/support/badserve.py."""

from __future__ import annotations

import socket
import ssl
import subprocess
import threading

import pytest

from anklume.errors import SourceError
from anklume.resolve.http import Fetcher
from tests.support.badserve import BadServer, Misbehaviour, redirect
from tests.support.bounded import within



@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    return cert, key


@pytest.fixture
def tls(certificate, monkeypatch):
    """start(routes) -> the https:// URL of a TLS front for a BadServer with those routes."""
    cert, key = certificate
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    stops: list = []

    def start(routes):
        backend = BadServer(routes)
        backend.start()
        listener = socket.create_server(("127.0.0.1", 0))
        listener.settimeout(0.1)
        stop = threading.Event()

        def relay(a, b):  # noqa: ANN001
            try:
                while data := a.recv(65536):
                    b.sendall(data)
            except OSError:
                pass
            finally:
                for s in (a, b):
                    try:
                        s.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass

        def serve():
            while not stop.is_set():
                try:
                    raw, _ = listener.accept()
                except OSError:
                    continue
                try:
                    raw.settimeout(5)
                    conn = context.wrap_socket(raw, server_side=True)
                    conn.settimeout(None)
                except (OSError, ssl.SSLError):
                    raw.close()
                    continue
                port = int(backend.url.rsplit(":", 1)[1])
                back = socket.create_connection(("127.0.0.1", port))
                for a, b in ((conn, back), (back, conn)):
                    threading.Thread(target=relay, args=(a, b), daemon=True).start()

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        stops.append((stop, thread, listener, backend))
        return f"https://127.0.0.1:{listener.getsockname()[1]}"

    yield start
    for stop, thread, listener, backend in stops:
        stop.set()
        thread.join(timeout=5)
        listener.close()
        backend.stop()


def test_a_fetch_over_tls_works(tls, tmp_path):
    url = tls({"/x": Misbehaviour(body=b"{}")})
    assert Fetcher(cache_dir=tmp_path, timeout=5).fetch(url + "/x", key="k", source="s").body == b"{}"


def test_a_dripping_body_over_tls_is_cut_at_the_deadline(tls, tmp_path):
    url = tls({"/x": Misbehaviour(body=b"{" + b" " * 58 + b"}", drip=0.1)})
    with pytest.raises(SourceError) as err:
        within(5, lambda: Fetcher(cache_dir=tmp_path, timeout=5, deadline=1).fetch(url + "/x", key="k", source="s"))
    assert "did not finish within 1 s" in err.value.message


def test_an_endless_body_over_tls_is_refused_at_the_limit(tls, tmp_path):
    url = tls({"/x": Misbehaviour(content_length=None, endless=True)})
    with pytest.raises(SourceError) as err:
        within(10, lambda: Fetcher(cache_dir=tmp_path, timeout=5).fetch(url + "/x", key="k", source="s",
                                                                        limit=1 << 20))
    assert "sent more than 1 MiB" in err.value.message


def test_https_never_hands_over_to_http(tls, bad_serve, tmp_path):
    plain = bad_serve({"/x": Misbehaviour(body=b"{}")})
    url = tls({"/a": redirect(plain.url + "/x")})
    with pytest.raises(SourceError) as err:
        within(5, lambda: Fetcher(cache_dir=tmp_path, timeout=5).fetch(url + "/a", key="k", source="s"))
    assert "it goes from https to http" in err.value.message
    assert plain.requests == []


def test_a_store_download_over_tls(tls, tmp_path):
    import hashlib

    from anklume.store import ArtefactStore

    body = bytes(range(256)) * 4096
    url = tls({"/b": Misbehaviour(body=body)})
    got = within(10, lambda: ArtefactStore(tmp_path).ensure(hashlib.sha256(body).hexdigest(), [url + "/b"],
                                                            size=len(body)))
    assert got.read_bytes() == body

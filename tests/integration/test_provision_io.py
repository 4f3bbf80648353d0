"""InstanceIO: exec and files in real containers of the private incusd, through the REST API."""

from __future__ import annotations

import hashlib
import io
import json
import os
from pathlib import Path

import pytest

from anklume.backends.incus.reader import IncusReader
from anklume.backends.incus import IncusBackend
from anklume.backends.incus.files import (
    CHUNK,
    ExecFailed,
    ExecResult,
    InstanceIO,
    InstanceIOError,
)
from anklume.errors import AnklumeError

PROJECT = "pio"


@pytest.fixture(scope="module")
def instances(incus):
    """A project with a minimal Debian (python3) and a busybox container, both running."""
    incus.purge_project(PROJECT)
    incus.create_project(PROJECT)
    incus.ensure_debian_python_image(project=PROJECT)
    incus.ensure_busybox_image(project=PROJECT)
    incus.incus("launch", "debian-python", "deb", "--project", PROJECT)
    incus.incus("launch", "busybox", "bb", "--project", PROJECT)
    try:
        yield incus
    finally:
        incus.purge_project(PROJECT)


@pytest.fixture
def deb(instances):
    return InstanceIO(IncusReader(instances.socket), PROJECT, "deb")


@pytest.fixture(params=["deb", "bb"])
def any_io(request, instances):
    """Each test once in Debian (python3) and once in busybox (no python: the fallbacks)."""
    return InstanceIO(IncusBackend(instances.socket), PROJECT, request.param)


def _exec_logs(incus, name: str) -> list:
    return json.loads(incus.incus("query", f"/1.0/instances/{name}/logs/exec-output?project={PROJECT}"))


# -- exec ---------------------------------------------------------------------------------------------


def test_exec_rc_stdout_stderr_env_cwd(any_io, instances):
    script = 'echo "out $FOO"; echo "err $BAR" >&2; pwd; exit 3'
    result = any_io.exec(["sh", "-c", script], env={"FOO": "a b", "BAR": "x'y"}, cwd="/tmp", check=False)
    assert result == ExecResult(3, b"out a b\n/tmp\n", b"err x'y\n")
    assert any_io.exec(["true"]) == ExecResult(0, b"", b"")
    # the recorded outputs are deleted once read
    assert _exec_logs(instances, any_io.instance) == []


def test_exec_argv_is_not_a_shell_string(any_io):
    weird = "$(touch /tmp/pwned); `id` ; 'q' \"d\" \\ *"
    assert any_io.exec(["echo", weird]).stdout == weird.encode() + b"\n"
    assert any_io.exec(["ls", "/tmp/pwned"], check=False).rc != 0


def test_exec_check_raises_with_stderr(any_io):
    with pytest.raises(ExecFailed) as info:
        any_io.exec(["sh", "-c", "echo boom >&2; exit 7"])
    assert info.value.result.rc == 7
    assert "exited 7" in info.value.message and "boom" in info.value.message
    assert f"instance '{any_io.instance}' (project '{PROJECT}')" in info.value.message


def test_exec_missing_command_is_a_clear_error(deb):
    with pytest.raises(InstanceIOError, match="exec no-such-binary: Command not found"):
        deb.exec(["no-such-binary"], check=False)


def test_exec_stdin(any_io):
    data = bytes(range(256)) * 4 + b"\x00tail"
    result = any_io.exec(["sh", "-c", 'cat; echo "[$ANKLUME_STDIN]" >&2', "ignored"], stdin=data)
    assert result.stdout == data
    assert result.stderr == b"[]\n"  # the helper variable does not reach the command
    big = os.urandom(3 * 1024 * 1024)
    assert any_io.exec(["wc", "-c"], stdin=big).stdout.split() == [str(len(big)).encode()]
    assert any_io.exec(["cat"], stdin=b"").stdout == b""
    # the temporary file that carried stdin is gone
    assert b".anklume-stdin" not in any_io.exec(["ls", "-a", "/tmp"]).stdout


def test_exec_stdin_keeps_argv_intact(deb):
    argv = ["python3", "-c", "import sys; print(sys.argv[1:]); print(sys.stdin.read())", "a b", "$HOME", ""]
    out = deb.exec(argv, stdin=b"in put").stdout
    assert out == b"['a b', '$HOME', '']\nin put\n"


def test_exec_timeout(deb):
    with pytest.raises(InstanceIOError, match="still running after 1 s"):
        deb.exec(["sleep", "3"], timeout=1)


# -- files ---------------------------------------------------------------------------------------------


def test_push_pull_round_trip(any_io, tmp_path):
    data = os.urandom(5 * 1024 * 1024 + 123)
    src = tmp_path / "blob"
    src.write_bytes(data)
    seen: list[int] = []
    assert any_io.push("/root/blob", src, mode=0o640, uid=12, gid=34, progress=seen.append) == len(data)
    assert seen == sorted(seen) and seen[-1] == len(data) and len(seen) == -(-len(data) // CHUNK)
    stat = any_io.exec(["stat", "-c", "%a %u %g %s", "/root/blob"]).stdout.split()
    assert stat == [b"640", b"12", b"34", str(len(data)).encode()]
    out = io.BytesIO()
    assert any_io.pull("/root/blob", out) == len(data)
    assert out.getvalue() == data
    assert any_io.sha256(["/root/blob"]) == {"/root/blob": hashlib.sha256(data).hexdigest()}


def test_push_replaces_mode_owner_and_content(any_io):
    any_io.push("/root/f", b"first version, longer", mode=0o600, uid=5)
    any_io.push("/root/f", b"second", mode=0o755)
    assert any_io.exec(["stat", "-c", "%a %u %g", "/root/f"]).stdout.split() == [b"755", b"0", b"0"]
    out = io.BytesIO()
    any_io.pull("/root/f", out)
    assert out.getvalue() == b"second"
    any_io.push("/root/empty", b"")
    assert any_io.sizes(["/root/empty"]) == {"/root/empty": 0}


def test_push_is_streamed(deb):
    """A file object is read in chunks of at most CHUNK bytes, from its current position; one of
    unknown size (not seekable) is sent chunked."""

    class Watched(io.RawIOBase):
        def __init__(self, data: bytes, seekable: bool):
            self.inner = io.BytesIO(data)
            self._seekable = seekable
            self.reads: list[int] = []

        def readable(self):
            return True

        def seekable(self):
            return self._seekable

        def tell(self):
            return self.inner.tell()

        def seek(self, *args):
            return self.inner.seek(*args)

        def read(self, n=-1):
            self.reads.append(n)
            assert 0 < n <= CHUNK
            return self.inner.read(n)

    data = os.urandom(3 * CHUNK + 7)
    for seekable in (True, False):
        src = Watched(b"skipped" + data, seekable)
        src.inner.seek(7)
        assert deb.push("/root/streamed", src) == len(data)
        assert src.reads and max(src.reads) <= CHUNK
        assert deb.sha256(["/root/streamed"])["/root/streamed"] == hashlib.sha256(data).hexdigest()


def test_mkdir_parents_and_modes(any_io):
    any_io.mkdir("/srv/a/b/c", mode=0o700)
    any_io.mkdir("/srv/a/b/c", mode=0o700)  # exists: nothing to do
    any_io.mkdir("/tmp")  # an existing directory keeps its mode
    out = any_io.exec(["stat", "-c", "%a %n", "/srv/a", "/srv/a/b", "/srv/a/b/c", "/tmp"]).stdout
    assert out.decode().split("\n")[:4] == ["755 /srv/a", "755 /srv/a/b", "700 /srv/a/b/c", "1777 /tmp"]
    any_io.push("/srv/a/file", b"x")
    with pytest.raises(InstanceIOError, match="/srv/a/file exists and is not a directory"):
        any_io.mkdir("/srv/a/file/sub")


def test_sha256_and_sizes(any_io):
    any_io.push("/root/one", b"one")
    any_io.push("/root/name with spaces\nand newline", b"")
    paths = ["/root/one", "/root/missing", "/root/name with spaces\nand newline", "/root"]
    assert any_io.sha256(paths) == {
        "/root/one": hashlib.sha256(b"one").hexdigest(),
        "/root/missing": None,
        "/root/name with spaces\nand newline": hashlib.sha256(b"").hexdigest(),
        "/root": None,  # not a regular file
    }
    assert any_io.sizes(paths) == {"/root/one": 3, "/root/missing": None,
                                   "/root/name with spaces\nand newline": 0, "/root": None}
    assert any_io.sha256([]) == {} and any_io.sizes([]) == {}


def test_busybox_has_no_python_so_the_fallback_ran(instances):
    bb = InstanceIO(IncusReader(instances.socket), PROJECT, "bb")
    assert bb.exec(["test", "-e", "/usr/bin/python3"], check=False).rc != 0


# -- errors --------------------------------------------------------------------------------------------


def test_missing_instance_is_a_clear_error(instances):
    io_ = InstanceIO(IncusReader(instances.socket), PROJECT, "ghost")
    with pytest.raises(InstanceIOError) as info:
        io_.exec(["true"])
    assert "instance 'ghost' (project 'pio')" in info.value.message
    assert "not found" in info.value.message.lower()
    with pytest.raises(InstanceIOError, match="ghost.*push /root/x"):
        io_.push("/root/x", b"data")
    with pytest.raises(InstanceIOError, match="project 'nope'.*Project not found"):
        InstanceIO(IncusReader(instances.socket), "nope", "deb").exec(["true"])


def test_file_errors_name_the_path(deb):
    with pytest.raises(InstanceIOError, match=r"pull /root/missing: no such file"):
        deb.pull("/root/missing", io.BytesIO())
    with pytest.raises(InstanceIOError, match=r"pull /root: not a regular file \(directory\)"):
        deb.pull("/root", io.BytesIO())
    with pytest.raises(InstanceIOError, match=r"push /no/such/dir/x: no such directory: /no/such/dir"):
        deb.push("/no/such/dir/x", b"1")
    with pytest.raises(InstanceIOError, match=r"push /root: is a directory"):
        deb.push("/root", b"1")
    with pytest.raises(InstanceIOError, match="not an absolute path"):
        deb.push("relative/path", b"1")
    with pytest.raises(InstanceIOError, match=r"'\.\.' is not allowed"):
        deb.pull("/root/../etc/shadow", io.BytesIO())
    with pytest.raises(InstanceIOError, match="cannot read /no/local/file"):
        deb.push("/root/x", Path("/no/local/file"))


def test_invalid_names_are_refused_before_any_request(instances):
    for name in ("../x", "a/b", "", "-x", "x" * 64):
        with pytest.raises(InstanceIOError, match="invalid instance name"):
            InstanceIO(IncusReader(instances.socket), PROJECT, name)
    with pytest.raises(InstanceIOError, match="invalid Incus project name"):
        InstanceIO(IncusReader(instances.socket), "a/b", "deb")


def test_unreachable_endpoint_is_a_clear_error(tmp_path):
    with pytest.raises(AnklumeError) as info:
        InstanceIO(IncusReader(str(tmp_path / "no.socket")), PROJECT, "deb").exec(["true"])
    assert "unreachable" in str(info.value)


def test_accepts_a_pylxd_client(instances):
    io_ = InstanceIO(instances.client(), PROJECT, "deb")
    assert io_.exec(["echo", "hi"]).stdout == b"hi\n"
    assert io_.endpoint == instances.socket


def test_delete(deb):
    deb.push("/root/gone", b"x")
    deb.delete("/root/gone")
    deb.delete("/root/gone")  # absent: nothing to do
    assert deb.sizes(["/root/gone"]) == {"/root/gone": None}


_REMOTE_SCRIPT = """
import io, json, os, ssl, sys
sys.path.insert(0, sys.argv[1])
import pylxd
from anklume.backends.incus.files import InstanceIO
conf, server_crt, url = sys.argv[2], sys.argv[3], sys.argv[4]
with open(server_crt, "w") as f:  # trust on first use, as `incus remote add --accept-certificate`
    f.write(ssl.get_server_certificate(("127.0.0.1", 18443)))
# trust_env off: requests would otherwise let REQUESTS_CA_BUNDLE replace the pinned certificate
session = pylxd.client.get_session_for_url(url, verify=server_crt, cert=(conf + "/client.crt", conf + "/client.key"))
session.trust_env = False
client = pylxd.Client(endpoint=url, session=session)
io_ = InstanceIO(client, "pio", "deb")
data = os.urandom(3 * 1024 * 1024 + 5)
io_.push("/root/remote.bin", data, mode=0o600)
out = io.BytesIO()
io_.pull("/root/remote.bin", out)
print(json.dumps({"same": out.getvalue() == data, "endpoint": io_.endpoint,
                  "echo": io_.exec(["cat"], stdin=b"over https").stdout.decode(),
                  "sizes": io_.sizes(["/root/remote.bin", "/root/none"])}))
"""


def test_remote_https_endpoint(instances):
    """The same code over https with client certificates: the daemon listens on 127.0.0.1 of its
    own network namespace, and the client runs inside that namespace."""
    import subprocess
    import sys

    from tests.support.procs import find_binary

    incus = instances
    conf = incus.env["INCUS_CONF"]
    incus.incus("remote", "generate-certificate")  # into the private INCUS_CONF
    incus.incus("config", "trust", "add-certificate", f"{conf}/client.crt")
    incus.incus("config", "set", "core.https_address", "127.0.0.1:18443")
    try:
        repo = str(Path(__file__).resolve().parents[2])
        done = subprocess.run(
            [find_binary("ip"), "netns", "exec", incus.netns, sys.executable, "-c", _REMOTE_SCRIPT, repo, conf,
             f"{conf}/servercert.crt", "https://127.0.0.1:18443"],
            check=False, capture_output=True, text=True, timeout=120)
    finally:
        incus.incus("config", "unset", "core.https_address")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"same": True, "endpoint": "https://127.0.0.1:18443", "echo": "over https",
                                       "sizes": {"/root/remote.bin": 3 * 1024 * 1024 + 5, "/root/none": None}}

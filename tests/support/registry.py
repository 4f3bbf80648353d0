"""A real OCI distribution registry (Debian `docker-registry`, Distribution 2.8) on 127.0.0.1.

    with LocalRegistry() as reg:
        cfg = reg.push_blob("library/llama3.2", b"{}")          # -> "sha256:..."
        digest = reg.push_manifest("library/llama3.2", "3b", manifest_bytes)
        reg.url                                                  # "http://127.0.0.1:PORT"

Started with a config of our own (never the package's, which listens on all interfaces), storage
in a temp dir, port chosen by the kernel; stopped by PID.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from .procs import find_binary, kill_pids, pid_alive, stop_process, tail

DOCKER_MANIFEST_V2 = "application/vnd.docker.distribution.manifest.v2+json"
OCI_MANIFEST_V1 = "application/vnd.oci.image.manifest.v1+json"

_LISTENING = re.compile(rb"listening on 127\.0\.0\.1:(\d+)")

_CONFIG = """\
version: 0.1
log:
  level: info
  formatter: text
  fields:
    service: anklume-test-registry
storage:
  filesystem:
    rootdirectory: {root}
  delete:
    enabled: true
  redirect:
    disable: true
http:
  addr: 127.0.0.1:0
"""


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class RegistryError(RuntimeError):
    pass


TMP_PREFIX = "anklume-registry-"
OWNER_FILE = "owner"


def cleanup_stale() -> list[str]:
    """Stop registries left by a test process that died without teardown (SIGKILL): only a
    PID recorded in our own temp dir's owner file, and only if its command line still names
    that dir's config."""
    cleaned = []
    for d in Path(tempfile.gettempdir()).glob(TMP_PREFIX + "*"):
        try:
            owner, server = (int(x) for x in (d / OWNER_FILE).read_text().split()[:2])
        except (OSError, ValueError):
            continue
        if owner == os.getpid() or pid_alive(owner):
            continue
        try:
            cmdline = Path(f"/proc/{server}/cmdline").read_bytes().split(b"\0")
        except OSError:
            cmdline = []
        if str(d / "config.yml").encode() in cmdline:
            kill_pids([server], signal.SIGKILL)
        shutil.rmtree(d, ignore_errors=True)
        cleaned.append(str(d))
    return cleaned


class LocalRegistry:
    def __init__(self, start_timeout: float = 20.0) -> None:
        self.start_timeout = start_timeout
        self.tmp: Path | None = None
        self.proc: subprocess.Popen | None = None
        self.port: int | None = None
        self.log_path: Path | None = None
        self._log = None

    def __enter__(self) -> LocalRegistry:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self.port is not None, "registry not started"
        return f"http://127.0.0.1:{self.port}"

    @property
    def host(self) -> str:
        """host:port, as it appears in image references."""
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        binary = find_binary("docker-registry", "/usr/bin/docker-registry")
        cleanup_stale()
        self.tmp = Path(tempfile.mkdtemp(prefix=TMP_PREFIX))
        root = self.tmp / "storage"
        root.mkdir()
        config = self.tmp / "config.yml"
        config.write_text(_CONFIG.format(root=root))
        self.log_path = self.tmp / "registry.log"
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.tmp),
            "REGISTRY_HTTP_ADDR": "127.0.0.1:0",
            "REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY": str(root),
        }
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [binary, "serve", str(config)],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        (self.tmp / OWNER_FILE).write_text(f"{os.getpid()} {self.proc.pid}\n")
        deadline = time.monotonic() + self.start_timeout
        while self.port is None:
            m = _LISTENING.search(self.log_path.read_bytes())
            if m:
                self.port = int(m.group(1))
                break
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RegistryError(
                    f"docker-registry did not start:\n{tail(str(self.log_path))}"
                )
            time.sleep(0.02)
        # ready when /v2/ answers
        while True:
            try:
                with urllib.request.urlopen(self.url + "/v2/", timeout=2) as r:
                    if r.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError):
                pass
            if time.monotonic() > deadline:
                raise RegistryError(f"registry not answering:\n{tail(str(self.log_path))}")
            time.sleep(0.02)

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, timeout=10)
            self.proc = None
        if self._log is not None:
            self._log.close()
            self._log = None
        if self.tmp is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            self.tmp = None
        self.port = None

    # --- client helpers (urllib only) ----------------------------------------------------------

    def _request(self, method: str, url: str, data: bytes | None = None,
                 headers: dict[str, str] | None = None):
        if not url.startswith("http"):
            url = self.url + url
        req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
        try:
            return urllib.request.urlopen(req, timeout=30)
        except urllib.error.HTTPError as e:
            body = e.read().decode(errors="replace")
            raise RegistryError(f"{method} {url}: {e.code} {body}") from e

    def push_blob(self, repo: str, data: bytes) -> str:
        """Monolithic upload: POST to open a session, then PUT the bytes with ?digest=."""
        digest = sha256_digest(data)
        with self._request("POST", f"/v2/{repo}/blobs/uploads/") as r:
            location = r.headers["Location"]
        location = urllib.parse.urljoin(self.url + "/", location)
        sep = "&" if "?" in location else "?"
        put = f"{location}{sep}digest={urllib.parse.quote(digest)}"
        with self._request("PUT", put, data=data,
                           headers={"Content-Type": "application/octet-stream",
                                    "Content-Length": str(len(data))}) as r:
            got = r.headers.get("Docker-Content-Digest")
        if got != digest:
            raise RegistryError(f"registry stored {got}, expected {digest}")
        return digest

    def push_manifest(self, repo: str, tag: str, manifest_bytes: bytes,
                      media_type: str = DOCKER_MANIFEST_V2) -> str:
        """PUT the manifest bytes exactly as given; returns their digest."""
        digest = sha256_digest(manifest_bytes)
        with self._request("PUT", f"/v2/{repo}/manifests/{tag}", data=manifest_bytes,
                           headers={"Content-Type": media_type}) as r:
            got = r.headers.get("Docker-Content-Digest")
        if got != digest:
            raise RegistryError(f"registry stored manifest {got}, expected {digest}")
        return digest

    def get_manifest(self, repo: str, reference: str,
                     accept: str = DOCKER_MANIFEST_V2) -> tuple[bytes, dict[str, str]]:
        with self._request("GET", f"/v2/{repo}/manifests/{reference}",
                           headers={"Accept": accept}) as r:
            return r.read(), dict(r.headers)

    def get_blob(self, repo: str, digest: str) -> bytes:
        with self._request("GET", f"/v2/{repo}/blobs/{digest}") as r:
            return r.read()

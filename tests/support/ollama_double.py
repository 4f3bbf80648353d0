"""The TEST DOUBLE of the Ollama release: what the tests push into instances instead of Ollama.

The real Ollama (a ~1 GB Go binary plus GPU libraries) cannot run here, so the end-to-end tests
lock, fetch and place this double the way anklume places a real release:

    tarball, sums, asset = build_ollama_release("0.13.1")
    # asset == "ollama-linux-amd64.tgz"; sums == b"<sha256 of tarball>  ./ollama-linux-amd64.tgz\\n"
    files = {f"/v0.13.1/{asset}": tarball, "/v0.13.1/sha256sum.txt": sums}

The tarball unpacks like a real one (`bin/ollama`, `lib/ollama/...`) into /usr/local. Its
`bin/ollama` is a small python3 script, named a test double in its header, that answers only:

- `ollama --version` / `ollama -v`: "ollama version is <version> (anklume test double)";
- `ollama list [PREFIX]`: reads $OLLAMA_MODELS (default ~/.ollama/models) directly (no server),
  in Ollama's table format (NAME ID SIZE MODIFIED; ID = first 12 hex of the sha256 of the
  manifest file's bytes; SIZE = config + layer sizes). Every blob a manifest names must be at
  blobs/sha256-<hex> with the right size and digest; otherwise each problem goes to stderr and
  the exit code is 1 (the real `ollama list` does not check blobs: the double is stricter, so a
  test sees a bad placement).

Anything else exits 2 with a message saying this is a test double.
"""

from __future__ import annotations

import hashlib

from .images import DeterministicTar, gzip_bytes

#: Asset names of the real releases from v0.3.7 to v0.13.x (protocols.md 3.1).
ASSET_TEMPLATE = "ollama-linux-{arch}.tgz"
LIB_NAME = "libggml-test-double.so"

OLLAMA_SCRIPT = r'''#!/usr/bin/python3
# ======================================================================================
#  TEST DOUBLE of the Ollama binary, built by anklume's tests (tests/support/ollama_double.py).
#  This is NOT Ollama. It answers `ollama --version` and `ollama list` (read straight from
#  $OLLAMA_MODELS, no server), and checks that every blob a manifest names is in place.
# ======================================================================================
import hashlib
import json
import os
import sys
import time

VERSION = "@VERSION@"
DEFAULT_HOST = "registry.ollama.ai"
DEFAULT_NAMESPACE = "library"


def human_bytes(b):
    # format.HumanBytes (decimal units)
    for limit, unit in ((10**12, "TB"), (10**9, "GB"), (10**6, "MB"), (10**3, "KB")):
        if b >= limit:
            value = b / limit
            if value >= 10 or value == int(value):
                return "%d %s" % (int(value), unit)
            return "%.1f %s" % (value, unit)
    return "%d B" % b


def human_duration(seconds):
    # format.humanDuration
    s = int(seconds)
    if s < 1:
        return "Less than a second"
    if s == 1:
        return "1 second"
    if s < 60:
        return "%d seconds" % s
    minutes = s // 60
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return "%d minutes" % minutes
    hours = int(round(seconds / 3600))
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return "%d hours" % hours
    if hours < 24 * 7 * 2:
        return "%d days" % (hours // 24)
    if hours < 24 * 30 * 2:
        return "%d weeks" % (hours // 24 // 7)
    if hours < 24 * 365 * 2:
        return "%d months" % (hours // 24 // 30)
    return "%d years" % (int(seconds / 3600) // 24 // 365)


def human_time(mtime):
    delta = time.time() - mtime
    if delta < 0:
        return human_duration(-delta) + " from now"
    return human_duration(delta) + " ago"


def display_shortest(host, namespace, model, tag):
    # model.Name.DisplayShortest
    if host.lower() != DEFAULT_HOST:
        prefix = host + "/" + namespace + "/"
    elif namespace.lower() != DEFAULT_NAMESPACE:
        prefix = namespace + "/"
    else:
        prefix = ""
    return prefix + model + ":" + tag


def file_sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def manifests(root):
    """(host, namespace, model, tag, path) of every manifests/<host>/<ns>/<model>/<tag> file."""
    top = os.path.join(root, "manifests")
    found = []
    for dirpath, _dirs, files in os.walk(top):
        rel = os.path.relpath(dirpath, top)
        parts = rel.split(os.sep)
        if len(parts) != 3:
            continue
        for tag in files:
            found.append((*parts, tag, os.path.join(dirpath, tag)))
    return found


def check_blob(root, name, digest, size, problems):
    if not (digest.startswith("sha256:") and len(digest) == 71):
        problems.append("%s: bad digest %r in manifest" % (name, digest))
        return
    path = os.path.join(root, "blobs", "sha256-" + digest[7:])
    if not os.path.isfile(path):
        problems.append("%s: missing blob %s (%s)" % (name, digest, path))
    elif os.path.getsize(path) != size:
        problems.append("%s: blob %s has %d bytes, the manifest says %d"
                        % (name, digest, os.path.getsize(path), size))
    elif file_sha256(path) != digest[7:]:
        problems.append("%s: blob %s does not hash to its digest" % (name, digest))


def cmd_list(args):
    root = os.environ.get("OLLAMA_MODELS") or os.path.join(os.path.expanduser("~"), ".ollama", "models")
    rows, problems = [], []
    for host, namespace, model, tag, path in manifests(root):
        name = display_shortest(host, namespace, model, tag)
        with open(path, "rb") as f:
            raw = f.read()
        try:
            manifest = json.loads(raw)
            layers = [manifest["config"], *manifest["layers"]]
            size = sum(int(layer["size"]) for layer in layers)
        except (ValueError, KeyError, TypeError) as e:
            problems.append("%s: unreadable manifest %s: %s" % (name, path, e))
            continue
        for layer in layers:
            check_blob(root, name, layer.get("digest", ""), int(layer["size"]), problems)
        if args and not name.lower().startswith(args[0].lower()):
            continue
        rows.append((os.path.getmtime(path), name, hashlib.sha256(raw).hexdigest()[:12], size))
    rows.sort(key=lambda r: (-r[0], r[1]))  # newest first, as the server sorts
    table = [("NAME", "ID", "SIZE", "MODIFIED")]
    table += [(name, ident, human_bytes(size), human_time(mtime)) for mtime, name, ident, size in rows]
    widths = [max(len(row[i]) for row in table) for i in range(4)]
    for row in table:  # tablewriter: left-aligned, no border, 4-space padding after each cell
        sys.stdout.write("".join(cell.ljust(w) + "    " for cell, w in zip(row, widths)) + "\n")
    for problem in problems:
        sys.stderr.write("Error: %s\n" % problem)
    return 1 if problems else 0


def main(argv):
    if argv[:1] in (["--version"], ["-v"]):
        print("ollama version is %s (anklume test double)" % VERSION)
        return 0
    if argv[:1] in (["list"], ["ls"]):
        return cmd_list(argv[1:])
    sys.stderr.write("ollama (anklume test double %s): only --version and list are implemented, "
                     "not %r\n" % (VERSION, " ".join(argv)))
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
'''


def ollama_script(version: str) -> bytes:
    """The double's `bin/ollama` (a python3 script) for `version`."""
    return OLLAMA_SCRIPT.replace("@VERSION@", version).encode()


def fake_library(version: str, size: int = 4096) -> bytes:
    """A few KB of deterministic bytes standing in for a GPU library (an ELF header, no code)."""
    head = b"\x7fELF\x02\x01\x01" + b"\0" * 9 + b"anklume test double " + version.encode() + b"\0"
    return head + hashlib.shake_256(b"libggml " + version.encode()).digest(size - len(head))


def build_ollama_tarball(version: str, libraries: int = 0) -> bytes:
    """The release tarball: bin/ollama (0755) and lib/ollama/<lib>, gzip, byte-for-byte stable.

    ``libraries``: that many more libraries laid out like a real release's (in ``lib/ollama``,
    ``cuda_v12/`` and ``cuda_v13/`` in turn), each a versioned file and a symlink to it: a real
    v0.13 linux-amd64 release has about 30 entries."""
    t = DeterministicTar()
    t.file("bin/ollama", ollama_script(version), 0o755)
    t.file(f"lib/ollama/{LIB_NAME}", fake_library(version))
    for i in range(libraries):
        name = f"lib/ollama/{('', 'cuda_v12/', 'cuda_v13/')[i % 3]}libdouble-{i}.so"
        t.file(f"{name}.1.0", fake_library(f"{version} {i}"))
        t.symlink(name, f"libdouble-{i}.so.1.0")
    return gzip_bytes(t.tar_bytes())


def build_ollama_release(version: str, arch: str = "amd64", libraries: int = 0) -> tuple[bytes, bytes, str]:
    """(tarball bytes, sha256sum.txt bytes, asset name) of the double's release `version`.

    sha256sum.txt has the real releases' line format (`<64 hex>  ./<asset>`, v0.3.7 on)."""
    asset = ASSET_TEMPLATE.format(arch=arch)
    tarball = build_ollama_tarball(version, libraries)
    sums = f"{hashlib.sha256(tarball).hexdigest()}  ./{asset}\n".encode()
    return tarball, sums, asset

"""sha256 throughput of the artefact store's verification against ``openssl dgst -sha256``,
measured in the same run on the same file (1 GiB by default, in a temp dir, created once).

    .venv/bin/python bench/sha256_throughput.py [--size-mib 1024] [--runs 5] [--chunk-mib N]

Both read the same file (warm in the page cache after the first pass): the figure compares
the hashing loops, not the disk.  Target: the store at >= 90% of openssl.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from anklume import store as store_module  # noqa: E402
from anklume.store import ArtefactStore, hash_file  # noqa: E402


def make_file(path: Path, size: int) -> None:
    """``size`` bytes of incompressible data (a 64 MiB random block, repeated)."""
    block = os.urandom(min(size, 64 << 20))
    with open(path, "wb") as f:
        left = size
        while left:
            n = min(left, len(block))
            f.write(block[:n])
            left -= n


def timed(fn) -> float:  # noqa: ANN001
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--chunk-mib", type=float, default=None,
                        help=f"read size of the store's hashing (default {store_module.HASH_CHUNK >> 20} MiB)")
    args = parser.parse_args()
    openssl = shutil.which("openssl")
    if openssl is None:
        print("openssl not found", file=sys.stderr)
        return 1
    if args.chunk_mib:
        store_module.HASH_CHUNK = int(args.chunk_mib * (1 << 20))
    size = args.size_mib << 20
    with tempfile.TemporaryDirectory(prefix="anklume-sha256-bench-") as tmp:
        raw = Path(tmp) / "artefact"
        make_file(raw, size)
        digest = hash_file(raw)[0].hexdigest()  # also warms the page cache
        store = ArtefactStore(Path(tmp) / "store")
        stored = store.path(digest)
        stored.parent.mkdir(parents=True)
        raw.rename(stored)

        def ours() -> None:
            assert store.verify(digest) == digest

        def theirs() -> None:
            out = subprocess.run([openssl, "dgst", "-sha256", str(stored)], check=True,
                                 capture_output=True, text=True).stdout
            assert out.strip().endswith(digest), out

        store_times, openssl_times = [], []
        for _ in range(args.runs):  # interleaved, so drift hits both alike
            store_times.append(timed(ours))
            openssl_times.append(timed(theirs))
    mb = size / 1e6
    store_rate = mb / statistics.median(store_times)
    openssl_rate = mb / statistics.median(openssl_times)
    ratio = store_rate / openssl_rate
    print(f"file: {args.size_mib} MiB, {args.runs} runs, median; store read size "
          f"{store_module.HASH_CHUNK / (1 << 20):g} MiB; {sys.version.split()[0]}")
    print(f"ArtefactStore.verify : {store_rate:8.1f} MB/s")
    print(f"openssl dgst -sha256 : {openssl_rate:8.1f} MB/s")
    print(f"ratio                : {ratio:8.1%} (target >= 90%)")
    return 0 if ratio >= 0.9 else 2


if __name__ == "__main__":
    sys.exit(main())

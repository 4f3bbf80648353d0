"""File transfer benchmark: ``InstanceIO.push`` (the Incus REST API, streamed through pylxd's
session) against ``incus file push`` of the same file into the same running container, median of
several runs each, on a private incusd of its own; then the chunk sizes of ``InstanceIO.push``.

    .venv/bin/python bench/transfer.py [--size-mib 1024] [--runs 5] [--chunks 64K,256K,1M,4M,16M]

Needs root (a private incusd in a network namespace, as the integration tests).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from anklume.backends.incus.reader import IncusReader
from anklume.backends.incus.files import CHUNK, InstanceIO
from tests.support.incusd import PrivateIncus
from tests.support.procs import find_binary

INSTANCE = "xfer"
TARGET = "/root/blob"


def make_file(path: Path, size: int) -> str:
    """Random bytes (incompressible), written once; returns their sha256."""
    digest = hashlib.sha256()
    block = 4 * 1024 * 1024
    with open(path, "wb") as f:
        left = size
        while left:
            data = os.urandom(min(block, left))
            digest.update(data)
            f.write(data)
            left -= len(data)
    return digest.hexdigest()


def parse_size(text: str) -> int:
    units = {"K": 1024, "M": 1024 ** 2, "G": 1024 ** 3}
    text = text.strip().upper()
    return int(text[:-1]) * units[text[-1]] if text[-1] in units else int(text)


def timed(fn, runs: int, reset) -> list[float]:
    times = []
    for _ in range(runs):
        reset()
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def mbs(size: int, seconds: float) -> float:
    return size / seconds / 1e6


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--chunks", default="64K,256K,1M,4M,16M")
    args = ap.parse_args()
    size = args.size_mib * 1024 * 1024
    incus_cli = find_binary("incus")
    with tempfile.TemporaryDirectory(prefix="anklume-xfer-") as tmp, PrivateIncus() as incus:
        src = Path(tmp) / "blob"
        want = make_file(src, size)
        incus.ensure_busybox_image()
        incus.incus("launch", "busybox", INSTANCE)
        io_ = InstanceIO(IncusReader(incus.socket), "default", INSTANCE)

        def reset() -> None:  # every run writes a new file, as a first push does
            io_.exec(["rm", "-f", TARGET])

        def api_push(chunk: int = CHUNK) -> None:
            io_.chunk = chunk
            sent = io_.push(TARGET, src)
            assert sent == size, sent

        def cli_push() -> None:
            subprocess.run([incus_cli, "file", "push", str(src), f"{INSTANCE}{TARGET}"], env=incus.env,
                           check=True, capture_output=True)

        api_push()  # warm the page cache and check the bytes once, each way
        assert io_.sha256([TARGET])[TARGET] == want, "InstanceIO.push: wrong bytes"
        reset()
        cli_push()
        assert io_.sha256([TARGET])[TARGET] == want, "incus file push: wrong bytes"

        print(f"{args.size_mib} MiB of random bytes into a running busybox container, private incusd "
              f"(dir pool), {args.runs} runs each, interleaved")
        api_times: list[float] = []
        cli_times: list[float] = []
        for _ in range(args.runs):  # interleaved, so both see the same machine load
            api_times += timed(api_push, 1, reset)
            cli_times += timed(cli_push, 1, reset)
        api, cli = statistics.median(api_times), statistics.median(cli_times)
        print(f"InstanceIO.push (chunk {CHUNK // 1024} KiB): median {api:.2f} s = {mbs(size, api):.0f} MB/s "
              f"(min {min(api_times):.2f}, max {max(api_times):.2f})")
        print(f"incus file push:              median {cli:.2f} s = {mbs(size, cli):.0f} MB/s "
              f"(min {min(cli_times):.2f}, max {max(cli_times):.2f})")
        print(f"ratio InstanceIO / incus CLI throughput: {cli / api:.2f}")

        print("chunk size of InstanceIO.push:")
        for text in args.chunks.split(","):
            chunk = parse_size(text)
            times = timed(lambda c=chunk: api_push(c), args.runs, reset)
            med = statistics.median(times)
            print(f"  {text:>5}: median {med:.2f} s = {mbs(size, med):.0f} MB/s")


if __name__ == "__main__":
    main()

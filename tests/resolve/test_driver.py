"""The NVIDIA driver's user space: which mode a container gets and which host files it mounts,
against the recorded nvidia-smi output of the H200 host and a synthesised `ldconfig -p` of its
driver (tests/fixtures/gpu/synthesised/PROVENANCE.txt says how it was written)."""

from __future__ import annotations

import json
import os
import stat

import pytest
from click.testing import CliRunner

from anklume.cli import main
from anklume.resolve.driver import (DriverFile, choose_mode, device_name, driver_files, driver_name_of, library_of,
                                    missing_required, parse_ldconfig, parse_smi_versions)
from anklume.resolve.gpus import parse_resources
from anklume.resolve.inventory import fetch_inventory, hash_files
from tests.support.recorded import H200_RESOURCES, H200_SMI_CSV, H200_SMI_XML, LDCONFIG_LINKS, LDCONFIG_P

VERSION = "580.159.04"
LIB = "/usr/lib/x86_64-linux-gnu"
SMI = {"nvidia-smi": "/usr/bin/nvidia-smi"}


def entries():
    return parse_ldconfig(LDCONFIG_P.read_text())


def links() -> dict[str, str]:
    return json.loads(LDCONFIG_LINKS.read_text())


def test_ldconfig_lines_are_parsed_with_their_tags():
    parsed = entries()
    assert len(parsed) == 30  # every line but the header
    assert parsed[0] == ("libz.so.1", ("libc6", "x86-64"), "/lib/x86_64-linux-gnu/libz.so.1")
    libc = [e for e in parsed if e.name == "libc.so.6"]
    assert [e.tags for e in libc] == [("libc6", "x86-64", "OS ABI: Linux 3.2.0"), ("libc6", "OS ABI: Linux 3.2.0")]
    assert parse_ldconfig("garbage\n\tno arrow here\n") == []


def test_the_compute_and_utility_libraries_of_the_driver_and_nvidia_smi():
    """As nvidia-container-cli: the 64-bit entries of its compute and utility sets whose file ends in
    .so.<driver version>, under every name the cache lists; graphics, video, i386, another
    architecture, other libraries and an older driver's leftover are not taken."""
    files = driver_files(entries(), links(), version=VERSION, arch="x86_64", binaries=SMI)
    real = {f.target.rsplit("/", 1)[1]: f.source.rsplit("/", 1)[1] for f in files}
    assert real == {
        "libcuda.so": f"libcuda.so.{VERSION}",
        "libcuda.so.1": f"libcuda.so.{VERSION}",
        "libcudadebugger.so.1": f"libcudadebugger.so.{VERSION}",
        "libnvidia-allocator.so.1": f"libnvidia-allocator.so.{VERSION}",
        "libnvidia-cfg.so.1": f"libnvidia-cfg.so.{VERSION}",
        f"libnvidia-gpucomp.so.{VERSION}": f"libnvidia-gpucomp.so.{VERSION}",
        "libnvidia-ml.so": f"libnvidia-ml.so.{VERSION}",
        "libnvidia-ml.so.1": f"libnvidia-ml.so.{VERSION}",
        "libnvidia-nvvm.so.4": f"libnvidia-nvvm.so.{VERSION}",
        "libnvidia-opencl.so.1": f"libnvidia-opencl.so.{VERSION}",
        f"libnvidia-pkcs11-openssl3.so.{VERSION}": f"libnvidia-pkcs11-openssl3.so.{VERSION}",
        f"libnvidia-pkcs11.so.{VERSION}": f"libnvidia-pkcs11.so.{VERSION}",
        "libnvidia-ptxjitcompiler.so.1": f"libnvidia-ptxjitcompiler.so.{VERSION}",
        "nvidia-smi": "nvidia-smi",
    }
    # where a Debian or Ubuntu container looks: its multiarch directory, and /usr/bin
    assert {f.target.rsplit("/", 1)[0] for f in files} == {LIB, "/usr/bin"}
    assert {f.source.rsplit("/", 1)[0] for f in files} == {LIB, "/usr/bin"}
    assert files == sorted(files) and missing_required(files) == []
    assert choose_mode(container_cli=False, files=files) == "files"


def test_another_driver_version_takes_no_library():
    """The files of the running driver only: after an upgrade whose libraries are not installed yet
    (or the other way round), nothing is mounted and the container gets the card only."""
    files = driver_files(entries(), links(), version="590.44.01", arch="x86_64", binaries=SMI)
    assert files == [DriverFile("/usr/bin/nvidia-smi", "/usr/bin/nvidia-smi")]
    assert missing_required(files) == ["libcuda.so", "libnvidia-ml.so"]
    assert choose_mode(container_cli=False, files=files) is None


def test_aarch64_containers_get_the_aarch64_libraries_at_their_own_path():
    resolved = links() | {"/lib/aarch64-linux-gnu/libnvidia-cfg.so.1": f"/usr/lib/aarch64-linux-gnu/libnvidia-cfg.so.{VERSION}"}
    files = driver_files(entries(), resolved, version=VERSION, arch="aarch64", binaries={})
    assert files == [DriverFile("/usr/lib/aarch64-linux-gnu/libnvidia-cfg.so.1",
                                f"/usr/lib/aarch64-linux-gnu/libnvidia-cfg.so.{VERSION}")]


def test_an_entry_whose_path_is_gone_is_skipped():
    resolved = {k: v for k, v in links().items() if "libcuda.so" not in k}
    files = driver_files(entries(), resolved, version=VERSION, arch="x86_64", binaries=SMI)
    assert not any("libcuda.so" in f.target for f in files) and missing_required(files) == ["libcuda.so"]


def test_a_link_to_another_library_of_the_right_version_is_not_taken():
    """libcuda.so.1 must be a version of libcuda.so, not a link to any file with the version's suffix."""
    resolved = links() | {"/lib/x86_64-linux-gnu/libcuda.so.1": f"{LIB}/libnvidia-ml.so.{VERSION}"}
    files = driver_files(entries(), resolved, version=VERSION, arch="x86_64", binaries=SMI)
    assert f"{LIB}/libcuda.so.1" not in {f.target for f in files}


@pytest.mark.parametrize(("cli", "files", "mode"), [
    (True, [], "runtime"),  # nvidia-container-cli wins: Incus's own mechanism
    (False, [DriverFile(f"{LIB}/libcuda.so.1", "x"), DriverFile(f"{LIB}/libnvidia-ml.so.1", "y"),
             DriverFile("/usr/bin/nvidia-smi", "z")], "files"),
    (False, [DriverFile(f"{LIB}/libcuda.so.1", "x"), DriverFile("/usr/bin/nvidia-smi", "z")], None),
    (False, [], None),
])
def test_mode_choice(cli, files, mode):
    assert choose_mode(container_cli=cli, files=files) == mode


def test_driver_and_cuda_versions_from_the_recorded_nvidia_smi_xml():
    assert parse_smi_versions(H200_SMI_XML.read_text()) == (VERSION, "13.0")
    assert parse_smi_versions("<x/>") == (None, None)
    assert parse_smi_versions("<driver_version>$(reboot)</driver_version><cuda_version>N/A</cuda_version>") == (None, None)


@pytest.mark.parametrize(("name", "lib"), [
    ("libcuda.so", "libcuda.so"), ("libcuda.so.1", "libcuda.so"), (f"libcuda.so.{VERSION}", "libcuda.so"),
    ("libnvidia-pkcs11-openssl3.so.1", "libnvidia-pkcs11-openssl3.so"), ("libcuda.so.1.bak", None),
    ("libcudart.so.12", None), ("libcuda.so.¹", None), ("libnvidia-glcore.so.1", None),
])
def test_library_names(name, lib):
    assert library_of(name) == lib


def test_driver_names_and_device_names():
    assert driver_name_of(f"{LIB}/libnvidia-nvvm.so.4") == "libnvidia-nvvm.so"
    assert driver_name_of("/usr/bin/nvidia-smi") == "nvidia-smi"
    assert driver_name_of("/etc/shadow") is None
    assert device_name(f"{LIB}/libcuda.so.1") == "nvidia-libcuda-so-1"


# -- from the host, with test doubles --------------------------------------------------------------


@pytest.fixture
def driver_host(tmp_path, monkeypatch):
    """Test doubles on PATH for an H200 host without nvidia-container-cli: nvidia-smi printing the
    recorded CSV and XML, and an ldconfig printing the synthesised cache with its paths moved into
    tmp_path, where small stand-in files (named as the driver's, with the same links) live."""
    root = tmp_path / "host"
    for path, real in links().items():
        src, dst = root / path.lstrip("/"), root / real.lstrip("/")
        dst.parent.mkdir(parents=True, exist_ok=True)
        if not dst.exists():
            dst.write_bytes(f"stand-in for {real}\n".encode())
        src.parent.mkdir(parents=True, exist_ok=True)
        if src != dst:
            src.symlink_to(dst)
    bindir = tmp_path / "bin"
    bindir.mkdir()
    smi = bindir / "nvidia-smi"
    smi.write_text(f'#!/bin/sh\nif [ "$1" = -q ]; then cat "{H200_SMI_XML}"; else cat "{H200_SMI_CSV}"; fi\n')
    smi.chmod(0o755)
    cache = tmp_path / "ldconfig-p.txt"
    cache.write_text(LDCONFIG_P.read_text().replace(" => /lib/", f" => {root}/lib/"))
    ldconfig = bindir / "ldconfig"
    ldconfig.write_text(f'#!/bin/sh\n[ "$1" = -p ] && cat "{cache}"\n')
    ldconfig.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}")
    return root


def test_fetch_inventory_pins_the_driver_files_with_their_hashes(fake_incus, driver_host, tmp_path):
    incus = fake_incus({"/1.0/resources": json.loads(H200_RESOURCES.read_bytes())})
    [card] = fetch_inventory(incus.socket, architecture="x86_64")
    assert (card.driver_version, card.cuda_version, card.driver_mode) == (VERSION, "13.0", "files")
    by_target = {f.target: f for f in card.driver_files}
    assert len(by_target) == 14
    cuda = by_target[f"{LIB}/libcuda.so.1"]
    assert cuda.source == f"{driver_host}/usr/lib/x86_64-linux-gnu/libcuda.so.{VERSION}"
    assert (cuda.size, cuda.sha256) == hash_files([cuda.source])[cuda.source]
    assert by_target["/usr/bin/nvidia-smi"].source == str(tmp_path / "bin" / "nvidia-smi")


def test_with_nvidia_container_cli_the_container_gets_the_runtime(fake_incus, driver_host, tmp_path):
    cli = tmp_path / "bin" / "nvidia-container-cli"
    cli.write_text("#!/bin/sh\nexit 0\n")
    cli.chmod(0o755)
    incus = fake_incus({"/1.0/resources": json.loads(H200_RESOURCES.read_bytes())})
    [card] = fetch_inventory(incus.socket, architecture="x86_64")
    assert (card.driver_mode, card.driver_files) == ("runtime", [])


def test_resources_alone_give_the_driver_version_but_no_mode():
    [card] = parse_resources(json.loads(H200_RESOURCES.read_bytes()))
    assert (card.driver_version, card.driver_mode) == (VERSION, None)


def test_hash_files_takes_regular_files_only(tmp_path):
    regular = tmp_path / "libcuda.so.1"
    regular.write_bytes(b"x")
    fifo = tmp_path / "libnvidia-ml.so.1"
    os.mkfifo(fifo)
    assert stat.S_ISFIFO(fifo.stat().st_mode)
    got = hash_files([str(regular), str(fifo), str(tmp_path / "missing"), str(tmp_path)])
    assert got == {str(regular): (1, "2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881"),
                   str(fifo): None, str(tmp_path / "missing"): None, str(tmp_path): None}


def test_gpus_shows_the_driver_and_what_a_container_gets(fake_incus, driver_host, monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")
    incus = fake_incus({"/1.0/resources": json.loads(H200_RESOURCES.read_bytes())})
    result = CliRunner().invoke(main, ["gpus", "--incus", incus.socket])
    assert result.exit_code == 0, result.output
    assert f"{VERSION} (CUDA 13.0)" in result.output
    assert "card + 14 driver files (read-only)" in result.output
    assert "a VM gets the card only" in result.output
    data = CliRunner().invoke(main, ["gpus", "--json", "--incus", incus.socket]).output
    [card] = json.loads(data)
    assert card["driver_mode"] == "files" and len(card["driver_files"]) == 14

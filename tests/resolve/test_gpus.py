"""GPU inventory: recorded Incus resources and nvidia-smi output from a real H200 host."""

from __future__ import annotations

import json
import os
import stat

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.support.hyp import examples

from anklume.errors import SourceError
from anklume.resolve.gpus import (
    GpuCard,
    SmiGpu,
    encode_inventory,
    join_inventory,
    normalize_pci,
    parse_inventory_file,
    parse_nvidia_smi_csv,
    parse_resources,
)
from anklume.resolve.inventory import fetch_inventory

from tests.support.recorded import H200_RESOURCES, H200_SMI_CSV, H200_SMI_XML, LXD_9201

H200_UUID = "GPU-9e1c631b-fafe-f96d-935d-1ff4b8a5bf54"
H200 = GpuCard(pci="0000:00:06.0", vendor_id="10de", product_id="2335", driver="nvidia", model="NVIDIA H200",
               uuid=H200_UUID, vram_mib=143771, driver_version="580.159.04")


def h200_resources() -> dict:
    return json.loads(H200_RESOURCES.read_bytes())


def test_h200_resources_joined_with_nvidia_smi():
    cards = join_inventory(parse_resources(h200_resources()), parse_nvidia_smi_csv(H200_SMI_CSV.read_text()))
    assert cards == [H200]


def test_resources_alone_have_no_uuid_or_vram_but_the_driver_version():
    assert parse_resources(h200_resources()) == [
        GpuCard(pci="0000:00:06.0", vendor_id="10de", product_id="2335", driver="nvidia", model="NVIDIA H200",
                driver_version="580.159.04")
    ]


@pytest.mark.parametrize("shape", ["api response", "metadata", "gpu only"])
def test_resources_accepts_the_three_document_shapes(shape):
    metadata = h200_resources()
    doc = {"api response": {"type": "sync", "status_code": 200, "metadata": metadata},
           "metadata": metadata, "gpu only": {"gpu": metadata["gpu"]}}[shape]
    assert [card.pci for card in parse_resources(doc)] == ["0000:00:06.0"]


def test_lxd_9201_drops_the_virtio_gpu_and_keeps_the_gt730():
    cards = parse_resources(json.loads(LXD_9201.read_bytes()))
    assert cards == [GpuCard(pci="0000:07:00.0", vendor_id="10de", product_id="1287", vendor="NVIDIA Corporation",
                             product="GK208B [GeForce GT 730]", driver="nvidia", model="GeForce GT 730",
                             uuid="GPU-6ddadebd-dafe-2db9-f10f-125719770fd3", driver_version="460.91.03")]


@pytest.mark.parametrize(
    ("driver", "vendor_id"),
    [("qxl", "1b36"), ("bochs-drm", "1234"), ("vmwgfx", "15ad"), ("cirrus", "1013"), ("simpledrm", "abcd"),
     ("i915-but-virtio-vendor", "1af4")],
)
def test_emulated_adapters_are_not_gpus(driver, vendor_id):
    doc = {"gpu": {"cards": [{"driver": driver, "pci_address": "0000:00:02.0", "vendor_id": vendor_id,
                              "product_id": "0100"}]}}
    assert parse_resources(doc) == []


def test_no_cards_and_malformed_resources():
    assert parse_resources({"gpu": {"cards": None, "total": 0}}) == []
    with pytest.raises(SourceError, match="no `gpu` section"):
        parse_resources({"cpu": {}})
    with pytest.raises(SourceError, match="malformed gpu.cards"):
        parse_resources({"gpu": {"cards": [{"pci_address": 7}]}})
    with pytest.raises(SourceError, match="0000:zz"):
        parse_resources({"gpu": {"cards": [{"pci_address": "0000:zz", "vendor_id": "10de", "product_id": "1"}]}})


# -- nvidia-smi ------------------------------------------------------------------------------------


def test_nvidia_smi_csv_with_header_units_and_extra_columns():
    assert parse_nvidia_smi_csv(H200_SMI_CSV.read_text()) == [
        SmiGpu(pci="0000:00:06.0", uuid=H200_UUID, name="NVIDIA H200", vram_mib=143771, driver_version="580.159.04")
    ]


def test_nvidia_smi_csv_without_header_and_units():
    text = "0, GPU-7439f9f0-ee9f-5ce6-deeb-28da35ecad39, NVIDIA H200, 00000000:00:06.0, 143771, 580.159.04, 9.0\n"
    assert parse_nvidia_smi_csv(text) == [
        SmiGpu(pci="0000:00:06.0", uuid="GPU-7439f9f0-ee9f-5ce6-deeb-28da35ecad39", name="NVIDIA H200",
               vram_mib=143771, driver_version="580.159.04")
    ]
    # recorded before driver_version was asked: five columns
    assert parse_nvidia_smi_csv("0, GPU-1, T4, 00000000:00:06.0, 15360\n")[0].driver_version is None


def test_nvidia_smi_csv_columns_by_name_and_not_available_values():
    text = "pci.bus_id, memory.total [MiB], name, uuid\n00000000:0A:00.0, [N/A], Tesla T4, [N/A]\n"
    assert parse_nvidia_smi_csv(text) == [SmiGpu(pci="0000:0a:00.0", name="Tesla T4")]
    assert parse_nvidia_smi_csv("") == []


@pytest.mark.parametrize(
    ("text", "wanted"),
    [
        ("name, uuid\nx, y\n", "no pci.bus_id column"),
        ("0, GPU-1, T4\n", "expected 5"),
        ("0, GPU-1, T4, 00000000:00:06.0, lots MiB\n", "not a number of MiB"),
        ("0, GPU-1, T4, 6.0, 1 MiB\n", "not a PCI address"),
    ],
)
def test_nvidia_smi_csv_errors(text, wanted):
    with pytest.raises(SourceError, match=wanted):
        parse_nvidia_smi_csv(text)


@pytest.mark.parametrize(
    ("address", "normal"),
    [("00000000:00:06.0", "0000:00:06.0"), ("00:06.0", "0000:00:06.0"), ("0000:0A:1F.7", "0000:0a:1f.7"),
     ("00010000:3b:00.0", "10000:3b:00.0")],
)
def test_normalize_pci(address, normal):
    assert normalize_pci(address) == normal


@given(st.integers(0, 0xFFFF), st.integers(0, 0xFF), st.integers(0, 0x1F), st.integers(0, 7))
@settings(max_examples=examples(50))
def test_normalize_pci_agrees_between_nvidia_smi_and_incus_forms(domain, bus, device, function):
    smi = f"{domain:08X}:{bus:02X}:{device:02X}.{function}"
    incus = f"{domain:04x}:{bus:02x}:{device:02x}.{function}"
    assert normalize_pci(smi) == normalize_pci(incus) == incus


def test_smi_rows_join_only_by_pci_address():
    card = GpuCard(pci="0000:00:06.0", vendor_id="10de", product_id="2335", model="Incus name")
    other = SmiGpu(pci="0000:00:07.0", uuid="GPU-x", name="elsewhere", vram_mib=1)
    assert join_inventory([card], [other]) == [card]


# -- inventory files ------------------------------------------------------------------------------


def two_cards() -> list[GpuCard]:
    return [H200, GpuCard(pci="0000:00:05.0", vendor_id="10de", product_id="1287")]


def test_encode_inventory_is_sorted_and_deterministic():
    data = encode_inventory(two_cards())
    assert data == encode_inventory(reversed(two_cards()))
    assert data.endswith(b"}\n]\n") and b'\n  {\n    "cuda_version": null,\n    "driver": null,' in data
    assert [card["pci"] for card in json.loads(data)] == ["0000:00:05.0", "0000:00:06.0"]


def test_inventory_file_round_trips_and_detects_incus_resources():
    assert parse_inventory_file(encode_inventory(two_cards())) == sorted(two_cards(), key=lambda c: c.pci)
    assert parse_inventory_file(H200_RESOURCES.read_bytes())[0].pci == "0000:00:06.0"
    assert parse_inventory_file(LXD_9201.read_bytes())[0].model == "GeForce GT 730"


@pytest.mark.parametrize(
    ("data", "wanted"),
    [(b"not json", "not JSON"), (b'[{"pci": "6.0", "vendor_id": "10de", "product_id": "2335"}]', "neither"),
     (b'[{"pci": "0000:00:06.0", "vendor_id": "10de"}]', "missing required field `product_id`"), (b'"x"', "neither")],
)
def test_inventory_file_errors(data, wanted):
    with pytest.raises(SourceError, match=wanted):
        parse_inventory_file(data, source="gpus.json")


# -- from the host: Incus over its unix socket + nvidia-smi ---------------------------------------


@pytest.fixture
def fake_nvidia_smi(tmp_path, monkeypatch):
    """Test doubles on PATH: nvidia-smi printing the recorded CSV (or, for `-q -x`, the recorded
    XML) and each argv to a file; an ldconfig whose cache lists no library (this host's own
    libraries stay out of the test: the driver's files are tests/resolve/test_driver.py's)."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    script = bindir / "nvidia-smi"
    script.write_text(f'#!/bin/sh\necho "$@" >> "{tmp_path}/argv"\n'
                      f'if [ "$1" = -q ]; then cat "{H200_SMI_XML}"; else cat "{H200_SMI_CSV}"; fi\n')
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    ldconfig = bindir / "ldconfig"
    ldconfig.write_text("#!/bin/sh\necho \"0 libs found in cache \\`/etc/ld.so.cache'\"\n")
    ldconfig.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}")
    return tmp_path / "argv"


def test_fetch_inventory_joins_incus_and_nvidia_smi(fake_incus, fake_nvidia_smi):
    incus = fake_incus({"/1.0/resources": h200_resources()})
    # no nvidia-container-cli, no driver library in the linker cache: the container gets the card only
    assert fetch_inventory(incus.socket) == [msgspec.structs.replace(H200, cuda_version="13.0")]
    calls = fake_nvidia_smi.read_text().splitlines()
    assert calls == ["--query-gpu=index,uuid,name,pci.bus_id,memory.total,driver_version --format=csv", "-q -x"]


def test_fetch_inventory_without_nvidia_smi(fake_incus, fake_nvidia_smi):
    incus = fake_incus({"/1.0/resources": h200_resources()})
    assert fetch_inventory(incus.socket, run_nvidia_smi=False)[0].vram_mib is None
    assert not fake_nvidia_smi.exists()


def test_failing_nvidia_smi_is_a_source_error(fake_incus, fake_nvidia_smi):
    script = fake_nvidia_smi.parent / "bin" / "nvidia-smi"
    script.write_text("#!/bin/sh\necho 'NVIDIA-SMI has failed because it could not communicate' >&2\nexit 9\n")
    with pytest.raises(SourceError) as err:
        fetch_inventory(fake_incus({"/1.0/resources": h200_resources()}).socket)
    assert "failed (exit 9): NVIDIA-SMI has failed" in err.value.message



def test_in_a_cluster_nvidia_smi_runs_only_for_the_member_that_answers(fake_incus, fake_nvidia_smi, tmp_path):
    """The recorded H200 host's resources served in place of m1's and m2's /1.0/resources?target=:
    m1 answers on this unix socket (it is this machine), m2 is another host."""
    from anklume.model.load import load_infra
    from anklume.resolve.resolver import LiveResolver
    from tests.support.cluster_recorded import cluster_routes

    infra = load_infra(b"project_name: p\nglobal: {}\ndomains: {}\n")
    incus = fake_incus(cluster_routes(gpu_members=["m1", "m2"]))
    resolver = LiveResolver(infra, {}, incus=incus.socket, cache_dir=tmp_path / "cache")
    assert resolver.cluster().server_name == "m1"
    assert resolver.gpu_inventory("m2")[0].vram_mib is None and not fake_nvidia_smi.exists()
    assert resolver.gpu_inventory("m1") == [msgspec.structs.replace(H200, cuda_version="13.0")]
    assert len(fake_nvidia_smi.read_text().splitlines()) == 2

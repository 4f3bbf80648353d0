"""``verify --live`` asks nvidia-smi inside each GPU container and re-hashes the driver's files
there (anklume.provision.gpucheck), here against a test double of the instance."""

from __future__ import annotations

import msgspec
import pytest

from anklume.backends.incus.files import ExecResult, InstanceIOError
from anklume.provision.gpucheck import gpu_container_findings, parse_smi_rows
from anklume.units.unit import LiveObject
from tests.units.test_gpu import FILES, FILES_DRIVER, RUNTIME_DRIVER, UUID, VERSION, graph


class FakeInstance:
    """A test double of an instance's exec and hashing (InstanceFiles)."""

    def __init__(self, smi: ExecResult | Exception, hashes: dict[str, str | None] | None = None):
        self.smi = smi
        self.hashes = {f.target: f.sha256 for f in FILES} if hashes is None else hashes
        self.calls: list[object] = []

    def exec(self, argv, *, check=True, timeout=600, **_kw):
        self.calls.append(list(argv))
        if isinstance(self.smi, Exception):
            raise self.smi
        return self.smi

    def sha256(self, paths):
        self.calls.append(("sha256", list(paths)))
        return {p: self.hashes.get(p) for p in paths}


class FakeBackend:
    def __init__(self, instance: FakeInstance):
        self.instance = instance

    def instance_io(self, project, instance):
        assert (project, instance) == ("ai", "llm")
        return self.instance


def ok(uuid: str = UUID, version: str = VERSION) -> ExecResult:
    return ExecResult(0, f"{uuid}, {version}\n".encode(), b"")


def findings(driver, instance: FakeInstance, *, status="Running", vm=False):
    g, lock = graph(driver, vm=vm)
    live = {"instance:llm": LiveObject(kind="instance", name="llm", project="ai", object="llm", status=status)}
    return {(f.field, str(f.expected), str(f.actual)) for f in
            gpu_container_findings(FakeBackend(instance), g, live, lock)}


def test_the_pinned_card_and_driver_answer():
    inst = FakeInstance(ok())
    assert findings(FILES_DRIVER, inst) == set()
    assert inst.calls == [["nvidia-smi", "--query-gpu=uuid,driver_version", "--format=csv,noheader"],
                          ("sha256", [f.target for f in FILES])]
    runtime = FakeInstance(ok())
    assert findings(RUNTIME_DRIVER, runtime) == set() and len(runtime.calls) == 1  # no files of its own


def test_another_card_and_another_driver():
    got = findings(FILES_DRIVER, FakeInstance(ok("GPU-7439f9f0-ee9f-5ce6-deeb-28da35ecad39", "590.44.01")))
    assert got == {("uuid (nvidia-smi in the container)", UUID, "GPU-7439f9f0-ee9f-5ce6-deeb-28da35ecad39"),
                   ("driver_version (nvidia-smi in the container)", VERSION, "590.44.01")}


def test_no_gpu_listed():
    assert findings(RUNTIME_DRIVER, FakeInstance(ExecResult(0, b"", b""))) == {
        ("uuid (nvidia-smi in the container)", UUID, "None")}


@pytest.mark.parametrize(("smi", "actual"), [
    (ExecResult(127, b"", b"exec: nvidia-smi: not found"), "nvidia-smi not found"),
    (ExecResult(9, b"Failed to initialize NVML: Driver/library version mismatch\n", b""),
     "exit 9: Failed to initialize NVML: Driver/library version mismatch"),
    (InstanceIOError("instance 'llm' (project 'ai'): exec nvidia-smi: still running after 60 s"),
     "instance 'llm' (project 'ai'): exec nvidia-smi: still running after 60 s"),
])
def test_a_driver_that_is_not_usable(smi, actual):
    expected = f"the driver usable: card {UUID}, driver {VERSION}"
    assert findings(RUNTIME_DRIVER, FakeInstance(smi)) == {("nvidia-smi in the container", expected, actual)}


def test_a_changed_or_missing_file_in_the_container():
    hashes = {FILES[0].target: "f" * 64, FILES[1].target: None, FILES[2].target: FILES[2].sha256}
    assert findings(FILES_DRIVER, FakeInstance(ok(), hashes)) == {
        (FILES[0].target, f"sha256 {FILES[0].sha256}", f"sha256 {'f' * 64}"),
        (FILES[1].target, f"sha256 {FILES[1].sha256}", "missing")}


@pytest.mark.parametrize("case", ["stopped", "vm", "no driver"])
def test_nothing_asked_of_a_stopped_container_a_vm_or_a_pin_without_driver(case):
    inst = FakeInstance(ExecResult(127, b"", b""))
    driver = None if case == "no driver" else FILES_DRIVER
    if case == "vm":
        g, lock = graph(None, vm=True)
        lock = msgspec.structs.replace(lock, gpus={"llm": msgspec.structs.replace(lock.gpus["llm"], driver=driver)})
        live = {"instance:llm": LiveObject(kind="instance", name="llm", project="ai", object="llm", status="Running")}
        assert gpu_container_findings(FakeBackend(inst), g, live, lock) == []
    else:
        assert findings(driver, inst, status="Stopped" if case == "stopped" else "Running") == set()
    assert inst.calls == []


def test_smi_rows():
    assert parse_smi_rows(f"{UUID}, {VERSION}\nGPU-2, 1.0\n\n") == [(UUID, VERSION), ("GPU-2", "1.0")]

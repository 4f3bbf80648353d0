"""A tiny CUDA program in plain python3 (ctypes on the driver's libcuda.so.1, nothing to install):
cuInit, the first device's name and UUID, a cuMemAlloc of a few MB and a copy there and back, the
bytes compared.  Prints one JSON line ({"ok": true, ...} or {"ok": false, "error": ...}) and exits
0 or 1.  scripts/gpu-check.sh runs it inside the GPU container (and on the host first).

    python3 gpu_check_cuda.py [MIB]
"""

from __future__ import annotations

import ctypes
import json
import os
import sys

CUDA_SUCCESS = 0


class CudaError(Exception):
    pass


def load() -> ctypes.CDLL:
    try:
        return ctypes.CDLL("libcuda.so.1")
    except OSError as err:
        raise CudaError(f"cannot load libcuda.so.1: {err}") from None


def check(cuda: ctypes.CDLL, result: int, what: str) -> None:
    if result == CUDA_SUCCESS:
        return
    name = ctypes.c_char_p()
    cuda.cuGetErrorName(result, ctypes.byref(name))
    raise CudaError(f"{what} failed: {result} ({(name.value or b'?').decode()})")


def uuid_of(raw: bytes) -> str:
    """nvidia-smi's form: GPU-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx."""
    h = raw.hex()
    return f"GPU-{h[0:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"


def run(mib: int) -> dict:
    cuda = load()
    u64, size_t, c_int = ctypes.c_uint64, ctypes.c_size_t, ctypes.c_int
    cuda.cuInit.argtypes = [ctypes.c_uint]
    cuda.cuGetErrorName.argtypes = [c_int, ctypes.POINTER(ctypes.c_char_p)]
    cuda.cuDriverGetVersion.argtypes = [ctypes.POINTER(c_int)]
    cuda.cuDeviceGetCount.argtypes = [ctypes.POINTER(c_int)]
    cuda.cuDeviceGet.argtypes = [ctypes.POINTER(c_int), c_int]
    cuda.cuDeviceGetName.argtypes = [ctypes.c_char_p, c_int, c_int]
    cuda.cuDevicePrimaryCtxRetain.argtypes = [ctypes.POINTER(ctypes.c_void_p), c_int]
    cuda.cuDevicePrimaryCtxRelease_v2.argtypes = [c_int]
    cuda.cuCtxSetCurrent.argtypes = [ctypes.c_void_p]
    cuda.cuMemAlloc_v2.argtypes = [ctypes.POINTER(u64), size_t]
    cuda.cuMemFree_v2.argtypes = [u64]
    cuda.cuMemcpyHtoD_v2.argtypes = [u64, ctypes.c_void_p, size_t]
    cuda.cuMemcpyDtoH_v2.argtypes = [ctypes.c_void_p, u64, size_t]

    check(cuda, cuda.cuInit(0), "cuInit")
    version, count, dev = c_int(), c_int(), c_int()
    check(cuda, cuda.cuDriverGetVersion(ctypes.byref(version)), "cuDriverGetVersion")
    check(cuda, cuda.cuDeviceGetCount(ctypes.byref(count)), "cuDeviceGetCount")
    if count.value < 1:
        raise CudaError("cuDeviceGetCount: no CUDA device")
    check(cuda, cuda.cuDeviceGet(ctypes.byref(dev), 0), "cuDeviceGet")
    name = ctypes.create_string_buffer(256)
    check(cuda, cuda.cuDeviceGetName(name, 256, dev), "cuDeviceGetName")
    raw = ctypes.create_string_buffer(16)
    get_uuid = getattr(cuda, "cuDeviceGetUuid_v2", None) or cuda.cuDeviceGetUuid
    get_uuid.argtypes = [ctypes.c_void_p, c_int]
    check(cuda, get_uuid(raw, dev), "cuDeviceGetUuid")
    ctx = ctypes.c_void_p()
    check(cuda, cuda.cuDevicePrimaryCtxRetain(ctypes.byref(ctx), dev), "cuDevicePrimaryCtxRetain")
    try:
        check(cuda, cuda.cuCtxSetCurrent(ctx), "cuCtxSetCurrent")
        size = mib << 20
        data = os.urandom(size)
        src = ctypes.create_string_buffer(data, size)
        back = ctypes.create_string_buffer(size)
        dptr = u64()
        check(cuda, cuda.cuMemAlloc_v2(ctypes.byref(dptr), size), f"cuMemAlloc({size})")
        try:
            check(cuda, cuda.cuMemcpyHtoD_v2(dptr, ctypes.addressof(src), size), "cuMemcpyHtoD")
            check(cuda, cuda.cuMemcpyDtoH_v2(ctypes.addressof(back), dptr, size), "cuMemcpyDtoH")
        finally:
            cuda.cuMemFree_v2(dptr)
        if back.raw != data:
            raise CudaError(f"the {mib} MiB copied to the GPU and back differ")
    finally:
        cuda.cuDevicePrimaryCtxRelease_v2(dev)
    return {"ok": True, "device": name.value.decode(errors="replace"), "uuid": uuid_of(raw.raw),
            "cuda_driver_version": f"{version.value // 1000}.{version.value % 1000 // 10}",
            "devices": count.value, "round_trip_bytes": size}


def main() -> int:
    mib = int(sys.argv[1]) if len(sys.argv) > 1 else 8
    try:
        out = run(mib)
    except CudaError as err:
        out = {"ok": False, "error": str(err)}
    print(json.dumps(out, sort_keys=True), flush=True)
    return 0 if out["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())

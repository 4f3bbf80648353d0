/* A TEST DOUBLE of the NVIDIA driver's libcuda.so.1, for tests/scripts/test_gpu_check.py: the
 * handful of driver API calls scripts/gpu_check_cuda.py makes, "device memory" in host memory.
 * FAKE_CUDA_CORRUPT=1 flips a byte on the way back (the program must notice); FAKE_CUDA_NO_DEVICE=1
 * reports no device. It computes nothing on any GPU. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef int CUresult;
typedef int CUdevice;
typedef uint64_t CUdeviceptr;

static const char *names[] = {"CUDA_SUCCESS", "CUDA_ERROR_INVALID_VALUE", "CUDA_ERROR_OUT_OF_MEMORY"};

CUresult cuGetErrorName(CUresult error, const char **name) {
    *name = (error >= 0 && error < 3) ? names[error] : "CUDA_ERROR_UNKNOWN";
    return 0;
}
CUresult cuInit(unsigned int flags) { return flags == 0 ? 0 : 1; }
CUresult cuDriverGetVersion(int *version) { *version = 13000; return 0; }
CUresult cuDeviceGetCount(int *count) { *count = getenv("FAKE_CUDA_NO_DEVICE") ? 0 : 1; return 0; }
CUresult cuDeviceGet(CUdevice *dev, int ordinal) { if (ordinal != 0) return 1; *dev = 0; return 0; }
CUresult cuDeviceGetName(char *name, int len, CUdevice dev) {
    strncpy(name, "Fake CUDA test double", (size_t)len); name[len - 1] = 0; return 0;
}
CUresult cuDeviceGetUuid_v2(unsigned char *uuid, CUdevice dev) {
    static const unsigned char u[16] = {0x9e, 0x1c, 0x63, 0x1b, 0xfa, 0xfe, 0xf9, 0x6d,
                                        0x93, 0x5d, 0x1f, 0xf4, 0xb8, 0xa5, 0xbf, 0x54};
    memcpy(uuid, u, 16); return 0;
}
static int ctx_token;
CUresult cuDevicePrimaryCtxRetain(void **ctx, CUdevice dev) { *ctx = &ctx_token; return 0; }
CUresult cuDevicePrimaryCtxRelease_v2(CUdevice dev) { return 0; }
CUresult cuCtxSetCurrent(void *ctx) { return ctx == &ctx_token ? 0 : 1; }
CUresult cuMemAlloc_v2(CUdeviceptr *dptr, size_t size) {
    void *p = malloc(size); if (!p) return 2; *dptr = (CUdeviceptr)(uintptr_t)p; return 0;
}
CUresult cuMemFree_v2(CUdeviceptr dptr) { free((void *)(uintptr_t)dptr); return 0; }
CUresult cuMemcpyHtoD_v2(CUdeviceptr dst, const void *src, size_t n) {
    memcpy((void *)(uintptr_t)dst, src, n); return 0;
}
CUresult cuMemcpyDtoH_v2(void *dst, CUdeviceptr src, size_t n) {
    memcpy(dst, (void *)(uintptr_t)src, n);
    if (getenv("FAKE_CUDA_CORRUPT") && n) ((unsigned char *)dst)[n / 2] ^= 0xff;
    return 0;
}

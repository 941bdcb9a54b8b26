// A stand-in for libcuda with the eight driver calls edgeseq/kernels/cuda_gru.py makes, so that its ctypes layer
// (argument types, the kernel's parameter array, grid and block, context handling) runs in tests without a GPU.
// cuLaunchKernel unpacks the parameter array by the kernel's signature and runs the kernel's own source, built for
// the CPU with cuda_emu.h (run_kernel.cpp), on the host pointers it was given. Error codes are the driver's.
#include <cstring>

#include "run_kernel.cpp"

namespace {
constexpr int CUDA_SUCCESS = 0, CUDA_ERROR_INVALID_VALUE = 1, CUDA_ERROR_INVALID_IMAGE = 200,
              CUDA_ERROR_INVALID_CONTEXT = 201, CUDA_ERROR_NOT_FOUND = 500, CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES = 701;
int contexts[8];
void* current = nullptr;
int module_token, function_token;
bool initialised = false;
}

extern "C" {
int fake_launches = 0;  // read by the tests

int cuInit(unsigned flags) { initialised = flags == 0; return initialised ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE; }
int cuDeviceGet(int* device, int ordinal) {
    if (!initialised || ordinal < 0 || ordinal >= 8) return CUDA_ERROR_INVALID_VALUE;
    *device = ordinal;
    return CUDA_SUCCESS;
}
int cuDevicePrimaryCtxRetain(void** ctx, int device) { *ctx = &contexts[device]; return CUDA_SUCCESS; }
int cuCtxGetCurrent(void** ctx) { *ctx = current; return CUDA_SUCCESS; }
int cuCtxSetCurrent(void* ctx) { current = ctx; return CUDA_SUCCESS; }
int cuModuleLoadData(void** module, const void* image) {
    if (!current) return CUDA_ERROR_INVALID_CONTEXT;
    if (std::memcmp(image, "\x7f" "ELF", 4) != 0) return CUDA_ERROR_INVALID_IMAGE;
    *module = &module_token;
    return CUDA_SUCCESS;
}
int cuModuleGetFunction(void** function, void* module, const char* name) {
    if (module != &module_token || std::strcmp(name, "edgeseq_bigru_rows") != 0) return CUDA_ERROR_NOT_FOUND;
    *function = &function_token;
    return CUDA_SUCCESS;
}
int cuLaunchKernel(void* function, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz,
                   unsigned shared, void* stream, void** params, void** extra) {
    (void)stream;
    if (!current) return CUDA_ERROR_INVALID_CONTEXT;
    if (function != &function_token || extra != nullptr || gz != 1 || by != 1 || bz != 1 || shared != 0)
        return CUDA_ERROR_INVALID_VALUE;
    if (bx != THREADS) return CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES;  // the block the kernel was built for
    const auto ptr = [&](int i) { return *static_cast<void**>(params[i]); };
    const auto num = [&](int i) { return *static_cast<int*>(params[i]); };
    ++fake_launches;
    return emu_launch(gx, gy, bx, ptr(0), ptr(1), ptr(2), ptr(3), num(4), num(5), num(6), num(7), num(8))
               ? CUDA_ERROR_INVALID_VALUE : CUDA_SUCCESS;
}
int cuGetErrorString(int status, const char** text) {
    *text = status == CUDA_ERROR_INVALID_IMAGE ? "device kernel image is invalid" : "fake driver error";
    return CUDA_SUCCESS;
}
}

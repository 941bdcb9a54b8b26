// A race check of edgeseq/kernels/cuda_gru.cu's shared memory and warp exchanges, in the spirit of
// compute-sanitizer --tool racecheck: built with -fsanitize=thread by tests/test_cuda_gru.py, it runs the kernel's
// own source on the CPU emulation (cuda_emu.h: one std::thread per CUDA thread) for a few steps. ThreadSanitizer
// tracks happens-before through the emulated barriers, so two threads touching the same h_buf word without a
// __syncthreads between them are reported whatever the threads' timing was (exit code 66), not only when the
// schedule happens to expose them as wrong numbers.
#include <cstdio>
#include <random>

#include "run_kernel.cpp"

int main() {
    const int batch = 1, steps = 5, split = EDGESEQ_SPLIT;
    std::mt19937 rng(7);
    std::normal_distribution<float> normal(0.0f, 0.3f);
    std::vector<float> gi(batch * steps * 6 * HID), w(2 * 3 * HID * HID), b(2 * 3 * HID), out(batch * steps * 2 * HID);
    for (auto* v : {&gi, &w, &b})
        for (auto& x : *v) x = normal(rng);
    const int status = emu_launch(2, batch, HID * split, gi.data(), w.data(), b.data(), out.data(), steps,
                                  steps * 6 * HID, 6 * HID, steps * 2 * HID, 2 * HID);
    std::printf("launch status %d, out[0] %g\n", status, out[0]);
    return status;
}

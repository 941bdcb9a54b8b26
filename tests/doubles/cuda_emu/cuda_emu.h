// A host-side stand-in for the CUDA built-ins edgeseq/kernels/cuda_gru.cu uses, so that the kernel's own source
// compiles with g++ and runs on the CPU in tests (no GPU on the CI machines). Every CUDA thread of a block is a
// std::thread; __syncthreads is a block-wide std::barrier and __shfl_xor_sync a warp-wide exchange through memory
// between two warp barriers, so the kernel runs with real concurrency, not as a sequential loop that would hide
// a missing barrier. Blocks run one after another (__shared__ becomes static storage, so a block sees
// what the previous one left there: the kernel must, and does, initialise what it reads). fp16 / bf16 I/O
// (EDGESEQ_IO=1 / 2) builds with -DEDGESEQ_HOST_IO: the kernel's PTX conversions are replaced by the host's
// round-to-nearest-even ones below (_Float16, and bf16 by bit arithmetic), so its half-width indexing runs here.
#pragma once
#include <barrier>
#include <cmath>
#include <cstring>
#include <memory>
#include <thread>
#include <vector>

struct emu_dim3 { unsigned x = 0, y = 0, z = 0; };
struct alignas(16) float4 { float x, y, z, w; };

inline thread_local emu_dim3 threadIdx, blockIdx;
inline emu_dim3 blockDim, gridDim;

struct EmuBlock {
    std::unique_ptr<std::barrier<>> block;
    std::vector<std::unique_ptr<std::barrier<>>> warps;
    std::vector<float> lanes;
};
inline EmuBlock* emu_block = nullptr;

#define __global__
#define __device__
#define __forceinline__ inline
#define __restrict__
#define __shared__ static
#define __align__(n) __attribute__((aligned(n)))
#define __launch_bounds__(...)

inline void __syncthreads() { emu_block->block->arrive_and_wait(); }

inline float __shfl_xor_sync(unsigned, float value, int mask) {
    const unsigned tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
    emu_block->lanes[tid] = value;
    emu_block->warps[warp]->arrive_and_wait();
    const float other = emu_block->lanes[warp * 32 + (lane ^ (unsigned)mask)];
    emu_block->warps[warp]->arrive_and_wait();
    return other;
}

inline float __expf(float x) { return std::exp(x); }
inline float __fdividef(float a, float b) { return a / b; }
inline float __uint_as_float(unsigned v) { float f; std::memcpy(&f, &v, 4); return f; }

#ifdef EDGESEQ_HOST_IO
#if EDGESEQ_IO == 1
inline float to_f32(unsigned short v) { _Float16 h; std::memcpy(&h, &v, 2); return static_cast<float>(h); }
inline unsigned short from_f32(float f) {
    const _Float16 h = static_cast<_Float16>(f);
    unsigned short v;
    std::memcpy(&v, &h, 2);
    return v;
}
#elif EDGESEQ_IO == 2
inline unsigned short from_f32(float f) {  // round to nearest even, as cvt.rn.bf16.f32 (no NaNs arise here)
    unsigned int u;
    std::memcpy(&u, &f, 4);
    u += 0x7fffu + ((u >> 16) & 1u);
    return static_cast<unsigned short>(u >> 16);
}
#endif
#endif

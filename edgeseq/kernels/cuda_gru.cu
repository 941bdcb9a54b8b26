// Persistent bidirectional GRU recurrence for batch-1-ish, latency-bound CUDA inference (edgeseq.kernels.cuda_gru).
//
// One thread block per (direction, batch row) runs all T steps. W_hh stays in registers, in fp32, for the whole
// loop: SPLIT threads share a hidden unit, thread (j, s) owning unit j's three gate rows restricted to its share s
// of the k axis (k = 4 (SPLIT c + s) + e), i.e. 3 H / SPLIT floats. Per step each thread reads h (fp32, shared
// memory, double buffered) as float4 broadcasts, does its 3 H / SPLIT FMAs per gate row set, the shares of a unit
// are summed with xor shuffles between adjacent lanes (so every lane ends with the same sums), every lane applies
// PyTorch's GRU update (gate order r, z, n; n = tanh(x_n + r * (W_n h + b_hn))) and lane s = 0 writes h to the
// other buffer and to out. One __syncthreads per step. The next step's input projection gi is loaded before this
// step's FMAs.
//
// Why not tensor cores: at batch 1 an mma pads the batch to 8 or 16 rows, so 94% of its work and of the gate math
// after it is padding; the Triton 'dot' kernel measured 1.48 us per step at hidden 128 on an H200, cuDNN's own
// persistent kernel 1.62. The bound here is the issue rate: 3 H^2 FMAs per step on one SM (384 cycles at H = 128)
// plus the gate math, which every lane of a unit repeats: SPLIT 2 halves that repetition (fewer warps, 3 H / 2
// weights per thread), SPLIT 4 leaves the compiler more registers per weight and more warps to hide latency.
//
// Compile-time defines (cuda_gru.py passes them to NVRTC): EDGESEQ_H, the hidden size (a multiple of 16, at most
// 128: at SPLIT 4 its 96 weights + the loop fit the 128 registers a 512-thread block may use, at SPLIT 2 its 192
// fit the 255 a thread may have); EDGESEQ_SPLIT, 4 (default) or 2; EDGESEQ_IO, the dtype of gi / W_hh / b_hh /
// out: 0 fp32, 1 fp16, 2 bf16. No headers: fp16 / bf16 conversions are single PTX instructions.

#define HID EDGESEQ_H
#ifndef EDGESEQ_SPLIT
#define EDGESEQ_SPLIT 4
#endif
#define SPLIT EDGESEQ_SPLIT
#define CHUNKS (HID / (4 * SPLIT))
#define THREADS (HID * SPLIT)

#if EDGESEQ_IO == 0
typedef float io_t;
__device__ __forceinline__ float to_f32(io_t v) { return v; }
__device__ __forceinline__ io_t from_f32(float f) { return f; }
#elif EDGESEQ_IO == 1
typedef unsigned short io_t;
#ifndef EDGESEQ_HOST_IO  // the CPU build of the tests (tests/doubles/cuda_emu) brings its own: PTX does not run there
__device__ __forceinline__ float to_f32(io_t v) { float f; asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(v)); return f; }
__device__ __forceinline__ io_t from_f32(float f) { io_t v; asm("cvt.rn.f16.f32 %0, %1;" : "=h"(v) : "f"(f)); return v; }
#endif
#elif EDGESEQ_IO == 2
typedef unsigned short io_t;
__device__ __forceinline__ float to_f32(io_t v) { return __uint_as_float(((unsigned int)v) << 16); }
#ifndef EDGESEQ_HOST_IO
__device__ __forceinline__ io_t from_f32(float f) { io_t v; asm("cvt.rn.bf16.f32 %0, %1;" : "=h"(v) : "f"(f)); return v; }
#endif
#else
#error "EDGESEQ_IO must be 0 (fp32), 1 (fp16) or 2 (bf16)"
#endif

#if HID % 16 != 0 || HID < 16 || HID > 128
#error "EDGESEQ_H must be a multiple of 16 in [16, 128]"
#endif
#if SPLIT != 2 && SPLIT != 4
#error "EDGESEQ_SPLIT must be 2 or 4"
#endif

// fast exp and division (2 ulp each; the IEEE reciprocal would add a slow-path branch to every step); exp(-x) = inf
// for very negative x gives 1 / inf = 0, the right limit
__device__ __forceinline__ float sigmoid_f(float x) { return __fdividef(1.0f, 1.0f + __expf(-x)); }

// gi: [B, T, 6H] (x W_ih^T + b_ih, forward direction's 3H first), w_hh_t: [2, 3, H(k), H(j)] (each gate's W^T),
// b_hh: [2, 3H], out: [B, T, 2H]. Strides in elements; the last dimension of each is contiguous.
extern "C" __global__ void __launch_bounds__(THREADS, 1)
edgeseq_bigru_rows(const io_t* __restrict__ gi, const io_t* __restrict__ w_hh_t, const io_t* __restrict__ b_hh,
                   io_t* __restrict__ out, int steps, int gi_sb, int gi_st, int out_sb, int out_st)
{
    __shared__ __align__(16) float h_buf[2][HID];
    const int d = blockIdx.x;
    const long long row = blockIdx.y;
    const int tid = threadIdx.x;
    const int j = tid / SPLIT;
    const int s = tid % SPLIT;

    // W_g[j][k] lives at w_hh_t[d][g][k][j]
    const io_t* w = w_hh_t + (long long)d * 3 * HID * HID + j;
    float wr[4 * CHUNKS], wz[4 * CHUNKS], wn[4 * CHUNKS];
#pragma unroll
    for (int c = 0; c < CHUNKS; ++c) {
#pragma unroll
        for (int e = 0; e < 4; ++e) {
            const int k = 4 * (SPLIT * c + s) + e;
            wr[4 * c + e] = to_f32(w[(0 * HID + k) * HID]);
            wz[4 * c + e] = to_f32(w[(1 * HID + k) * HID]);
            wn[4 * c + e] = to_f32(w[(2 * HID + k) * HID]);
        }
    }
    const io_t* bias = b_hh + d * 3 * HID;
    const float br = to_f32(bias[j]), bz = to_f32(bias[HID + j]), bn = to_f32(bias[2 * HID + j]);
    if (tid < HID) h_buf[0][tid] = 0.0f;

    const int dt = d ? -1 : 1;
    int t = d ? steps - 1 : 0;
    const io_t* g = gi + row * gi_sb + d * 3 * HID + j;
    io_t* o = out + row * out_sb + d * HID + j;
    float xr = to_f32(g[(long long)t * gi_st]);
    float xz = to_f32(g[(long long)t * gi_st + HID]);
    float xn = to_f32(g[(long long)t * gi_st + 2 * HID]);
    float h = 0.0f;
    __syncthreads();

    for (int i = 0; i < steps; ++i) {
        const int t_next = (i + 1 < steps) ? t + dt : t;
        const io_t* g_next = g + (long long)t_next * gi_st;
        const io_t nr = g_next[0], nz = g_next[HID], nn = g_next[2 * HID];

        const float4* hv4 = reinterpret_cast<const float4*>(h_buf[i & 1]);
        float ar = 0.0f, az = 0.0f, an = 0.0f;
#pragma unroll
        for (int c = 0; c < CHUNKS; ++c) {
            const float4 hv = hv4[SPLIT * c + s];
            ar = fmaf(wr[4 * c + 0], hv.x, ar); az = fmaf(wz[4 * c + 0], hv.x, az); an = fmaf(wn[4 * c + 0], hv.x, an);
            ar = fmaf(wr[4 * c + 1], hv.y, ar); az = fmaf(wz[4 * c + 1], hv.y, az); an = fmaf(wn[4 * c + 1], hv.y, an);
            ar = fmaf(wr[4 * c + 2], hv.z, ar); az = fmaf(wz[4 * c + 2], hv.z, az); an = fmaf(wn[4 * c + 2], hv.z, an);
            ar = fmaf(wr[4 * c + 3], hv.w, ar); az = fmaf(wz[4 * c + 3], hv.w, az); an = fmaf(wn[4 * c + 3], hv.w, an);
        }
#pragma unroll
        for (int m = 1; m < SPLIT; m *= 2) {
            ar += __shfl_xor_sync(0xffffffffu, ar, m);
            az += __shfl_xor_sync(0xffffffffu, az, m);
            an += __shfl_xor_sync(0xffffffffu, an, m);
        }

        const float r = sigmoid_f(xr + (ar + br));
        const float z = sigmoid_f(xz + (az + bz));
        const float n = tanhf(xn + r * (an + bn));
        h = (1.0f - z) * n + z * h;
        if (s == 0) {
            h_buf[(i + 1) & 1][j] = h;
            o[(long long)t * out_st] = from_f32(h);
        }
        __syncthreads();

        t = t_next;
        xr = to_f32(nr);
        xz = to_f32(nz);
        xn = to_f32(nn);
    }
}

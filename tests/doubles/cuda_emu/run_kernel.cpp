// Builds edgeseq/kernels/cuda_gru.cu for the CPU with cuda_emu.h (see there) and exposes one C entry point that
// launches its kernel over a grid, like cuLaunchKernel would. Compiled by tests/test_cuda_gru.py with -DEDGESEQ_H and
// -DEDGESEQ_SPLIT (and -DEDGESEQ_IO, with -DEDGESEQ_HOST_IO for fp16 / bf16).
#include "cuda_emu.h"
#include "cuda_gru.cu"

extern "C" int emu_launch(unsigned grid_x, unsigned grid_y, unsigned block_x, const void* gi_, const void* w_hh_t_,
                          const void* b_hh_, void* out_, int steps, int gi_sb, int gi_st, int out_sb, int out_st) {
    // element type io_t: float, or the 16-bit fp16 / bf16 patterns (EDGESEQ_IO), as the driver passes raw pointers
    const io_t* gi = static_cast<const io_t*>(gi_);
    const io_t* w_hh_t = static_cast<const io_t*>(w_hh_t_);
    const io_t* b_hh = static_cast<const io_t*>(b_hh_);
    io_t* out = static_cast<io_t*>(out_);
    if (block_x % 32 != 0) return 1;  // the warp exchange assumes whole warps, as the kernel's launch does
    gridDim = {grid_x, grid_y, 1};
    blockDim = {block_x, 1, 1};
    for (unsigned by = 0; by < grid_y; ++by) {
        for (unsigned bx = 0; bx < grid_x; ++bx) {
            EmuBlock block;
            block.block = std::make_unique<std::barrier<>>(block_x);
            for (unsigned w = 0; w < block_x / 32; ++w) block.warps.push_back(std::make_unique<std::barrier<>>(32));
            block.lanes.assign(block_x, 0.0f);
            emu_block = &block;
            std::vector<std::thread> threads;
            for (unsigned t = 0; t < block_x; ++t) {
                threads.emplace_back([=] {
                    threadIdx = {t, 0, 0};
                    blockIdx = {bx, by, 0};
                    edgeseq_bigru_rows(gi, w_hh_t, b_hh, out, steps, gi_sb, gi_st, out_sb, out_st);
                });
            }
            for (auto& th : threads) th.join();
            emu_block = nullptr;
        }
    }
    return 0;
}

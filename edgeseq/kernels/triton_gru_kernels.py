"""Triton kernels for a persistent bidirectional GRU: one launch runs all T steps of both directions.

Imported only by `edgeseq.kernels.triton_gru` once triton is known to be importable (this module imports triton
at its top, so it is the one module of the package that needs the SDK itself).

Each program owns one direction and one tile of batch rows. It loads W_hh once (kept on chip for the whole
loop), keeps h in fp32 registers, and per step reads the precomputed input projection gi_t = x_t W_ih^T + b_ih
(one cuBLAS matmul outside the kernel), computes gh = h W_hh^T + b_hh and PyTorch's gates (order r, z, n):

    r = sigmoid(gi_r + gh_r)    z = sigmoid(gi_z + gh_z)    n = tanh(gi_n + r * gh_n)    h = (1 - z) n + z h

and writes h to out[:, t, dir*H:(dir+1)*H]; the backward direction walks t from T-1 down to 0.

Two ways to do h W_hh^T:
- `_bigru_dot_kernel`: tl.dot of a [BLOCK_B, H] tile of h (padded to >= 16 rows) with W^T (tensor cores);
- `_bigru_vec_kernel`: one batch row per program, a broadcast multiply + reduction (no padding waste at B=1;
  batch rows spread over more programs, so more SMs);
- `_bigru_dot_t_kernel`: the transposed product gh^T = W_hh h^T, W_hh as tl.dot's A operand (loaded once,
  the per-step operand is only h^T), tiles [hidden, batch].
"""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def _tanh(x):
    # tanh(x) = 2 sigmoid(2x) - 1: exact identity, and tl has no tanh of its own (libdevice is not interpreter-safe)
    return 2.0 * tl.sigmoid(2.0 * x) - 1.0


@triton.jit
def _gru_update(h, pre_r, pre_z, x_n, gh_n):
    """One GRU step (PyTorch's gate order and reset rule) from the r / z pre-activations, the input part of n and the
    hidden part of n with its bias; the sums are formed by the caller in the kernels' original order (same code)."""
    r = tl.sigmoid(pre_r)
    z = tl.sigmoid(pre_z)
    n = _tanh(x_n + r * gh_n)
    return (1.0 - z) * n + z * h


@triton.jit
def _bigru_dot_kernel(gi_ptr, whh_ptr, bhh_ptr, out_ptr, B, T,
                      stride_gb, stride_gt, stride_ob, stride_ot,
                      H: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_B: tl.constexpr,
                      W_DTYPE: tl.constexpr, F32_PRECISION: tl.constexpr):
    d = tl.program_id(0)  # direction: 0 forward, 1 backward
    rows = tl.program_id(1).to(tl.int64) * BLOCK_B + tl.arange(0, BLOCK_B)
    k = tl.arange(0, BLOCK_H)  # hidden index (input side of W_hh)
    j = tl.arange(0, BLOCK_H)  # hidden index (output side)
    row_ok = rows < B
    j_ok = j < H
    io_mask = row_ok[:, None] & j_ok[None, :]

    # whh_ptr holds W_g^T per direction and gate, [2, 3, H(k), H(j)] with j contiguous
    w_base = whh_ptr + d * 3 * H * H
    w_mask = (k[:, None] < H) & j_ok[None, :]
    w_off = k[:, None] * H + j[None, :]
    w_r = tl.load(w_base + w_off, mask=w_mask, other=0.0).to(W_DTYPE)
    w_z = tl.load(w_base + H * H + w_off, mask=w_mask, other=0.0).to(W_DTYPE)
    w_n = tl.load(w_base + 2 * H * H + w_off, mask=w_mask, other=0.0).to(W_DTYPE)
    b_base = bhh_ptr + d * 3 * H
    b_r = tl.load(b_base + j, mask=j_ok, other=0.0).to(tl.float32)[None, :]
    b_z = tl.load(b_base + H + j, mask=j_ok, other=0.0).to(tl.float32)[None, :]
    b_n = tl.load(b_base + 2 * H + j, mask=j_ok, other=0.0).to(tl.float32)[None, :]

    step = 1 - 2 * d
    t = d * (T - 1)
    gi_rows = gi_ptr + rows[:, None] * stride_gb + d * 3 * H + j[None, :]
    out_rows = out_ptr + rows[:, None] * stride_ob + d * H + j[None, :]
    x_r = tl.load(gi_rows + t * stride_gt, mask=io_mask, other=0.0).to(tl.float32)
    x_z = tl.load(gi_rows + t * stride_gt + H, mask=io_mask, other=0.0).to(tl.float32)
    x_n = tl.load(gi_rows + t * stride_gt + 2 * H, mask=io_mask, other=0.0).to(tl.float32)
    h = tl.zeros([BLOCK_B, BLOCK_H], dtype=tl.float32)
    for i in range(T):
        # prefetch the next step's input projection while this step computes (clamped on the last step)
        t_next = d * (T - 1) + tl.minimum(i + 1, T - 1) * step
        n_r = tl.load(gi_rows + t_next * stride_gt, mask=io_mask, other=0.0)
        n_z = tl.load(gi_rows + t_next * stride_gt + H, mask=io_mask, other=0.0)
        n_n = tl.load(gi_rows + t_next * stride_gt + 2 * H, mask=io_mask, other=0.0)

        hk = h.to(W_DTYPE)
        if W_DTYPE == tl.float32:
            g_r = tl.dot(hk, w_r, input_precision=F32_PRECISION)
            g_z = tl.dot(hk, w_z, input_precision=F32_PRECISION)
            g_n = tl.dot(hk, w_n, input_precision=F32_PRECISION)
        else:
            g_r = tl.dot(hk, w_r)
            g_z = tl.dot(hk, w_z)
            g_n = tl.dot(hk, w_n)
        h = _gru_update(h, x_r + g_r + b_r, x_z + g_z + b_z, x_n, g_n + b_n)
        tl.store(out_rows + t * stride_ot, h.to(out_ptr.dtype.element_ty), mask=io_mask)

        t = t_next
        x_r = n_r.to(tl.float32)
        x_z = n_z.to(tl.float32)
        x_n = n_n.to(tl.float32)


@triton.jit
def _bigru_vec_kernel(gi_ptr, whh_ptr, bhh_ptr, out_ptr, B, T,
                      stride_gb, stride_gt, stride_ob, stride_ot,
                      H: tl.constexpr, BLOCK_H: tl.constexpr, W_DTYPE: tl.constexpr):
    d = tl.program_id(0)
    row = tl.program_id(1).to(tl.int64)
    k = tl.arange(0, BLOCK_H)
    j = tl.arange(0, BLOCK_H)
    j_ok = j < H

    # whh_ptr holds W_g^T, [2, 3, H(k), H(j)] with j contiguous: lanes run along j, warps and registers along k,
    # so the sum over k is mostly inside each thread (then across warps), not a shuffle tree per column
    w_base = whh_ptr + d * 3 * H * H
    w_mask = (k[:, None] < H) & j_ok[None, :]
    w_off = k[:, None] * H + j[None, :]
    w_r = tl.load(w_base + w_off, mask=w_mask, other=0.0).to(W_DTYPE)
    w_z = tl.load(w_base + H * H + w_off, mask=w_mask, other=0.0).to(W_DTYPE)
    w_n = tl.load(w_base + 2 * H * H + w_off, mask=w_mask, other=0.0).to(W_DTYPE)
    b_base = bhh_ptr + d * 3 * H
    b_r = tl.load(b_base + j, mask=j_ok, other=0.0).to(tl.float32)
    b_z = tl.load(b_base + H + j, mask=j_ok, other=0.0).to(tl.float32)
    b_n = tl.load(b_base + 2 * H + j, mask=j_ok, other=0.0).to(tl.float32)

    step = 1 - 2 * d
    t = d * (T - 1)
    gi_row = gi_ptr + row * stride_gb + d * 3 * H + j
    out_row = out_ptr + row * stride_ob + d * H + j
    x_r = tl.load(gi_row + t * stride_gt, mask=j_ok, other=0.0).to(tl.float32)
    x_z = tl.load(gi_row + t * stride_gt + H, mask=j_ok, other=0.0).to(tl.float32)
    x_n = tl.load(gi_row + t * stride_gt + 2 * H, mask=j_ok, other=0.0).to(tl.float32)
    h = tl.zeros([BLOCK_H], dtype=tl.float32)
    for i in range(T):
        t_next = d * (T - 1) + tl.minimum(i + 1, T - 1) * step
        n_r = tl.load(gi_row + t_next * stride_gt, mask=j_ok, other=0.0)
        n_z = tl.load(gi_row + t_next * stride_gt + H, mask=j_ok, other=0.0)
        n_n = tl.load(gi_row + t_next * stride_gt + 2 * H, mask=j_ok, other=0.0)

        # h as the k (row) axis; products in W's dtype (fp16 stays packed), sums in fp32
        hk = h.to(W_DTYPE)[:, None]
        g_r = tl.sum(hk * w_r, axis=0, dtype=tl.float32)
        g_z = tl.sum(hk * w_z, axis=0, dtype=tl.float32)
        g_n = tl.sum(hk * w_n, axis=0, dtype=tl.float32)
        h = _gru_update(h, x_r + g_r + b_r, x_z + g_z + b_z, x_n, g_n + b_n)
        tl.store(out_row + t * stride_ot, h.to(out_ptr.dtype.element_ty), mask=j_ok)

        t = t_next
        x_r = n_r.to(tl.float32)
        x_z = n_z.to(tl.float32)
        x_n = n_n.to(tl.float32)


@triton.jit
def _bigru_dot_t_kernel(gi_ptr, whh_ptr, bhh_ptr, out_ptr, B, T,
                        stride_gb, stride_gt, stride_ob, stride_ot,
                        H: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_B: tl.constexpr, W_DTYPE: tl.constexpr):
    """The 'dot' recurrence transposed: gh^T [H, BLOCK_B] = W_g [H(j), H(k)] @ h^T [H(k), BLOCK_B] per gate.

    W_hh is the A operand (M = H rows, loaded once before the loop), the only per-step operand is the small h^T
    tile (H x BLOCK_B), so the per-step traffic through shared memory is 4 KB instead of W's 96 KB, and M = 128
    fits Hopper's warpgroup MMA (M >= 64), which the [16, H] x [H, 3H] orientation cannot use. Every tile is
    [hidden j, batch column b]; batch columns past B are masked on load and store."""
    d = tl.program_id(0)
    cols = tl.program_id(1).to(tl.int64) * BLOCK_B + tl.arange(0, BLOCK_B)  # batch rows, as tile columns
    j = tl.arange(0, BLOCK_H)  # hidden index (output side), tile rows
    k = tl.arange(0, BLOCK_H)  # hidden index (input side)
    col_ok = cols < B
    j_ok = j < H
    io_mask = j_ok[:, None] & col_ok[None, :]

    # whh_ptr holds W_g^T [2, 3, H(k), H(j)]; W_g[j, k] is at k * H + j (a strided load, once per launch)
    w_base = whh_ptr + d * 3 * H * H
    w_mask = j_ok[:, None] & (k[None, :] < H)
    w_off = j[:, None] + k[None, :] * H
    w_r = tl.load(w_base + w_off, mask=w_mask, other=0.0).to(W_DTYPE)
    w_z = tl.load(w_base + H * H + w_off, mask=w_mask, other=0.0).to(W_DTYPE)
    w_n = tl.load(w_base + 2 * H * H + w_off, mask=w_mask, other=0.0).to(W_DTYPE)
    b_base = bhh_ptr + d * 3 * H
    b_r = tl.load(b_base + j, mask=j_ok, other=0.0).to(tl.float32)[:, None]
    b_z = tl.load(b_base + H + j, mask=j_ok, other=0.0).to(tl.float32)[:, None]
    b_n = tl.load(b_base + 2 * H + j, mask=j_ok, other=0.0).to(tl.float32)[:, None]

    step = 1 - 2 * d
    t = d * (T - 1)
    gi_cols = gi_ptr + cols[None, :] * stride_gb + d * 3 * H + j[:, None]
    out_cols = out_ptr + cols[None, :] * stride_ob + d * H + j[:, None]
    x_r = tl.load(gi_cols + t * stride_gt, mask=io_mask, other=0.0).to(tl.float32)
    x_z = tl.load(gi_cols + t * stride_gt + H, mask=io_mask, other=0.0).to(tl.float32)
    x_n = tl.load(gi_cols + t * stride_gt + 2 * H, mask=io_mask, other=0.0).to(tl.float32)
    h = tl.zeros([BLOCK_H, BLOCK_B], dtype=tl.float32)  # h^T: hidden along rows, batch along columns
    for i in range(T):
        t_next = d * (T - 1) + tl.minimum(i + 1, T - 1) * step
        n_r = tl.load(gi_cols + t_next * stride_gt, mask=io_mask, other=0.0)
        n_z = tl.load(gi_cols + t_next * stride_gt + H, mask=io_mask, other=0.0)
        n_n = tl.load(gi_cols + t_next * stride_gt + 2 * H, mask=io_mask, other=0.0)

        hk = h.to(W_DTYPE)
        g_r = tl.dot(w_r, hk)
        g_z = tl.dot(w_z, hk)
        g_n = tl.dot(w_n, hk)
        h = _gru_update(h, x_r + g_r + b_r, x_z + g_z + b_z, x_n, g_n + b_n)
        tl.store(out_cols + t * stride_ot, h.to(out_ptr.dtype.element_ty), mask=io_mask)

        t = t_next
        x_r = n_r.to(tl.float32)
        x_z = n_z.to(tl.float32)
        x_n = n_n.to(tl.float32)
